package enroll

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// newFakeClient returns a client for a handler of the test's own, over
// TLS with the test server's certificate trusted through a CA file.
func newFakeClient(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeCertPEM(t, caFile, srv.Certificate().Raw)
	c, err := NewClient(Config{
		ConnectionString: ConnectionString{HostName: "dps.test", KeyName: "owner", Key: []byte("k")},
		Endpoint:         srv.URL, CAFile: caFile, Attempts: 3, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientServiceErrors(t *testing.T) {
	tests := []struct {
		status  int
		body    string
		header  map[string]string
		want    error
		code    int
		message string
	}{
		{404, `{"errorCode":404201,"trackingId":"t-1","message":"Registration not found.","timestampUtc":"2026-01-01T00:00:00Z"}`, nil, ErrNotFound, 404201, "Registration not found."},
		{401, `{"errorCode":401002,"trackingId":"t-2","message":"Unauthorized"}`, nil, ErrUnauthorized, 401002, "Unauthorized"},
		{412, `{"errorCode":412201,"message":"etag mismatch"}`, nil, ErrPrecondition, 412201, "etag mismatch"},
		{400, `not json at all`, map[string]string{"x-ms-error-code": "400002"}, ErrBadRequest, 400002, "not json at all"},
		{413, ``, nil, ErrTooLarge, 0, ""},
	}
	for _, tt := range tests {
		c := newFakeClient(t, func(w http.ResponseWriter, r *http.Request) {
			for k, v := range tt.header {
				w.Header().Set(k, v)
			}
			w.WriteHeader(tt.status)
			fmt.Fprint(w, tt.body)
		})
		_, err := c.Get(context.Background(), "board-1")
		var se *ServiceError
		if !errors.Is(err, tt.want) || !errors.As(err, &se) {
			t.Errorf("status %d: Get = %v, want %v", tt.status, err, tt.want)
			continue
		}
		if se.Code != tt.code || se.Message != tt.message || se.Status != tt.status {
			t.Errorf("status %d: ServiceError = %+v, want code %d message %q", tt.status, se, tt.code, tt.message)
		}
		if strings.Contains(tt.body, "trackingId") && !strings.Contains(err.Error(), "trackingId t-") {
			t.Errorf("status %d: error %q does not show the trackingId", tt.status, err)
		}
		if Transient(err) {
			t.Errorf("status %d: Transient = true", tt.status)
		}
	}
}

// A throttled read is sent again after the service's Retry-After; a bulk
// operation is never sent twice by the client.
func TestClientRetryAfter(t *testing.T) {
	var gets, bulks atomic.Int32
	var first time.Time
	var gap time.Duration
	c := newFakeClient(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("api-version") != APIVersion {
			t.Errorf("api-version = %q", r.URL.Query().Get("api-version"))
		}
		if !strings.HasPrefix(r.Header.Get("Authorization"), "SharedAccessSignature sr=dps.test&sig=") {
			t.Errorf("Authorization = %q", r.Header.Get("Authorization"))
		}
		if r.Method == http.MethodPost {
			bulks.Add(1)
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			fmt.Fprint(w, `{"errorCode":429001,"message":"throttled"}`)
			return
		}
		if gets.Add(1) == 1 {
			first = time.Now()
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			fmt.Fprint(w, `{"errorCode":429001,"message":"throttled"}`)
			return
		}
		gap = time.Since(first)
		fmt.Fprint(w, `{"registrationId":"board-1","attestation":{"type":"tpm","tpm":{"endorsementKey":"AAAA"}},"etag":"e1"}`)
	})
	e, err := c.Get(context.Background(), "board-1")
	if err != nil || e.ETag != "e1" {
		t.Fatalf("Get = %+v, %v", e, err)
	}
	if gets.Load() != 2 || gap < time.Second {
		t.Errorf("Get sent %d times, %v apart; want 2, at least the 1 s Retry-After", gets.Load(), gap)
	}
	_, err = c.Bulk(context.Background(), ModeCreate, []Enrollment{tpmEnrollment("board-1")})
	var se *ServiceError
	if !errors.Is(err, ErrThrottled) || !errors.As(err, &se) || se.RetryAfter != time.Second {
		t.Errorf("Bulk = %v, want ErrThrottled with RetryAfter 1s", err)
	}
	if bulks.Load() != 1 {
		t.Errorf("Bulk sent %d times, want 1 (the uploader decides)", bulks.Load())
	}
}

// Requests the service would refuse are refused before anything is sent.
func TestClientRefusesBadRequests(t *testing.T) {
	var sent atomic.Int32
	c := newFakeClient(t, func(w http.ResponseWriter, r *http.Request) { sent.Add(1) })
	ctx := context.Background()
	eleven := make([]Enrollment, 11)
	for i := range eleven {
		eleven[i] = tpmEnrollment(fmt.Sprintf("board-%d", i))
	}
	bad := tpmEnrollment("bad id!")
	x509Long := Enrollment{RegistrationID: strings.Repeat("a", 65), Attestation: Attestation{Type: AttestationX509,
		X509: &X509Attestation{ClientCertificates: &X509Certificates{Primary: &X509Certificate{Certificate: "x"}}}}}
	tests := []struct {
		name string
		f    func() error
		want string
	}{
		{"11 in a bulk", func() error { _, err := c.Bulk(ctx, ModeCreate, eleven); return err }, "1 to 10"},
		{"empty bulk", func() error { _, err := c.Bulk(ctx, ModeCreate, nil); return err }, "1 to 10"},
		{"bad mode", func() error { _, err := c.Bulk(ctx, "upsert", eleven[:1]); return err }, "bulk mode"},
		{"bad id in bulk", func() error { _, err := c.Bulk(ctx, ModeCreate, []Enrollment{bad}); return err }, "character"},
		{"bad id", func() error { _, err := c.CreateOrUpdate(ctx, &bad, ""); return err }, "character"},
		{"x509 id over 64", func() error { _, err := c.CreateOrUpdate(ctx, &x509Long, ""); return err }, "at most 64"},
		{"no attestation", func() error {
			_, err := c.CreateOrUpdate(ctx, &Enrollment{RegistrationID: "a"}, "")
			return err
		}, "attestation type is missing"},
		{"tpm group", func() error {
			_, err := c.CreateOrUpdateGroup(ctx, &EnrollmentGroup{EnrollmentGroupID: "g", Attestation: tpmEnrollment("a").Attestation}, "")
			return err
		}, "enrollment groups take"},
		{"negative page", func() error { _, err := c.Query(ctx, "SELECT * FROM enrollments", -1, ""); return err }, "page size"},
	}
	for _, tt := range tests {
		err := tt.f()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want ErrInvalid saying %q", tt.name, err, tt.want)
		}
	}
	if sent.Load() != 0 {
		t.Errorf("%d requests reached the service", sent.Load())
	}
}

// No answer is ErrUnavailable, and transient; a cancelled context is not.
func TestClientUnavailable(t *testing.T) {
	c := newFakeClient(t, func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	_, err := c.Get(context.Background(), "board-1")
	if !errors.Is(err, ErrUnavailable) || !Transient(err) {
		t.Errorf("Get over a dropped connection = %v, want ErrUnavailable", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Get(ctx, "board-1"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestNewClientCAFile(t *testing.T) {
	cs := ConnectionString{HostName: "h", KeyName: "p", Key: []byte("k")}
	empty := filepath.Join(t.TempDir(), "empty.pem")
	os.WriteFile(empty, []byte("nothing here"), 0o600)
	for _, f := range []string{empty, filepath.Join(t.TempDir(), "missing.pem")} {
		if _, err := NewClient(Config{ConnectionString: cs, CAFile: f}); err == nil {
			t.Errorf("NewClient(CAFile %s) = nil error", f)
		}
	}
	if _, err := NewClient(Config{}); !errors.Is(err, ErrConnectionString) {
		t.Errorf("NewClient(no connection string) = %v", err)
	}
}

func tpmEnrollment(id string) Enrollment {
	return Enrollment{RegistrationID: id, Attestation: Attestation{Type: AttestationTPM, TPM: &TPMAttestation{EndorsementKey: "AAAA"}}}
}
