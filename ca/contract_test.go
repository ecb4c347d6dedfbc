package ca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"zerotouch/ca"
	"zerotouch/internal/stepca"
)

const testValidity = 365 * 24 * time.Hour

var testPassword = []byte("correct horse battery staple")

// newLocal makes a local CA with encrypted key files in a fresh folder.
func newLocal(t testing.TB) *ca.Local {
	t.Helper()
	l, err := ca.Init(context.Background(), t.TempDir(), ca.InitOptions{Password: testPassword, Validity: testValidity})
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// newStepCA starts a step-ca in the process whose JWK provisioner uses
// template (the device template unless empty).
func newStepCA(t testing.TB, template string) *stepca.Server {
	t.Helper()
	if template == "" {
		template = ca.DefaultTemplate
	}
	s, err := stepca.Start(stepca.Options{Dir: t.TempDir(), Template: template})
	if err != nil {
		t.Fatalf("start step-ca: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func remoteConfig(s *stepca.Server) ca.RemoteConfig {
	return ca.RemoteConfig{URL: s.URL, Fingerprint: s.Fingerprint, Provisioner: s.Provisioner, Password: s.Password, Validity: testValidity}
}

func newRemote(t testing.TB, s *stepca.Server) *ca.Remote {
	t.Helper()
	r, err := ca.NewRemote(context.Background(), remoteConfig(s))
	if err != nil {
		t.Fatalf("NewRemote: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestContract runs the same suite against every Issuer.
func TestContract(t *testing.T) {
	impls := []struct {
		name string
		new  func(t *testing.T) ca.Issuer
	}{
		{"local", func(t *testing.T) ca.Issuer { return newLocal(t) }},
		{"local-pkcs11", func(t *testing.T) ca.Issuer { return newPKCS11Local(t) }},
		{"remote-step-ca", func(t *testing.T) ca.Issuer { return newRemote(t, newStepCA(t, "")) }},
	}
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) {
			iss := impl.new(t)
			t.Run("Chain", func(t *testing.T) { testChain(t, iss) })
			t.Run("IssueVerifies", func(t *testing.T) { testIssueVerifies(t, iss) })
			t.Run("TemplateDecides", func(t *testing.T) { testTemplateDecides(t, iss) })
			t.Run("PolicyRefuses", func(t *testing.T) { testPolicyRefuses(t, iss) })
			t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, iss) })
			t.Run("Canceled", func(t *testing.T) { testCanceled(t, iss) })
		})
	}
}

func testChain(t *testing.T, iss ca.Issuer) {
	chain, err := iss.Chain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) < 2 {
		t.Fatalf("Chain has %d certificates, want an intermediate and a root", len(chain))
	}
	root := chain[len(chain)-1]
	if err := root.CheckSignatureFrom(root); err != nil || !root.IsCA {
		t.Fatalf("last of Chain is not a self-signed CA: %v", err)
	}
	for i, c := range chain[:len(chain)-1] {
		if !c.IsCA {
			t.Errorf("Chain[%d] %q is not a CA", i, c.Subject)
		}
		if err := c.CheckSignatureFrom(chain[i+1]); err != nil {
			t.Errorf("Chain[%d] is not signed by Chain[%d]: %v", i, i+1, err)
		}
	}
}

func testIssueVerifies(t *testing.T, iss ca.Issuer) {
	chain, err := iss.Chain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(chain[len(chain)-1])
	serials := map[string]bool{}
	for _, k := range []struct {
		name string
		key  crypto.Signer
	}{
		{"P-256", ecKey(t, elliptic.P256())},
		{"P-384", ecKey(t, elliptic.P384())},
		{"RSA-2048", rsaKey(t, 2048)},
	} {
		t.Run(k.name, func(t *testing.T) {
			id := "device-" + k.name
			before := time.Now()
			c, err := iss.Issue(context.Background(), csrFor(t, k.key, id, nil), id)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			leaf := c.Leaf()
			inter := x509.NewCertPool()
			for _, ic := range c.Chain[1:] {
				inter.AddCert(ic)
			}
			// Verified independently of the package, now, for client auth.
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("issued chain does not verify: %v", err)
			}
			if leaf.Subject.CommonName != id || !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.key.Public()) {
				t.Errorf("leaf CN %q key %T, want %q and the CSR's key", leaf.Subject.CommonName, leaf.PublicKey, id)
			}
			if leaf.IsCA || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
				t.Errorf("leaf IsCA=%v EKU=%v, want not a CA, clientAuth", leaf.IsCA, leaf.ExtKeyUsage)
			}
			if n := leaf.SerialNumber.BitLen(); n < 64 || n > 160 {
				t.Errorf("serial has %d bits, want a random number of about 128", n)
			}
			if serials[c.Serial] {
				t.Errorf("serial %s issued twice", c.Serial)
			}
			serials[c.Serial] = true
			if want := hex.EncodeToString(leaf.SerialNumber.Bytes()); c.Serial != want {
				t.Errorf("Serial = %s, want %s", c.Serial, want)
			}
			if c.Fingerprint != ca.Fingerprint(leaf) || c.Subject != "CN="+id || !c.NotAfter.Equal(leaf.NotAfter) {
				t.Errorf("record fields %q %q %v do not match the certificate", c.Fingerprint, c.Subject, c.NotAfter)
			}
			if d := leaf.NotAfter.Sub(before); d < testValidity-time.Hour || d > testValidity+time.Hour {
				t.Errorf("validity %v, want about %v", d, testValidity)
			}
		})
	}
}

