package emulator

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"zerotouch/enroll"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var testKey = []byte("emulator test primary key, 32 b")

// testEnv is an Emulator behind an httptest TLS server.
type testEnv struct {
	t      *testing.T
	e      *Emulator
	ts     *httptest.Server
	host   string // 127.0.0.1:port
	clock  *fakeClock
	client *http.Client
	dbPath string
}

// newTestEnv starts an emulator with opts; DB, PrimaryKey and Now are
// filled in when empty. It is closed at the end of the test.
func newTestEnv(t *testing.T, opts Options) *testEnv {
	t.Helper()
	env := &testEnv{t: t, clock: newFakeClock()}
	if opts.DB == "" {
		opts.DB = filepath.Join(t.TempDir(), "emulator.db")
	}
	if opts.PrimaryKey == nil {
		opts.PrimaryKey = testKey
	}
	if opts.Now == nil {
		opts.Now = env.clock.Now
	}
	env.dbPath = opts.DB
	e, err := New(context.Background(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	env.e = e
	env.ts = httptest.NewUnstartedServer(e)
	env.ts.EnableHTTP2 = true
	env.ts.StartTLS()
	env.host = strings.TrimPrefix(env.ts.URL, "https://")
	env.client = env.ts.Client()
	env.client.Timeout = time.Minute
	t.Cleanup(func() {
		env.ts.Close()
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return env
}

// token is a valid SAS token for the server, as package enroll makes it.
func (env *testEnv) token() string {
	return enroll.SASToken(env.host, DefaultKeyName, testKey, env.clock.Now().Add(time.Hour))
}

// nodeToken is a token as the Node SDK makes it: sr not URL-encoded, the
// fields in the order sr, sig, skn, se.
func nodeToken(sr, keyName string, key []byte, expiry time.Time) string {
	se := strconv.FormatInt(expiry.Unix(), 10)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sr + "\n" + se))
	sig := url.QueryEscape(base64.StdEncoding.EncodeToString(m.Sum(nil)))
	s := "SharedAccessSignature sr=" + sr + "&sig=" + sig
	if keyName != "" {
		s += "&skn=" + keyName
	}
	return s + "&se=" + se
}

// response is an answer, read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errorBody decodes a DPS error answer and checks its form: the body's
// fields, x-ms-error-code and the content type.
func (r response) errorBody(t *testing.T) enroll.ErrorBody {
	t.Helper()
	var b enroll.ErrorBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("error answer %d %q is not a DPS error body: %v", r.status, r.body, err)
	}
	if got := r.header.Get("x-ms-error-code"); got != strconv.Itoa(b.ErrorCode) {
		t.Errorf("x-ms-error-code %q, body errorCode %d", got, b.ErrorCode)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("error answer Content-Type %q", ct)
	}
	if len(b.TrackingID) != 36 || strings.Count(b.TrackingID, "-") != 4 {
		t.Errorf("trackingId %q is not a UUID", b.TrackingID)
	}
	if _, err := time.Parse(time.RFC3339Nano, b.TimestampUTC); err != nil || !strings.HasSuffix(b.TimestampUTC, "Z") {
		t.Errorf("timestampUtc %q is not RFC 3339 UTC: %v", b.TimestampUTC, err)
	}
	if b.Message == "" {
		t.Errorf("error answer %d has no message", r.status)
	}
	return b
}

// wantError checks that r is the error status with DPS code and a
// message holding each of msgs.
func (r response) wantError(t *testing.T, what string, status, code int, msgs ...string) enroll.ErrorBody {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d (%s), want %d", what, r.status, r.body, status)
	}
	b := r.errorBody(t)
	if b.ErrorCode != code {
		t.Errorf("%s: errorCode %d (%s), want %d", what, b.ErrorCode, b.Message, code)
	}
	for _, m := range msgs {
		if !strings.Contains(b.Message, m) {
			t.Errorf("%s: message %q does not say %q", what, b.Message, m)
		}
	}
	return b
}

type header map[string]string

// send makes a request. path gets ?api-version=2021-10-01 unless it has a
// query already; the Authorization header is a valid token unless h gives
// one ("" leaves it out). body is sent as JSON unless it is a []byte or a
// string.
func (env *testEnv) send(method, path string, body any, h header) (response, error) {
	env.t.Helper()
	if !strings.Contains(path, "?") {
		path += "?api-version=2021-10-01"
	}
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			env.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, env.ts.URL+path, rd)
	if err != nil {
		env.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	req.Header.Set("Authorization", env.token())
	for k, v := range h {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := env.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{resp.StatusCode, resp.Header, b}, nil
}

// do is send that fails the test when no answer comes.
func (env *testEnv) do(method, path string, body any, h header) response {
	env.t.Helper()
	r, err := env.send(method, path, body, h)
	if err != nil {
		env.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// decodeOK checks a 200 answer and decodes it into v.
func decodeOK(t *testing.T, what string, r response, v any) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%s: status %d: %s", what, r.status, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("%s: answer %s: %v", what, r.body, err)
	}
}

func (env *testEnv) writes(id string) int {
	env.t.Helper()
	n, err := env.e.Writes(context.Background(), id)
	if err != nil {
		env.t.Fatalf("Writes(%q): %v", id, err)
	}
	return n
}

func tpmEnrollment(id string) enroll.Enrollment {
	return enroll.Enrollment{RegistrationID: id, Attestation: enroll.Attestation{
		Type: enroll.AttestationTPM, TPM: &enroll.TPMAttestation{EndorsementKey: base64.StdEncoding.EncodeToString([]byte("ek of " + id))}}}
}

// testCert makes a self-signed certificate for cn, as PEM.
func testCert(t *testing.T, cn string) (string, *x509.Certificate) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x1234abcd),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2036, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), c
}

// bulkBody is a bulk operation of individual enrollments.
func bulkBody(mode string, items ...enroll.Enrollment) enroll.BulkOperation {
	return enroll.BulkOperation{Mode: mode, Enrollments: items}
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}
