package emulator

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"zerotouch/ca"
	"zerotouch/enroll"
	"zerotouch/enroll/device"
)

// testCSR is a base64 DER CSR for cn signed with key.
func testCSR(t *testing.T, cn string, key crypto.Signer) string {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// issuedAnswer is a RegistrationOperationStatus as api-version 2026-04-01
// answers it.
type issuedAnswer struct {
	OperationID       string `json:"operationId"`
	Status            string `json:"status"`
	RegistrationState *struct {
		Status                 string   `json:"status"`
		IssuedCertificateChain [][]byte `json:"issuedCertificateChain"`
	} `json:"registrationState"`
}

func TestIssueCertificate(t *testing.T) {
	env := newTestEnv(t, Options{})
	const v26 = "?api-version=2026-04-01"
	key := []byte("issuing key")
	withPolicy := symEnrollment("iss-1", key)
	withPolicy.CredentialPolicyName = DefaultCredentialPolicy
	env.do("PUT", "/enrollments/iss-1"+v26, withPolicy, nil)
	env.do("PUT", "/enrollments/iss-0"+v26, symEnrollment("iss-0", key), nil)
	auth := env.encodedToken("iss-1", key)
	devKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)

	// Refusals, before anything is issued or any policy made.
	refusals := []struct {
		name, regID, body, msg string
	}{
		{"no credential policy", "iss-0", `{"csr":"` + testCSR(t, "iss-0", devKey) + `"}`, "credentialPolicyName"},
		{"CN not the registration ID", "iss-1", `{"csr":"` + testCSR(t, "iss-2", devKey) + `"}`, "CN"},
		{"RSA 1024", "iss-1", `{"csr":"` + testCSR(t, "iss-1", weak) + `"}`, "key type"},
		{"not base64", "iss-1", `{"csr":"-----BEGIN CERTIFICATE REQUEST-----"}`, "base64"},
		{"not a CSR", "iss-1", `{"csr":"MIIBAAAA"}`, "PKCS#10"},
	}
	for _, tt := range refusals {
		r := env.device("PUT", tt.regID+"/register"+v26, tt.body, env.encodedToken(tt.regID, key))
		r.wantError(t, tt.name, http.StatusBadRequest, enroll.CodeBadBody, tt.msg)
	}
	data := filepath.Dir(env.dbPath)
	if _, err := os.Stat(filepath.Join(data, PoliciesFolder)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("policies folder after refusals only: %v, want none", err)
	}

	// Issued: leaf (the CSR's key, CN the registration ID), issuing CA,
	// root; the root is the policy's.
	body := `{"registrationId":"iss-1","csr":"` + testCSR(t, "iss-1", devKey) + `"}`
	r := env.device("PUT", "iss-1/register"+v26, body, auth)
	var acc issuedAnswer
	if r.status != http.StatusAccepted || json.Unmarshal(r.body, &acc) != nil {
		t.Fatalf("register with a csr: %d %s", r.status, r.body)
	}
	p := env.device("GET", "iss-1/operations/"+acc.OperationID+v26, nil, auth)
	var final issuedAnswer
	decodeOK(t, "poll", p, &final)
	if final.RegistrationState == nil || final.RegistrationState.Status != statusAssigned || len(final.RegistrationState.IssuedCertificateChain) != 3 {
		t.Fatalf("poll: %s; want assigned with a chain of 3", p.body)
	}
	var chain []*x509.Certificate
	for i, der := range final.RegistrationState.IssuedCertificateChain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("issuedCertificateChain[%d]: %v", i, err)
		}
		chain = append(chain, c)
	}
	leaf, root := chain[0], chain[2]
	if leaf.Subject.CommonName != "iss-1" || !devKey.PublicKey.Equal(leaf.PublicKey) {
		t.Errorf("leaf CN %q, key %T; want iss-1 and the CSR's key", leaf.Subject.CommonName, leaf.PublicKey)
	}
	policy, err := env.e.PolicyChain(context.Background(), "DEFAULT")
	if err != nil {
		t.Fatalf("PolicyChain: %v", err)
	}
	if !policy[len(policy)-1].Equal(root) || !policy[0].Equal(chain[1]) {
		t.Errorf("issued chain's CAs are not the default policy's %v", policy)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(policy[len(policy)-1])
	inter.AddCert(chain[1])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: leaf.NotBefore.Add(1), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued leaf does not verify to the policy's root: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, PoliciesFolder, DefaultCredentialPolicy, PolicyPasswordFile)); err != nil {
		t.Errorf("the default policy's folder: %v", err)
	}

	// An older api-version's poll, and the status lookup, carry no chain.
	old := env.device("GET", "iss-1/operations/"+acc.OperationID+"?api-version=2021-10-01", nil, auth)
	if old.status != http.StatusOK || strings.Contains(string(old.body), "issuedCertificateChain") || !strings.Contains(string(old.body), `"assigned"`) {
		t.Errorf("poll under 2021-10-01: %d %s; want assigned, no issuedCertificateChain", old.status, old.body)
	}
	look := env.device("POST", "iss-1"+v26, `{"registrationId":"iss-1"}`, auth)
	if look.status != http.StatusOK || strings.Contains(string(look.body), "issuedCertificateChain") {
		t.Errorf("status lookup: %d %s; want 200 without issuedCertificateChain", look.status, look.body)
	}

	// A group's policy, another CA.
	groupKey := []byte("group of line 7")
	g := enroll.EnrollmentGroup{EnrollmentGroupID: "line-7", CredentialPolicyName: "Line-7",
		Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(groupKey)}}}
	env.do("PUT", "/enrollmentGroups/line-7"+v26, g, nil)
	gAuth := env.encodedToken("board-70", device.DeriveKey(groupKey, "board-70"))
	r = env.device("PUT", "board-70/register"+v26, `{"csr":"`+testCSR(t, "board-70", devKey)+`"}`, gAuth)
	if r.status != http.StatusAccepted || json.Unmarshal(r.body, &acc) != nil {
		t.Fatalf("group register with a csr: %d %s", r.status, r.body)
	}
	decodeOK(t, "group poll", env.device("GET", "board-70/operations/"+acc.OperationID+v26, nil, gAuth), &final)
	line7, err := env.e.PolicyChain(context.Background(), "line-7")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(final.RegistrationState.IssuedCertificateChain); n != 3 || !bytes.Equal(final.RegistrationState.IssuedCertificateChain[2], line7[1].Raw) || line7[1].Equal(root) {
		t.Errorf("group registration's chain of %d does not end in policy line-7's own root", n)
	}
}

