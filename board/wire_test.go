package board

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"zerotouch/flasher"
)

// recorder keeps every byte the station reads from the board.
type recorder struct {
	flasher.Link
	mu  sync.Mutex
	got []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Link.Read(p)
	r.mu.Lock()
	r.got = append(r.got, p[:n]...)
	r.mu.Unlock()
	return n, err
}

// decoded returns what was read so far, raw and as the messages in it.
func (r *recorder) decoded(t *testing.T) (raw, msgs []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	raw = bytes.Clone(r.got)
	var d flasher.Decoder
	var all []byte
	for _, line := range bytes.Split(r.got, []byte("\n")) {
		msg, err := d.Line(line)
		if err != nil {
			t.Fatalf("answer line %q: %v", line, err)
		}
		all = append(all, msg...)
	}
	return raw, all
}

// TestKeygenKeepsTheKey checks what crosses the wire during keygen: a CSR
// signed by the new key, and no part of the private key, raw or encoded.
func TestKeygenKeepsTheKey(t *testing.T) {
	b, err := Start(Config{Serial: "SN-KEY", Dir: t.TempDir(), TPM: TPMNone, Baud: 2_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	port, err := flasher.OpenPort(b.Path(), 2_000_000)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Link: port}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := flasher.NewClient(ctx, rec, flasher.Options{Baud: 2_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var all [][]byte
	for _, alg := range []string{flasher.AlgECDSAP256, flasher.AlgRSA2048} {
		csr, err := c.Keygen(ctx, alg, "SN-KEY")
		if err != nil {
			t.Fatalf("Keygen(%s): %v", alg, err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Errorf("Keygen(%s): CSR signature: %v", alg, err)
		}
		b.mu.Lock()
		key := b.keys[alg]
		b.mu.Unlock()
		var secrets [][]byte
		switch k := key.(type) {
		case *ecdsa.PrivateKey:
			d, err := k.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			secrets = append(secrets, d)
		case *rsa.PrivateKey:
			secrets = append(secrets, k.D.Bytes())
			for _, p := range k.Primes {
				secrets = append(secrets, p.Bytes())
			}
		default:
			t.Fatalf("board holds a %T for %s", key, alg)
		}
		all = append(all, secrets...)
		raw, wire := rec.decoded(t)
		for _, s := range secrets {
			// Any 16-byte run of the secret would be a leak.
			for i := 0; i+16 <= len(s); i += 8 {
				if bytes.Contains(wire, s[i:i+16]) || bytes.Contains(raw, s[i:i+16]) {
					t.Fatalf("Keygen(%s): private key material crossed the wire", alg)
				}
			}
		}
	}
	// Keys live in the board's memory only, never in its flash directory.
	err = filepath.WalkDir(b.cfg.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range all {
			if bytes.Contains(data, s[:16]) {
				t.Errorf("private key material in the board's flash file %s", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
