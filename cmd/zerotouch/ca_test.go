package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.step.sm/crypto/pemutil"

	"zerotouch/ca"
	"zerotouch/internal/stepca"
	"zerotouch/internal/swtpm"
)

// writeCSR writes a PEM CSR with CN cn and returns its path.
func writeCSR(t *testing.T, dir, cn string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, cn+".csr")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// verifyChainPEM checks that out is a PEM chain for cn that verifies to
// root for client authentication.
func verifyChainPEM(t *testing.T, out, cn string, root *x509.Certificate) {
	t.Helper()
	certs, err := pemutil.ParseCertificateBundle([]byte(out))
	if err != nil || len(certs) < 2 {
		t.Fatalf("stdout is not a PEM chain (%v):\n%s", err, out)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("issued chain does not verify: %v", err)
	}
	if certs[0].Subject.CommonName != cn {
		t.Fatalf("CN %q, want %q", certs[0].Subject.CommonName, cn)
	}
}

func TestCALocal(t *testing.T) {
	dir := t.TempDir()
	cadir := filepath.Join(dir, "ca")
	pw := filepath.Join(dir, "pw")
	os.WriteFile(pw, []byte("a long CA passphrase\n"), 0o600)

	if code, _, errOut := run(t, "ca", "init", "--dir", cadir, "--name", "Line 7", "--validity", "5y"); code != exitSetup || !strings.Contains(errOut, envCAPassword) {
		t.Fatalf("init without a password: exit %d, stderr %q; want %d naming %s", code, errOut, exitSetup, envCAPassword)
	}
	code, out, errOut := run(t, "ca", "init", "--dir", cadir, "--name", "Line 7", "--validity", "5y", "--password-file", pw)
	if code != exitOK || !strings.Contains(out, "CN=Line 7 Intermediate CA") {
		t.Fatalf("init: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	if code, _, errOut := run(t, "ca", "init", "--dir", cadir, "--password-file", pw); code != exitUsage || !strings.Contains(errOut, "already exists") {
		t.Fatalf("second init: exit %d, stderr %q; want 2, already exists", code, errOut)
	}

	// show needs no password.
	code, out, errOut = run(t, "ca", "show", "--dir", cadir, "--json")
	var shown struct {
		Chain []struct {
			Role, Subject, PEM string
		}
		GroupCertificate string `json:"enrollmentGroupCertificate"`
		RootFingerprint  string
	}
	if code != exitOK || json.Unmarshal([]byte(out), &shown) != nil || len(shown.Chain) != 2 {
		t.Fatalf("show --json: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	root, err := pemutil.ParseCertificate([]byte(shown.Chain[1].PEM))
	if err != nil || ca.Fingerprint(root) != shown.RootFingerprint || shown.GroupCertificate != shown.Chain[0].PEM {
		t.Fatalf("show --json: root %v, fingerprint %s, group certificate is not the issuing intermediate", err, shown.RootFingerprint)
	}

	// The template printed is the one step-ca provisioners are given.
	if code, out, _ := run(t, "ca", "template", "--dir", cadir); code != exitOK || strings.TrimSpace(out) != ca.DefaultTemplate {
		t.Fatalf("ca template: exit %d, printed %q; want the built-in template", code, out)
	}

	csr := writeCSR(t, dir, "sensor-0001")
	t.Setenv(envCAPassword, "a long CA passphrase")
	code, out, errOut = run(t, "ca", "sign", "--dir", cadir, "--csr", csr, "--registration-id", "sensor-0001")
	if code != exitOK {
		t.Fatalf("sign: exit %d, stderr %s", code, errOut)
	}
	verifyChainPEM(t, out, "sensor-0001", root)

	badPW := filepath.Join(dir, "bad-pw")
	os.WriteFile(badPW, []byte("not the passphrase\n"), 0o600)
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"CN is not the ID", []string{"ca", "sign", "--dir", cadir, "--csr", csr, "--registration-id", "sensor-0002"}, exitFailed, "common name"},
		{"not a CSR", []string{"ca", "sign", "--dir", cadir, "--csr", pw, "--registration-id", "sensor-0001"}, exitUsage, "cannot be parsed"},
		{"no CSR file", []string{"ca", "sign", "--dir", cadir, "--csr", filepath.Join(dir, "absent"), "--registration-id", "sensor-0001"}, exitUsage, "--csr"},
		{"no registration ID", []string{"ca", "sign", "--dir", cadir, "--csr", csr}, exitUsage, "registration-id"},
		{"no CA", []string{"ca", "sign", "--dir", filepath.Join(dir, "none"), "--csr", csr, "--registration-id", "sensor-0001"}, exitSetup, "ca init"},
		{"wrong password", []string{"ca", "sign", "--dir", cadir, "--password-file", badPW, "--csr", csr, "--registration-id", "sensor-0001"}, exitSetup, "the CA password in " + badPW + " (--password-file) does not unlock the CA in " + cadir},
		{"url without fingerprint", []string{"ca", "sign", "--url", "https://127.0.0.1:1", "--csr", csr, "--registration-id", "sensor-0001"}, exitUsage, "--fingerprint"},
		{"bad validity", []string{"ca", "sign", "--dir", cadir, "--validity", "forever", "--csr", csr, "--registration-id", "sensor-0001"}, exitUsage, "--validity"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d and %q", code, out, errOut, tt.code, tt.want)
			}
		})
	}
}