func TestPolicyName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{{"default", true}, {"Line-7", true}, {"ab", false}, {"-ab", false}, {"ab-", false}, {"a_b", false}, {"a/b/c", false}, {strings.Repeat("a", 50), true}, {strings.Repeat("a", 51), false}} {
		err := CheckPolicyName(tt.name)
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrCredentialPolicy) {
			t.Errorf("CheckPolicyName(%q) = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}

// BenchmarkIssue is one certificate issued under an existing policy: the
// CSR checked and signed by the policy's CA, which the first iteration
// opens (decrypting its key file) and the others find open.
func BenchmarkIssue(b *testing.B) {
	e, err := New(context.Background(), Options{DB: filepath.Join(b.TempDir(), "e.db"), PrimaryKey: testKey})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	if _, err := e.PolicyChain(ctx, DefaultCredentialPolicy); err != nil {
		b.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "bench-1"}}, key)
	csr, _ := x509.ParseCertificateRequest(der)
	for b.Loop() {
		if _, err := e.issue(ctx, DefaultCredentialPolicy, csr, "bench-1"); err != nil {
			b.Fatal(err)
		}
	}
}

// fakeIssuer is a ca.Issuer that counts its closes.
type fakeIssuer struct {
	ca.Issuer
	closes atomic.Int32
}

func (f *fakeIssuer) Close() error { f.closes.Add(1); return nil }

