package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/tpm"
)

// TestTPMEK reads a board's identity with `tpm ek` twice: the first run
// creates and persists the EK, the second finds it.
func TestTPMEK(t *testing.T) {
	b, err := board.Start(board.Config{Serial: "SN-TPM", Dir: t.TempDir(), TPM: board.TPMSim, Baud: 2_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var first ekResult
	for i, wantCreated := range []bool{true, false} {
		code, out, errOut := run(t, "tpm", "ek", "--port", b.Path(), "--baud", "2000000", "--json")
		if code != exitOK {
			t.Fatalf("tpm ek: exit %d: %s", code, errOut)
		}
		var res ekResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("tpm ek printed %q: %v", out, err)
		}
		raw, err := base64.StdEncoding.DecodeString(res.EndorsementKey)
		if err != nil || tpm.RegistrationID(raw) != res.RegistrationID {
			t.Errorf("registrationId %q does not follow from endorsementKey (%v)", res.RegistrationID, err)
		}
		if res.Created != wantCreated || res.Board != "SN-TPM" || res.EKCertificateStatus != tpm.EKCertAbsent || res.EKCertificate != nil {
			t.Errorf("run %d: %+v; want created %v on board SN-TPM, no EK certificate", i+1, res, wantCreated)
		}
		if i == 0 {
			first = res
		} else if res.RegistrationID != first.RegistrationID {
			t.Errorf("second run's registration ID %s, first %s", res.RegistrationID, first.RegistrationID)
		}
	}
	// Vendor certificates given, and no EK certificate: exit 1, and the
	// identity is still printed.
	roots := filepath.Join(t.TempDir(), "roots.pem")
	writeTestRoot(t, roots)
	code, out, errOut := run(t, "tpm", "ek", "--port", b.Path(), "--baud", "2000000", "--ek-roots", roots)
	if code != exitFailed || !strings.Contains(out, first.RegistrationID) || !strings.Contains(errOut, "EK certificate absent") {
		t.Errorf("tpm ek --ek-roots on a TPM without EK certificate: exit %d\n%s\n%s", code, out, errOut)
	}
	// A board without a TPM.
	nb, err := board.Start(board.Config{Serial: "SN-NOTPM", Dir: t.TempDir(), TPM: board.TPMNone, Baud: 2_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer nb.Close()
	code, _, errOut = run(t, "tpm", "ek", "--port", nb.Path(), "--baud", "2000000")
	if code != exitFailed || !strings.Contains(errOut, "board SN-NOTPM: read EK") {
		t.Errorf("tpm ek on a board without a TPM: exit %d: %s", code, errOut)
	}
}

func TestTPMEKUsage(t *testing.T) {
	for _, args := range [][]string{
		{"tpm", "ek", "--port", "/dev/null", "--tpm", "sim"},
		{"tpm", "ek", "--tpm", "bogus"},
		{"tpm", "ek", "--tpm", "none"},
		{"tpm", "ek", "--tpm", "sim", "--ek-roots", "/nonexistent/roots.pem"},
	} {
		if code, _, errOut := run(t, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d: %s", args, code, exitUsage, errOut)
		}
	}
}

// writeTestRoot writes a self-signed certificate standing in for a TPM
// vendor's root.
func writeTestRoot(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test TPM Root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}
