package device_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zerotouch/enroll"
	"zerotouch/enroll/device"
	"zerotouch/enroll/emulator"
)

// issuingDPS is the real emulator server (emulator.Start) with its
// service API reached at api-version 2026-04-01, which carries
// credentialPolicyName.
type issuingDPS struct {
	t     *testing.T
	s     *emulator.Server
	roots *x509.CertPool
	key   []byte
}

func newIssuingDPS(t *testing.T) *issuingDPS {
	t.Helper()
	s, err := emulator.Start(context.Background(), "127.0.0.1:0", filepath.Join(t.TempDir(), "dps"), emulator.Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	pemBytes, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	cs, err := enroll.ParseConnectionString(s.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	return &issuingDPS{t: t, s: s, roots: roots, key: cs.Key}
}

// put stores an enrollment or group at api-version 2026-04-01.
func (d *issuingDPS) put(path string, v any) {
	d.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		d.t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, d.s.URL+path+"?api-version=2026-04-01", bytes.NewReader(b))
	if err != nil {
		d.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", enroll.SASToken(d.s.HostName, emulator.DefaultKeyName, d.key, time.Now().Add(time.Hour)))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: d.roots}}, Timeout: time.Minute}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		d.t.Fatalf("PUT %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		d.t.Fatalf("PUT %s: %d %s", path, resp.StatusCode, body)
	}
}

func (d *issuingDPS) config(regID string, key []byte) device.Config {
	return device.Config{GlobalEndpoint: d.s.URL, IDScope: d.s.IDScope, RegistrationID: regID, SymmetricKey: key,
		TLS: &tls.Config{RootCAs: d.roots}, MinWait: time.Millisecond, MaxWait: 20 * time.Millisecond}
}

// newCSR makes a key and a DER CSR for cn.
func newCSR(t *testing.T, cn string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func TestIssuedCertificate(t *testing.T) {
	d := newIssuingDPS(t)
	ctx := testCtx(t)
	key := []byte("operational key device")
	en := symEnrollment("op-cert-1", key)
	en.CredentialPolicyName = emulator.DefaultCredentialPolicy
	d.put("/enrollments/op-cert-1", en)
	d.put("/enrollments/no-policy-1", symEnrollment("no-policy-1", key))
	groupKey := []byte("line 7 group key")
	g := symGroup("line-7", groupKey)
	g.CredentialPolicyName = "line-7"
	d.put("/enrollmentGroups/line-7", g)

	devKey, csr := newCSR(t, "op-cert-1")
	cfg := d.config("op-cert-1", key)
	cfg.CSR = csr
	res, err := device.Register(ctx, cfg)
	if err != nil {
		t.Fatalf("Register with a CSR: %v", err)
	}
	chain := res.IssuedCertificateChain
	if len(chain) != 3 {
		t.Fatalf("Register with a CSR: %d certificates issued, want leaf, issuing CA, root", len(chain))
	}
	policy, err := d.s.Emulator.PolicyChain(ctx, emulator.DefaultCredentialPolicy)
	if err != nil {
		t.Fatal(err)
	}
	policyRoot := policy[len(policy)-1]
	if !chain[2].Equal(policyRoot) || chain[0].Subject.CommonName != "op-cert-1" || !devKey.PublicKey.Equal(chain[0].PublicKey) {
		t.Errorf("issued chain: leaf CN %q, root %q; want op-cert-1 with the CSR's key, under the default policy's root %q",
			chain[0].Subject.CommonName, chain[2].Subject, policyRoot.Subject)
	}
	pinned := x509.NewCertPool()
	pinned.AddCert(policyRoot)
	if err := device.VerifyIssuedChain(chain, devKey.Public(), "OP-CERT-1", pinned, time.Now()); err != nil {
		t.Errorf("VerifyIssuedChain to the policy's root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(d.s.CAFile), emulator.PoliciesFolder, "default", "root.crt")); err != nil {
		t.Errorf("the policy CA in the emulator's data folder: %v", err)
	}

	// The root pinned is checked.
	cfg.IssuerRoots = pinned
	if _, err := device.Register(ctx, cfg); err != nil {
		t.Errorf("Register with the policy's root pinned: %v", err)
	}
	other := x509.NewCertPool()
	other.AddCert(newCA(t, "Another Root", nil).cert)
	cfg.IssuerRoots = other
	if _, err := device.Register(ctx, cfg); !errors.Is(err, device.ErrCertificate) {
		t.Errorf("Register with another root pinned: %v, want ErrCertificate", err)
	}

	// A group's policy: a device of the group, its own CA.
	_, gcsr := newCSR(t, "line-7-board-1")
	gcfg := d.config("line-7-board-1", device.DeriveKey(groupKey, "line-7-board-1"))
	gcfg.CSR = gcsr
	gres, err := device.Register(ctx, gcfg)
	if err != nil {
		t.Fatalf("group Register with a CSR: %v", err)
	}
	if gres.SymmetricKey == nil || gres.SymmetricKey.EnrollmentGroupID != "line-7" || gres.IssuedCertificateChain[2].Equal(policyRoot) {
		t.Errorf("group Register: symmetricKey %+v, root %q; want group line-7 under its own policy's root", gres.SymmetricKey, gres.IssuedCertificateChain[2].Subject)
	}

	// The specification's refusals: 400, the body's errorCode.
	lookCfg := d.config("op-cert-1", key)
	look, err := device.Lookup(ctx, lookCfg)
	if err != nil || look.Status != "assigned" || look.IssuedCertificateChain != nil || look.AssignedHub == "" {
		t.Errorf("Lookup = %+v, %v; want assigned, without a chain", look, err)
	}
	_, noPolicyCSR := newCSR(t, "no-policy-1")
	older := cfg
	older.IssuerRoots, older.APIVersion = nil, device.APIVersionNoCSR
	noPolicy := d.config("no-policy-1", key)
	noPolicy.CSR = noPolicyCSR
	// The Config a device registers with, its CSR included, serves for
	// its status lookup: the CSR is not sent (device.json allows none
	// there).
	lookCSR := lookCfg
	lookCSR.CSR = csr
	if look, err := device.Lookup(ctx, lookCSR); err != nil || look.Status != "assigned" || look.IssuedCertificateChain != nil {
		t.Errorf("Lookup with the Config's CSR = %+v, %v; want assigned, without a chain", look, err)
	}
	// A CSR under an api-version without certificate issuance is
	// refused before anything is sent.
	if _, err := device.Register(ctx, older); !errors.Is(err, device.ErrConfig) || !strings.Contains(err.Error(), device.APIVersionNoCSR) {
		t.Errorf("csr under %s: %v, want ErrConfig naming the api-version", device.APIVersionNoCSR, err)
	}
	for _, tt := range []struct {
		name string
		call func() (*device.Result, error)
		msg  string
	}{
		{"csr without a credential policy", func() (*device.Result, error) { return device.Register(ctx, noPolicy) }, "credentialPolicyName"},
	} {
		_, err := tt.call()
		var de *device.Error
		if !errors.Is(err, device.ErrBadRequest) || !errors.As(err, &de) || de.Status != http.StatusBadRequest || de.Code != enroll.CodeBadBody || !strings.Contains(de.Message, tt.msg) {
			t.Errorf("%s: %v; want 400 with errorCode %d saying %q", tt.name, err, enroll.CodeBadBody, tt.msg)
		}
	}
}

func TestLookup(t *testing.T) {
	d := newTestDPS(t, emulator.Options{})
	ctx := testCtx(t)
	key := []byte("lookup device key")
	d.put("/enrollments/look-1", symEnrollment("look-1", key))
	cfg := d.config("look-1")
	cfg.SymmetricKey = key
	if _, err := device.Lookup(ctx, cfg); !errors.Is(err, device.ErrNotFound) {
		t.Errorf("Lookup before registering: %v, want ErrNotFound", err)
	}
	reg, err := device.Register(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := device.Lookup(ctx, cfg)
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if got.Status != "assigned" || got.ETag != reg.ETag || got.DeviceID != reg.DeviceID || got.OperationID != "" {
		t.Errorf("Lookup = %+v, want the registration %+v", got, reg)
	}
	cfg.SymmetricKey = []byte("another key")
	if _, err := device.Lookup(ctx, cfg); !errors.Is(err, device.ErrUnauthorized) {
		t.Errorf("Lookup with another key: %v, want ErrUnauthorized", err)
	}
}

func TestCSRConfig(t *testing.T) {
	_, csr := newCSR(t, "csr-1")
	base := device.Config{IDScope: "0ne0001A2B3", RegistrationID: "csr-1", SymmetricKey: []byte("k")}
	tests := []struct {
		name string
		csr  []byte
		want string
	}{
		{"not DER", []byte("-----BEGIN CERTIFICATE REQUEST-----"), "PKCS#10"},
		// The signature's last-but-one byte changed.
		{"bad signature", append(csr[:len(csr)-2:len(csr)-2], csr[len(csr)-1]^1, csr[len(csr)-1]), "signature"},
		{"another CN", func() []byte { _, c := newCSR(t, "csr-2"); return c }(), "CN"},
		{"under 2021-10-01", csr, "api-version"},
	}
	for _, tt := range tests {
		cfg := base
		cfg.CSR = tt.csr
		if tt.name == "under 2021-10-01" {
			cfg.APIVersion = device.APIVersionNoCSR
		}
		_, err := device.Register(context.Background(), cfg)
		if !errors.Is(err, device.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Register = %v, want ErrConfig saying %q", tt.name, err, tt.want)
		}
	}
}

// TestCSRAPIVersions: a CSR goes with every api-version that has
// certificate issuance (enroll.SupportsCredentialPolicy), the preview
// that brought it included, and with none older.
func TestCSRAPIVersions(t *testing.T) {
	_, csr := newCSR(t, "csr-1")
	for v, ok := range map[string]bool{"": true, device.APIVersion: true, enroll.APIVersionPreview2025: true, device.APIVersionNoCSR: false, "2019-03-31": false} {
		cfg := device.Config{IDScope: "0ne0001A2B3", RegistrationID: "csr-1", SymmetricKey: []byte("k"), CSR: csr, APIVersion: v}
		if err := cfg.Validate(); (err == nil) != ok || err != nil && !errors.Is(err, device.ErrConfig) {
			t.Errorf("Validate with a CSR under api-version %q = %v, want ok=%v", v, err, ok)
		}
	}
}

// issuedChain makes a chain as a credential policy issues it: leaf for
// cn with pub, an issuing CA, a root.
func issuedChain(t *testing.T, cn string, pub crypto.PublicKey) (leaf, ica, root *x509.Certificate, icaCA *certAuthority) {
	t.Helper()
	r := newCA(t, "Policy Root", nil)
	i := newCA(t, "Policy ICA", r)
	tmpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.cert, pub, i.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ = x509.ParseCertificate(der)
	return leaf, i.cert, r.cert, i
}

func TestVerifyIssuedChain(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf, ica, root, _ := issuedChain(t, "dev-1", key.Public())
	_, _, otherRoot, _ := issuedChain(t, "dev-1", key.Public())
	caLeaf := newCA(t, "dev-1", newCA(t, "x", nil))
	pinOther := x509.NewCertPool()
	pinOther.AddCert(otherRoot)
	pinRoot := x509.NewCertPool()
	pinRoot.AddCert(root)
	now := time.Now()
	tests := []struct {
		name  string
		chain []*x509.Certificate
		pub   crypto.PublicKey
		regID string
		roots *x509.CertPool
		want  string // "" for nil
	}{
		{"good", []*x509.Certificate{leaf, ica, root}, key.Public(), "dev-1", nil, ""},
		{"good, CN in another case, root pinned", []*x509.Certificate{leaf, ica, root}, key.Public(), "DEV-1", pinRoot, ""},
		{"key not known", []*x509.Certificate{leaf, ica, root}, nil, "dev-1", pinRoot, ""},
		{"another key", []*x509.Certificate{leaf, ica, root}, other.Public(), "dev-1", nil, "key"},
		{"another CN", []*x509.Certificate{leaf, ica, root}, key.Public(), "dev-2", nil, "CN"},
		{"leaf alone", []*x509.Certificate{leaf}, key.Public(), "dev-1", nil, "1 certificate"},
		{"no root", []*x509.Certificate{leaf, ica}, key.Public(), "dev-1", nil, "self-signed"},
		{"out of order", []*x509.Certificate{leaf, root, ica}, key.Public(), "dev-1", nil, "self-signed"},
		{"another root pinned", []*x509.Certificate{leaf, ica, root}, key.Public(), "dev-1", pinOther, "pinned"},
		{"a CA as the leaf", []*x509.Certificate{caLeaf.cert, newCA(t, "y", nil).cert}, caLeaf.key.Public(), "dev-1", nil, "CA"},
		{"root of another chain", []*x509.Certificate{leaf, ica, otherRoot}, key.Public(), "dev-1", nil, "not signed"},
	}
	for _, tt := range tests {
		err := device.VerifyIssuedChain(tt.chain, tt.pub, tt.regID, tt.roots, now)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: VerifyIssuedChain = %v, want nil", tt.name, err)
		case tt.want != "" && (!errors.Is(err, device.ErrCertificate) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: VerifyIssuedChain = %v, want ErrCertificate saying %q", tt.name, err, tt.want)
		}
	}
	if err := device.VerifyIssuedChain([]*x509.Certificate{leaf, ica, root}, key.Public(), "dev-1", nil, now.AddDate(2, 0, 0)); !errors.Is(err, device.ErrCertificate) {
		t.Errorf("VerifyIssuedChain after the leaf expired = %v, want ErrCertificate", err)
	}
}