func TestPolicyCacheOpensOnce(t *testing.T) {
	var c policyCache // the zero value is ready
	ctx := context.Background()
	var opens atomic.Int32
	opened := &fakeIssuer{}
	release := make(chan struct{})
	open := func(context.Context) (ca.Issuer, error) {
		opens.Add(1)
		<-release // callers arriving meanwhile wait for this open
		return opened, nil
	}
	const callers = 16
	var started, done sync.WaitGroup
	got := make([]ca.Issuer, callers)
	errs := make([]error, callers)
	for i := range callers {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			got[i], errs[i] = c.get(ctx, "line-1", open)
		}()
	}
	started.Wait()
	close(release)
	done.Wait()
	for i := range callers {
		if errs[i] != nil || got[i] != opened {
			t.Errorf("get #%d = %v, %v; want the one CA opened", i, got[i], errs[i])
		}
	}
	if n := opens.Load(); n != 1 {
		t.Errorf("%d callers at once opened the CA %d times, want 1", callers, n)
	}

	// Another name is another CA.
	other := &fakeIssuer{}
	if l, err := c.get(ctx, "line-2", func(context.Context) (ca.Issuer, error) { return other, nil }); err != nil || l != other {
		t.Errorf("get(line-2) = %v, %v; want its own CA", l, err)
	}

	if err := c.close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if opened.closes.Load() != 1 || other.closes.Load() != 1 {
		t.Errorf("close closed the CAs %d and %d times, want once each", opened.closes.Load(), other.closes.Load())
	}
	if _, err := c.get(ctx, "line-1", open); !errors.Is(err, ErrCredentialPolicy) {
		t.Errorf("get after close = %v, want ErrCredentialPolicy", err)
	}
	if n := opens.Load(); n != 1 {
		t.Errorf("get after close opened the CA again (%d opens)", n)
	}
}

func TestPolicyCacheFailedOpen(t *testing.T) {
	var c policyCache
	ctx := context.Background()
	errDisk := errors.New("disk")
	if _, err := c.get(ctx, "p1", func(context.Context) (ca.Issuer, error) { return nil, errDisk }); !errors.Is(err, errDisk) {
		t.Fatalf("get with a failing open = %v, want its error", err)
	}
	// Not kept: the next caller opens it.
	want := &fakeIssuer{}
	if l, err := c.get(ctx, "p1", func(context.Context) (ca.Issuer, error) { return want, nil }); err != nil || l != want {
		t.Errorf("get after a failed open = %v, %v; want a new open", l, err)
	}
}

func TestPolicyCacheWaitCancelled(t *testing.T) {
	var c policyCache
	inOpen, release := make(chan struct{}), make(chan struct{})
	first := &fakeIssuer{}
	go c.get(context.Background(), "p1", func(context.Context) (ca.Issuer, error) {
		close(inOpen)
		<-release
		return first, nil
	})
	<-inOpen
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.get(ctx, "p1", func(context.Context) (ca.Issuer, error) {
		t.Error("a second open while the first is under way")
		return nil, nil
	})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrCredentialPolicy) {
		t.Errorf("get while another opens, its context cancelled = %v, want context.Canceled", err)
	}
	close(release)
	// The first open's CA is kept once it ends.
	l, err := c.get(context.Background(), "p1", func(context.Context) (ca.Issuer, error) {
		t.Error("opened again after the first open succeeded")
		return nil, nil
	})
	if err != nil || l != first {
		t.Errorf("get after the first open = %v, %v; want its CA", l, err)
	}
	c.close()
	if first.closes.Load() != 1 {
		t.Errorf("close closed the CA %d times, want 1", first.closes.Load())
	}
}