// testTemplateDecides: subject fields beyond CN and extensions the CSR
// asks for do not reach the certificate.
func testTemplateDecides(t *testing.T, iss ca.Issuer) {
	key := ecKey(t, elliptic.P256())
	const id = "device-template"
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: id, Organization: []string{"Someone Else"}},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: mustASN1(t, []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 3}})}, // codeSigning
		},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	c, err := iss.Issue(context.Background(), csr, id)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	leaf := c.Leaf()
	if len(leaf.Subject.Organization) != 0 {
		t.Errorf("subject %q took O from the CSR", leaf.Subject)
	}
	if slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageCodeSigning) {
		t.Errorf("EKU %v took codeSigning from the CSR", leaf.ExtKeyUsage)
	}
}

// badCSRs are one CSR for each rule of the policy, with the error each
// must give.
func badCSRs(t *testing.T) []struct {
	name, id string
	csr      *x509.CertificateRequest
	want     error
} {
	p256 := ecKey(t, elliptic.P256())
	tampered := csrFor(t, p256, "device-1", nil)
	raw := slices.Clone(tampered.Raw)
	raw[len(raw)-3] ^= 0xff // inside the signature
	tamperedCSR, err := x509.ParseCertificateRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	caReq := csrFor(t, p256, "device-1", []pkix.Extension{{
		Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true,
		Value: mustASN1(t, struct{ IsCA bool }{true}),
	}})
	sanTmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device-1"}, DNSNames: []string{"evil.example"}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}, URIs: []*url.URL{{Scheme: "spiffe", Host: "x"}}}
	der, err := x509.CreateCertificateRequest(rand.Reader, sanTmpl, p256)
	if err != nil {
		t.Fatal(err)
	}
	sanCSR, _ := x509.ParseCertificateRequest(der)
	return []struct {
		name, id string
		csr      *x509.CertificateRequest
		want     error
	}{
		{"bad signature", "device-1", tamperedCSR, ca.ErrSignature},
		{"P-224 key", "device-1", csrFor(t, ecKey(t, elliptic.P224()), "device-1", nil), ca.ErrKeyType},
		{"RSA 1024", "device-1", csrFor(t, rsaKey(t, 1024), "device-1", nil), ca.ErrKeyType},
		{"Ed25519", "device-1", csrFor(t, ed, "device-1", nil), ca.ErrKeyType},
		{"CN is not the registration ID", "device-1", csrFor(t, p256, "device-2", nil), ca.ErrCommonName},
		{"empty CN", "device-1", csrFor(t, p256, "", nil), ca.ErrCommonName},
		{"asks for CA", "device-1", caReq, ca.ErrRequestsCA},
		{"asks for SANs", "device-1", sanCSR, ca.ErrSANs},
		{"registration ID too long for X.509", string(make65()), csrFor(t, p256, string(make65()), nil), ca.ErrRegistrationID},
		{"registration ID with a space", "device 1", csrFor(t, p256, "device 1", nil), ca.ErrRegistrationID},
	}
}

func testPolicyRefuses(t *testing.T, iss ca.Issuer) {
	for _, tt := range badCSRs(t) {
		t.Run(tt.name, func(t *testing.T) {
			c, err := iss.Issue(context.Background(), tt.csr, tt.id)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Issue = %v, %v; want %v", c, err, tt.want)
			}
			var pe *ca.PolicyError
			if !errors.As(err, &pe) || pe.RegistrationID != tt.id {
				t.Fatalf("Issue error %v is not a *PolicyError for %q", err, tt.id)
			}
		})
	}
}

func testConcurrent(t *testing.T, iss ca.Issuer) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			id := fmt.Sprintf("device-concurrent-%d", i)
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}}, key)
			csr, _ := x509.ParseCertificateRequest(der)
			if _, err := iss.Issue(context.Background(), csr, id); err != nil {
				errs <- fmt.Errorf("%s: %w", id, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testCanceled(t *testing.T, iss ca.Issuer) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c, err := iss.Issue(ctx, csrFor(t, ecKey(t, elliptic.P256()), "device-1", nil), "device-1")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Issue(canceled) = %v, %v; want context.Canceled", c, err)
	}
}

func make65() []byte {
	b := make([]byte, 65)
	for i := range b {
		b[i] = 'a'
	}
	return b
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var (
	rsaMu   sync.Mutex
	rsaKeys = map[int]*rsa.PrivateKey{}
)

// rsaKey returns an RSA key of the size, made once per test binary.
func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	rsaMu.Lock()
	defer rsaMu.Unlock()
	if k := rsaKeys[bits]; k != nil {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	rsaKeys[bits] = k
	return k
}

func csrFor(t testing.TB, key crypto.Signer, cn string, exts []pkix.Extension) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}, ExtraExtensions: exts}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func mustASN1(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
