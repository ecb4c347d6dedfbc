package tpmdev

import (
	"errors"
	"runtime"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		spec string
		ok   bool
	}{
		{"", true},
		{None, true},
		{Sim, true},
		{TBS, true},
		{"/dev/tpmrm0", true},
		{"tcp:127.0.0.1:2321", true},
		{"tcp:[::1]:2321", true},
		{"tcp:localhost", false},
		{"tpmrm0", false},
		{`C:\tpm`, false},
		{"simulator", false},
	} {
		err := Check(tt.spec)
		if (err == nil) != tt.ok {
			t.Errorf("Check(%q) = %v, want ok %v", tt.spec, err, tt.ok)
		}
	}
}

func TestOpenNone(t *testing.T) {
	for _, spec := range []string{"", None} {
		tr, err := Open(spec, 0)
		if tr != nil || err != nil {
			t.Errorf("Open(%q) = %v, %v, want nil, nil", spec, tr, err)
		}
	}
}

// TestOpenOtherSystemsTPM names the TPM of a system this is not: the
// error says so rather than failing to open a file.
func TestOpenOtherSystemsTPM(t *testing.T) {
	spec := "/dev/tpmrm0"
	if runtime.GOOS == "linux" {
		spec = TBS
	}
	tr, err := Open(spec, 0)
	if !errors.Is(err, ErrNoDevice) {
		t.Fatalf("Open(%q) on %s = %v, want an error wrapping ErrNoDevice", spec, runtime.GOOS, err)
	}
	if tr != nil {
		t.Errorf("Open(%q) gave a TPM with its error", spec)
	}
}