// TestIssueConcurrent registers many devices at once under a policy not
// made yet: all are issued from the one CA, which stays open until Close.
func TestIssueConcurrent(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	e, err := New(ctx, Options{DB: filepath.Join(data, "e.db"), PrimaryKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const devices = 8
	chains := make([][]*x509.Certificate, devices)
	errs := make([]error, devices)
	var wg sync.WaitGroup
	for i := range devices {
		wg.Go(func() {
			id := fmt.Sprintf("conc-%d", i)
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}}, key)
			if err != nil {
				errs[i] = err
				return
			}
			csr, err := x509.ParseCertificateRequest(der)
			if err != nil {
				errs[i] = err
				return
			}
			chains[i], errs[i] = e.issue(ctx, "Fresh", csr, id)
		})
	}
	wg.Wait()
	policy, err := e.PolicyChain(ctx, "fresh")
	if err != nil {
		t.Fatalf("PolicyChain: %v", err)
	}
	for i := range devices {
		if errs[i] != nil {
			t.Errorf("issue #%d: %v", i, errs[i])
			continue
		}
		if len(chains[i]) != 3 || !chains[i][1].Equal(policy[0]) || !chains[i][2].Equal(policy[1]) {
			t.Errorf("issue #%d: a chain of %d not from policy fresh's CA", i, len(chains[i]))
		}
	}
	entries, err := os.ReadDir(filepath.Join(data, PoliciesFolder))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "fresh" {
		t.Errorf("policies folder holds %v, want fresh alone", entries)
	}

	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := e.issue(ctx, "fresh", nil, "conc-0"); !errors.Is(err, ErrCredentialPolicy) {
		t.Errorf("issue after Close = %v, want ErrCredentialPolicy", err)
	}
}

// TestPreviewIssuesCertificates: 2025-07-01-preview has certificate
// issuance on both sides, as enroll.SupportsCredentialPolicy says: an
// enrollment written under it keeps its credentialPolicyName, and a
// device's csr under it gets its chain. 2021-10-01 has neither.
func TestPreviewIssuesCertificates(t *testing.T) {
	env := newTestEnv(t, Options{})
	const preview = "?api-version=" + enroll.APIVersionPreview2025
	key := []byte("preview key")
	e := symEnrollment("prev-1", key)
	e.CredentialPolicyName = DefaultCredentialPolicy
	var got enroll.Enrollment
	decodeOK(t, "PUT under the preview", env.do("PUT", "/enrollments/prev-1"+preview, e, nil), &got)
	if got.CredentialPolicyName != DefaultCredentialPolicy {
		t.Fatalf("PUT under %s answered credentialPolicyName %q, want %q", enroll.APIVersionPreview2025, got.CredentialPolicyName, DefaultCredentialPolicy)
	}
	decodeOK(t, "GET under the preview", env.do("GET", "/enrollments/prev-1"+preview, nil, nil), &got)
	if got.CredentialPolicyName != DefaultCredentialPolicy {
		t.Errorf("GET under %s: credentialPolicyName %q, want %q", enroll.APIVersionPreview2025, got.CredentialPolicyName, DefaultCredentialPolicy)
	}
	devKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	auth := env.encodedToken("prev-1", key)
	body := `{"registrationId":"prev-1","csr":"` + testCSR(t, "prev-1", devKey) + `"}`
	env.device("PUT", "prev-1/register?api-version=2021-10-01", body, auth).wantError(t, "csr under 2021-10-01", http.StatusBadRequest, enroll.CodeBadBody, "csr")
	r := env.device("PUT", "prev-1/register"+preview, body, auth)
	var acc issuedAnswer
	if r.status != http.StatusAccepted || json.Unmarshal(r.body, &acc) != nil {
		t.Fatalf("register with a csr under %s: %d %s", enroll.APIVersionPreview2025, r.status, r.body)
	}
	var final issuedAnswer
	decodeOK(t, "poll", env.device("GET", "prev-1/operations/"+acc.OperationID+preview, nil, auth), &final)
	if final.RegistrationState == nil || final.RegistrationState.Status != statusAssigned || len(final.RegistrationState.IssuedCertificateChain) != 3 {
		t.Errorf("poll under %s: %+v; want assigned with a chain of 3", enroll.APIVersionPreview2025, final.RegistrationState)
	}
}
