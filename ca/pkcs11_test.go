package ca_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"zerotouch/ca"
)

// softHSMModule is where Debian's softhsm2 puts its PKCS#11 module.
const softHSMModule = "/usr/lib/softhsm/libsofthsm2.so"

const softHSMPIN = "4321"

// newSoftHSM makes a SoftHSM token labelled "zerotouch" in a fresh folder
// and returns the KMS URI for it. The token's PIN is softHSMPIN.
func newSoftHSM(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(softHSMModule); err != nil {
		t.Skipf("SoftHSM is not installed (the README's install step installs softhsm2): %v", err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "softhsm2.conf")
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+tokens+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "zerotouch", "--pin", softHSMPIN, "--so-pin", "87654321").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return "pkcs11:module-path=" + softHSMModule + ";token=zerotouch"
}

// newPKCS11Local makes a local CA whose keys are in a SoftHSM token.
func newPKCS11Local(t testing.TB) *ca.Local {
	t.Helper()
	uri := newSoftHSM(t)
	l, err := ca.Init(context.Background(), t.TempDir(), ca.InitOptions{KMS: uri, Password: []byte(softHSMPIN), Validity: testValidity})
	if err != nil {
		t.Fatalf("Init with %s: %v", uri, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}
