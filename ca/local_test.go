package ca_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/pemutil"

	"zerotouch/ca"
)

func TestLocalFiles(t *testing.T) {
	dir := t.TempDir()
	l, err := ca.Init(context.Background(), dir, ca.InitOptions{Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	chain, _ := l.Chain(context.Background())
	for _, name := range []string{ca.ConfigFile, ca.RootFile, ca.IntermediateFile, "root.key", "intermediate.key"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	for _, name := range []string{"root.key", "intermediate.key"} {
		path := filepath.Join(dir, name)
		b, _ := os.ReadFile(path)
		block, _ := pem.Decode(b)
		if block == nil || block.Type != "ENCRYPTED PRIVATE KEY" {
			t.Fatalf("%s is not an encrypted PKCS#8 PEM: %.40q", name, b)
		}
		if _, err := pemutil.Read(path); err == nil {
			t.Fatalf("%s reads without a password", name)
		}
		key, err := pemutil.Read(path, pemutil.WithPassword(testPassword))
		if err != nil {
			t.Fatalf("%s does not decrypt with the password: %v", name, err)
		}
		want := chain[0].PublicKey
		if name == "root.key" {
			want = chain[1].PublicKey
		}
		if !key.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(want) {
			t.Errorf("%s is not the key of its certificate", name)
		}
	}
	for _, b := range readAll(t, dir) {
		if bytes.Contains(b, testPassword) {
			t.Fatal("the password is written in the CA folder")
		}
	}
}

func readAll(t *testing.T, dir string) [][]byte {
	var out [][]byte
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			out = append(out, b)
		}
		return err
	})
	return out
}

func TestLocalInitRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	l, err := ca.Init(context.Background(), dir, ca.InitOptions{Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	before := readAll(t, dir)
	if _, err := ca.Init(context.Background(), dir, ca.InitOptions{Password: testPassword}); !errors.Is(err, ca.ErrExists) {
		t.Fatalf("second Init = %v, want ErrExists", err)
	}
	after := readAll(t, dir)
	if len(before) != len(after) {
		t.Fatalf("second Init changed the folder: %d files, then %d", len(before), len(after))
	}
	for i := range before {
		if !bytes.Equal(before[i], after[i]) {
			t.Fatal("second Init changed a file")
		}
	}
}

func TestLocalInitAfterInterruptedInit(t *testing.T) {
	dir := t.TempDir()
	// What an Init killed before ca.json leaves.
	os.WriteFile(filepath.Join(dir, "root.key"), []byte("partial"), 0o600)
	l, err := ca.Init(context.Background(), dir, ca.InitOptions{Password: testPassword})
	if err != nil {
		t.Fatalf("Init over an interrupted Init: %v", err)
	}
	l.Close()
}

func TestLocalOpenErrors(t *testing.T) {
	dir := t.TempDir()
	l, err := ca.Init(context.Background(), dir, ca.InitOptions{Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := ca.OpenLocal(context.Background(), dir, ca.LocalOptions{Password: []byte("wrong")}); !errors.Is(err, ca.ErrPassword) {
		t.Errorf("OpenLocal(wrong password) = %v, want ErrPassword", err)
	}
	if _, err := ca.OpenLocal(context.Background(), dir, ca.LocalOptions{}); !errors.Is(err, ca.ErrPassword) {
		t.Errorf("OpenLocal(no password) = %v, want ErrPassword", err)
	}
	if _, err := ca.OpenLocal(context.Background(), t.TempDir(), ca.LocalOptions{Password: testPassword}); !errors.Is(err, ca.ErrNoCA) {
		t.Errorf("OpenLocal(empty folder) = %v, want ErrNoCA", err)
	}

	// A plain key put in place of the encrypted one is refused.
	key, err := pemutil.Read(filepath.Join(dir, "intermediate.key"), pemutil.WithPassword(testPassword))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pemutil.Serialize(key)
	os.WriteFile(filepath.Join(dir, "intermediate.key"), pem.EncodeToMemory(block), 0o600)
	if _, err := ca.OpenLocal(context.Background(), dir, ca.LocalOptions{Password: testPassword}); err == nil || !strings.Contains(err.Error(), "not encrypted") {
		t.Errorf("OpenLocal(plain key) = %v, want a refusal", err)
	}
}

func TestLocalImport(t *testing.T) {
	// An intermediate made elsewhere: another CA folder's files.
	src := t.TempDir()
	l, err := ca.Init(context.Background(), src, ca.InitOptions{Name: "Factory", Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	// Its key in plain PEM, as another tool might hand it over.
	key, _ := pemutil.Read(filepath.Join(src, "intermediate.key"), pemutil.WithPassword(testPassword))
	block, _ := pemutil.Serialize(key)
	plain := filepath.Join(t.TempDir(), "plain.key")
	os.WriteFile(plain, pem.EncodeToMemory(block), 0o600)
	for _, keyFile := range []string{filepath.Join(src, "intermediate.key"), plain} {
		dir := t.TempDir()
		imp, err := ca.Init(context.Background(), dir, ca.InitOptions{
			Password:   testPassword,
			ImportCert: filepath.Join(src, ca.IntermediateFile),
			ImportKey:  keyFile,
			ImportRoot: filepath.Join(src, ca.RootFile),
		})
		if err != nil {
			t.Fatalf("import with key %s: %v", keyFile, err)
		}
		c, err := imp.Issue(context.Background(), csrFor(t, ecKey(t, elliptic.P256()), "device-1", nil), "device-1")
		if err != nil {
			t.Fatal(err)
		}
		if c.Root.Subject.CommonName != "Factory Root CA" {
			t.Errorf("issued under %q, want the imported root", c.Root.Subject)
		}
		imp.Close()
		if _, err := os.Stat(filepath.Join(dir, "root.key")); err == nil {
			t.Error("an import wrote a root key")
		}
		b, _ := os.ReadFile(filepath.Join(dir, "intermediate.key"))
		if !bytes.HasPrefix(b, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----")) {
			t.Errorf("imported key stored as %.40q, want encrypted", b)
		}
	}

	other := t.TempDir()
	l, err = ca.Init(context.Background(), other, ca.InitOptions{Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	for _, tt := range []struct{ name, cert, key, root, want string }{
		{"key of another CA", filepath.Join(src, ca.IntermediateFile), filepath.Join(other, "intermediate.key"), filepath.Join(src, ca.RootFile), "not the key"},
		{"root of another CA", filepath.Join(src, ca.IntermediateFile), plain, filepath.Join(other, ca.RootFile), "does not chain"},
		{"root given as the intermediate", filepath.Join(src, ca.RootFile), plain, filepath.Join(src, ca.RootFile), "not the key"},
		{"no root", filepath.Join(src, ca.IntermediateFile), plain, "", "needs"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := ca.Init(context.Background(), dir, ca.InitOptions{Password: testPassword, ImportCert: tt.cert, ImportKey: tt.key, ImportRoot: tt.root})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Init = %v, want an error with %q", err, tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, ca.ConfigFile)); err == nil {
				t.Fatal("a failed import left a CA")
			}
		})
	}
}

func TestLocalTemplate(t *testing.T) {
	write := func(text string) string {
		p := filepath.Join(t.TempDir(), "device.tpl")
		os.WriteFile(p, []byte(text), 0o600)
		return p
	}
	custom := write(`{
	"subject": {"commonName": {{ toJson .Subject.CommonName }}, "organizationalUnit": "line 3"},
	"keyUsage": ["digitalSignature"],
	"extKeyUsage": ["clientAuth"]
}`)
	dir := t.TempDir()
	l, err := ca.Init(context.Background(), dir, ca.InitOptions{Password: testPassword, Template: custom})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(custom) // the CA keeps its own copy
	l.Close()
	l, err = ca.OpenLocal(context.Background(), dir, ca.LocalOptions{Password: testPassword})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := l.Issue(context.Background(), csrFor(t, ecKey(t, elliptic.P256()), "device-1", nil), "device-1")
	if err != nil {
		t.Fatal(err)
	}
	if ou := c.Leaf().Subject.OrganizationalUnit; len(ou) != 1 || ou[0] != "line 3" {
		t.Errorf("OU = %q, want the template's", ou)
	}

	for _, tt := range []struct{ name, text string }{
		{"CN not the registration ID", `{"subject": {"commonName": "fixed"}, "extKeyUsage": ["clientAuth"]}`},
		{"a CA", `{"subject": {{ toJson .Subject }}, "extKeyUsage": ["clientAuth"], "basicConstraints": {"isCA": true}}`},
		{"no clientAuth", `{"subject": {{ toJson .Subject }}, "extKeyUsage": ["serverAuth"]}`},
		{"not a template", `{"subject": {{ .Nope | toJson }`},
		{"not JSON", `subject: x`},
		{"fails on RSA", `{{ if typeIs "*rsa.PublicKey" .Insecure.CR.PublicKey }}{{ fail "no RSA keys on line 3" }}{{ end }}` + ca.DefaultTemplate},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.OpenLocal(context.Background(), dir, ca.LocalOptions{Password: testPassword, Template: write(tt.text)})
			if !errors.Is(err, ca.ErrTemplate) {
				t.Fatalf("OpenLocal = %v, want ErrTemplate", err)
			}
			if strings.Contains(tt.text, "fail") && !strings.Contains(err.Error(), "no RSA keys on line 3") {
				t.Fatalf("OpenLocal = %v, want the template's fail message", err)
			}
		})
	}
}

func TestLocalPolicyFromConfig(t *testing.T) {
	l, err := ca.Init(context.Background(), t.TempDir(), ca.InitOptions{Password: testPassword, Policy: ca.Policy{KeyTypes: []ca.KeyType{ca.ECDSAP256}}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Issue(context.Background(), csrFor(t, ecKey(t, elliptic.P384()), "device-1", nil), "device-1"); !errors.Is(err, ca.ErrKeyType) {
		t.Fatalf("P-384 under a P-256 policy: %v, want ErrKeyType", err)
	}
	if _, err := l.Issue(context.Background(), csrFor(t, rsaKey(t, 2048), "device-1", nil), "device-1"); !errors.Is(err, ca.ErrKeyType) {
		t.Fatalf("RSA under a P-256 policy: %v, want ErrKeyType", err)
	}
	if _, err := ca.Init(context.Background(), t.TempDir(), ca.InitOptions{Password: testPassword, Policy: ca.Policy{MinRSABits: 1024}}); err == nil {
		t.Fatal("a policy allowing RSA 1024 was accepted")
	}
}

func TestLocalValidityCappedByIntermediate(t *testing.T) {
	l, err := ca.Init(context.Background(), t.TempDir(), ca.InitOptions{Password: testPassword, IntermediateValidity: 30 * 24 * time.Hour, Validity: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	chain, _ := l.Chain(context.Background())
	c, err := l.Issue(context.Background(), csrFor(t, ecKey(t, elliptic.P256()), "device-1", nil), "device-1")
	if err != nil {
		t.Fatal(err)
	}
	if !c.NotAfter.Equal(chain[0].NotAfter) {
		t.Fatalf("device NotAfter %v, want the intermediate's %v", c.NotAfter, chain[0].NotAfter)
	}
}

func TestLocalRSAAndP384CA(t *testing.T) {
	for _, kt := range []ca.KeyType{ca.ECDSAP384, ca.RSA} {
		l, err := ca.Init(context.Background(), t.TempDir(), ca.InitOptions{Password: testPassword, KeyType: kt})
		if err != nil {
			t.Fatalf("Init(%s): %v", kt, err)
		}
		chain, _ := l.Chain(context.Background())
		want := map[ca.KeyType]x509.PublicKeyAlgorithm{ca.ECDSAP384: x509.ECDSA, ca.RSA: x509.RSA}[kt]
		if chain[0].PublicKeyAlgorithm != want {
			t.Errorf("Init(%s) made a %s CA", kt, chain[0].PublicKeyAlgorithm)
		}
		if _, err := l.Issue(context.Background(), csrFor(t, ecKey(t, elliptic.P256()), "device-1", nil), "device-1"); err != nil {
			t.Errorf("Init(%s): Issue: %v", kt, err)
		}
		l.Close()
	}
}

func TestParseValidity(t *testing.T) {
	day := 24 * time.Hour
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"8760h", 365 * day}, {"365d", 365 * day}, {"10y", 3650 * day}, {"90m", 90 * time.Minute},
		{"", 0}, {"0d", 0}, {"-1y", 0}, {"ten years", 0}, {"1.5y", 0}, {"99999999y", 0},
	} {
		got, err := ca.ParseValidity(tt.in)
		if got != tt.want || (err == nil) != (tt.want != 0) {
			t.Errorf("ParseValidity(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if err == nil {
			if back, _ := ca.ParseValidity(ca.FormatValidity(got)); back != got {
				t.Errorf("FormatValidity(%v) = %q does not read back", got, ca.FormatValidity(got))
			}
		}
	}
}

func TestPKCS11(t *testing.T) {
	uri := newSoftHSM(t)
	dir := t.TempDir()
	l, err := ca.Init(context.Background(), dir, ca.InitOptions{KMS: uri, Password: []byte(softHSMPIN)})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	for _, b := range readAll(t, dir) {
		if bytes.Contains(b, []byte("PRIVATE KEY")) || bytes.Contains(b, []byte(softHSMPIN)) {
			t.Fatal("a key or the PIN is in the CA folder")
		}
	}
	if _, err := ca.OpenLocal(context.Background(), dir, ca.LocalOptions{Password: []byte("0000")}); !errors.Is(err, ca.ErrPassword) {
		t.Errorf("OpenLocal(wrong PIN) = %v, want ErrPassword", err)
	}
	l, err = ca.OpenLocal(context.Background(), dir, ca.LocalOptions{Password: []byte(softHSMPIN)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Issue(context.Background(), csrFor(t, ecKey(t, elliptic.P256()), "device-1", nil), "device-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Init(context.Background(), t.TempDir(), ca.InitOptions{KMS: uri + "?pin-value=" + softHSMPIN}); err == nil || strings.Contains(err.Error(), softHSMPIN) {
		t.Errorf("Init with a PIN in the URI = %v, want a refusal that does not repeat the PIN", err)
	}
}
