module zerotouch

go 1.26.8

require (
	github.com/creack/pty v1.1.24
	github.com/fxamacker/cbor/v2 v2.10.0
	github.com/google/go-cmp v0.7.0
	github.com/google/go-tpm v0.9.8
	github.com/google/go-tpm-tools v0.4.10
	go.bug.st/serial v1.8.0
	golang.org/x/sys v0.49.0
)

require github.com/x448/float16 v0.8.4 // indirect
