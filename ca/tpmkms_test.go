package ca_test

import (
	"context"
	"crypto/elliptic"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zerotouch/ca"
	"zerotouch/internal/swtpm"
)

// TestTPMKMS keeps the CA keys in a TPM (swtpm, reached by its socket as
// tpmkms reaches /dev/tpmrm0): nothing secret in the CA folder, and the CA
// signs after it is opened again.
func TestTPMKMS(t *testing.T) {
	state := t.TempDir()
	p, err := swtpm.StartUnix(state)
	if errors.Is(err, swtpm.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	dir := t.TempDir()
	uri := "tpmkms:device=" + p.Socket
	l, err := ca.Init(context.Background(), dir, ca.InitOptions{KMS: uri})
	if err != nil {
		t.Fatalf("Init(%s): %v", uri, err)
	}
	l.Close()
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), "PRIVATE KEY") {
			t.Errorf("%s holds a private key", path)
		}
		return nil
	})
	l, err = ca.OpenLocal(context.Background(), dir, ca.LocalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Issue(context.Background(), csrFor(t, ecKey(t, elliptic.P256()), "device-1", nil), "device-1"); err != nil {
		t.Fatal(err)
	}
}