func TestCARemote(t *testing.T) {
	dir := t.TempDir()
	s, err := stepca.Start(stepca.Options{Dir: dir, Template: ca.DefaultTemplate})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pw := filepath.Join(dir, "provisioner-password")
	os.WriteFile(pw, s.Password, 0o600)

	code, out, errOut := run(t, "ca", "show", "--url", s.URL, "--fingerprint", s.Fingerprint)
	if code != exitOK || !strings.Contains(out, s.Fingerprint) {
		t.Fatalf("show --url: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	csr := writeCSR(t, dir, "sensor-0001")
	code, out, errOut = run(t, "ca", "sign", "--url", s.URL, "--fingerprint", s.Fingerprint, "--provisioner", s.Provisioner, "--password-file", pw,
		"--csr", csr, "--registration-id", "sensor-0001", "--validity", "90d")
	if code != exitOK {
		t.Fatalf("sign --url: exit %d, stderr %s", code, errOut)
	}
	verifyChainPEM(t, out, "sensor-0001", s.Root)

	wrong := strings.Repeat("00", 32)
	if code, _, errOut := run(t, "ca", "show", "--url", s.URL, "--fingerprint", wrong); code != exitSetup || !strings.Contains(errOut, "pinned") {
		t.Fatalf("show with a wrong fingerprint: exit %d, stderr %q", code, errOut)
	}
}

// A CA whose keys are in a TPM needs no password, from init to sign.
func TestCATPMNoPassword(t *testing.T) {
	p, err := swtpm.StartUnix(t.TempDir())
	if errors.Is(err, swtpm.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	t.Setenv(envCAPassword, "")
	dir := t.TempDir()
	cadir := filepath.Join(dir, "ca")
	if code, _, errOut := run(t, "ca", "init", "--dir", cadir, "--kms", "tpmkms:device="+p.Socket); code != exitOK {
		t.Fatalf("init: exit %d, stderr %s", code, errOut)
	}
	code, out, errOut := run(t, "ca", "sign", "--dir", cadir, "--csr", writeCSR(t, dir, "sensor-0001"), "--registration-id", "sensor-0001")
	if code != exitOK {
		t.Fatalf("sign: exit %d, stderr %s", code, errOut)
	}
	chain, err := ca.ReadChain(cadir)
	if err != nil {
		t.Fatal(err)
	}
	verifyChainPEM(t, out, "sensor-0001", chain[len(chain)-1])
}
