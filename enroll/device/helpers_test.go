package device_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"zerotouch/enroll"
	"zerotouch/enroll/device"
	"zerotouch/enroll/emulator"
)

var serviceKey = []byte("device tests: the service policy key")

// testDPS is an emulator behind an httptest TLS server that asks for
// client certificates, as emulator.Start's does.
type testDPS struct {
	t      testing.TB
	opts   emulator.Options
	e      *emulator.Emulator
	ts     *httptest.Server
	roots  *x509.CertPool
	client *http.Client
}

// newTestDPS starts an emulator with opts (DB and PrimaryKey filled in
// when empty), closed at the end of the test.
func newTestDPS(t testing.TB, opts emulator.Options) *testDPS {
	t.Helper()
	if opts.DB == "" {
		opts.DB = filepath.Join(t.TempDir(), "dps.db")
	}
	if opts.PrimaryKey == nil {
		opts.PrimaryKey = serviceKey
	}
	d := &testDPS{t: t, opts: opts}
	d.start()
	return d
}

func (d *testDPS) start() {
	d.t.Helper()
	e, err := emulator.New(context.Background(), d.opts)
	if err != nil {
		d.t.Fatalf("emulator.New: %v", err)
	}
	ts := httptest.NewUnstartedServer(e)
	ts.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	ts.EnableHTTP2 = true
	ts.StartTLS()
	d.e, d.ts = e, ts
	d.roots = x509.NewCertPool()
	d.roots.AddCert(ts.Certificate())
	d.client = ts.Client()
	d.client.Timeout = time.Minute
	d.t.Cleanup(d.stop)
}

// stop closes the server and the emulator; it may be called more than
// once.
func (d *testDPS) stop() {
	if d.ts == nil {
		return
	}
	d.ts.Close()
	if err := d.e.Close(); err != nil {
		d.t.Errorf("emulator Close: %v", err)
	}
	d.ts, d.e = nil, nil
}

// restart stops the emulator and starts another on the same file.
func (d *testDPS) restart() {
	d.t.Helper()
	d.stop()
	d.start()
}

// config is a device configuration for regID against this emulator,
// with waits short enough for tests.
func (d *testDPS) config(regID string) device.Config {
	return device.Config{
		GlobalEndpoint: d.ts.URL,
		IDScope:        d.e.IDScope(),
		RegistrationID: regID,
		TLS:            &tls.Config{RootCAs: d.roots},
		MinWait:        time.Millisecond,
		MaxWait:        20 * time.Millisecond,
	}
}

// service calls the service API, signed with the policy key; body is
// sent as JSON. It returns the status and the answer.
func (d *testDPS) service(method, path string, body any) (int, []byte) {
	d.t.Helper()
	return d.serviceWith(method, path, body, nil)
}

// serviceWith is service with extra request headers.
func (d *testDPS) serviceWith(method, path string, body any, h http.Header) (int, []byte) {
	d.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			d.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.ts.URL+path+"?api-version="+enroll.APIVersion, rd)
	if err != nil {
		d.t.Fatal(err)
	}
	host := strings.TrimPrefix(d.ts.URL, "https://")
	now := time.Now()
	if d.opts.Now != nil {
		now = d.opts.Now()
	}
	req.Header.Set("Authorization", enroll.SASToken(host, emulator.DefaultKeyName, serviceKey, now.Add(time.Hour)))
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := d.client.Do(req)
	if err != nil {
		d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// put stores an enrollment or group through the service API.
func (d *testDPS) put(path string, v any) {
	d.t.Helper()
	if status, b := d.service(http.MethodPut, path, v); status != http.StatusOK {
		d.t.Fatalf("PUT %s: %d %s", path, status, b)
	}
}

// registrationState is GET /registrations/{id}: the status, and the
// state when it is 200.
func (d *testDPS) registrationState(id string) (int, enroll.RegistrationState) {
	d.t.Helper()
	status, b := d.service(http.MethodGet, "/registrations/"+id, nil)
	var st enroll.RegistrationState
	if status == http.StatusOK {
		if err := json.Unmarshal(b, &st); err != nil {
			d.t.Fatalf("GET /registrations/%s: %s: %v", id, b, err)
		}
	}
	return status, st
}

func (d *testDPS) registrations(id string) int {
	d.t.Helper()
	n, err := d.e.Registrations(context.Background(), id)
	if err != nil {
		d.t.Fatalf("Registrations(%s): %v", id, err)
	}
	return n
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// symEnrollment is an individual symmetric-key enrollment with key.
func symEnrollment(id string, key []byte) enroll.Enrollment {
	return enroll.Enrollment{RegistrationID: id, Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey,
		SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: b64(key), SecondaryKey: b64(append([]byte("secondary "), key...))}}}
}

func symGroup(id string, key []byte) enroll.EnrollmentGroup {
	return enroll.EnrollmentGroup{EnrollmentGroupID: id, Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey,
		SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: b64(key)}}}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// certAuthority is a test CA (root or intermediate).
type certAuthority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var serial struct {
	sync.Mutex
	n int64
}

func nextSerial() *big.Int {
	serial.Lock()
	defer serial.Unlock()
	serial.n++
	return big.NewInt(serial.n)
}

// newCA makes a CA named cn, signed by parent (self-signed when nil).
func newCA(t *testing.T, cn string, parent *certAuthority) *certAuthority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &certAuthority{cert: cert, key: key}
}

func (ca *certAuthority) pem() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))
}

// leaf issues a device certificate for cn; chain is appended after it
// (the intermediates the device sends).
func (ca *certAuthority) leaf(t *testing.T, cn string, chain ...*certAuthority) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	for _, i := range chain {
		c.Certificate = append(c.Certificate, i.cert.Raw)
	}
	return c
}

func certPEM(c *tls.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}))
}

func x509Enrollment(id string, primary string) enroll.Enrollment {
	return enroll.Enrollment{RegistrationID: id, Attestation: enroll.Attestation{Type: enroll.AttestationX509,
		X509: &enroll.X509Attestation{ClientCertificates: &enroll.X509Certificates{Primary: &enroll.X509Certificate{Certificate: primary}}}}}
}

func x509Group(id string, signing string) enroll.EnrollmentGroup {
	return enroll.EnrollmentGroup{EnrollmentGroupID: id, Attestation: enroll.Attestation{Type: enroll.AttestationX509,
		X509: &enroll.X509Attestation{SigningCertificates: &enroll.X509Certificates{Primary: &enroll.X509Certificate{Certificate: signing}}}}}
}
