package enroll_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// What the transport says when no answer came decides whether a request
// is sent again: an outage is, a set-up that cannot work is not.
func TestClientTransportErrors(t *testing.T) {
	cert := &x509.Certificate{Raw: []byte{1}}
	tests := []struct {
		name      string
		err       error
		want      error
		permanent bool
	}{
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{Cert: cert}}, enroll.ErrUntrusted, true},
		{"other host name", &tls.CertificateVerificationError{Err: x509.HostnameError{Certificate: cert, Host: "dps.example"}}, enroll.ErrUntrusted, true},
		{"expired", &tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Cert: cert, Reason: x509.Expired}}, enroll.ErrUntrusted, true},
		{"bare x509 error", x509.UnknownAuthorityError{Cert: cert}, enroll.ErrUntrusted, true},
		{"no such host", &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "dps.invalid", IsNotFound: true}}, enroll.ErrNoHost, true},
		{"name server silent", &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "i/o timeout", Name: "dps.example", IsTimeout: true}}, enroll.ErrUnavailable, false},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}, enroll.ErrUnavailable, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent atomic.Int32
			c, err := enroll.NewClient(enroll.Config{
				ConnectionString: enroll.ConnectionString{HostName: "dps.example", KeyName: "owner", Key: []byte("key")},
				Attempts:         3,
				HTTPClient: &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
					sent.Add(1)
					return nil, tt.err
				})},
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Get(context.Background(), "board-1")
			if !errors.Is(err, tt.want) || enroll.Permanent(err) != tt.permanent || enroll.Transient(err) == tt.permanent {
				t.Errorf("Get = %v; want %v, Permanent %v", err, tt.want, tt.permanent)
			}
			wantSent := int32(3)
			if tt.permanent {
				wantSent = 1
			}
			if n := sent.Load(); n != wantSent {
				t.Errorf("sent %d times, want %d", n, wantSent)
			}
		})
	}
}

func TestPermanentStatuses(t *testing.T) {
	for status, want := range map[int]bool{400: false, 401: true, 403: true, 404: false, 409: false, 429: false, 500: false, 503: false} {
		err := fmt.Errorf("wrapped: %w", &enroll.ServiceError{Op: "POST /enrollments", Status: status})
		if got := enroll.Permanent(err); got != want {
			t.Errorf("Permanent(%d) = %v, want %v", status, got, want)
		}
	}
	if enroll.Permanent(nil) || enroll.Permanent(context.Canceled) {
		t.Errorf("Permanent of nil or a cancelled context is true")
	}
}

// An emulator whose CA the client does not trust: the handshake fails,
// once, and so does the whole upload, at once.
func TestUploadUntrusted(t *testing.T) {
	ctx := context.Background()
	srv, _ := newEmulator(t, emulator.Options{})
	cs, _ := enroll.ParseConnectionString(srv.ConnectionString)
	c, err := enroll.NewClient(enroll.Config{ConnectionString: cs}) // no CAFile
	if err != nil {
		t.Fatal(err)
	}
	state := newState(t, manyTPM(30))
	up, _ := enroll.NewUploader(enroll.UploaderConfig{Client: c, Queue: state, Quota: 600_000})
	start := time.Now()
	stats, err := up.Run(ctx)
	took := time.Since(start)
	t.Logf("untrusted server: Run ended in %.2f s after %d requests: %v", took.Seconds(), stats.Requests, err)
	if !errors.Is(err, enroll.ErrIncomplete) || !errors.Is(err, enroll.ErrUntrusted) || !enroll.Permanent(err) {
		t.Fatalf("Run = %v, want ErrIncomplete and ErrUntrusted", err)
	}
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Errorf("Run = %v: the TLS error is not in the chain", err)
	}
	// One request per worker at most: the first refusal stops the run.
	if stats.Requests > 4 || stats.Transient != 0 {
		t.Errorf("stats = %+v: want at most one request per worker, none counted transient", stats)
	}
	if took > 10*time.Second {
		t.Errorf("Run took %v, want well under the retry time", took)
	}
	counts, _ := state.Counts(ctx)
	if counts[enroll.StatePending] != 30 {
		t.Errorf("counts = %v, want all 30 pending", counts)
	}
}

// A server certificate for other names than the one dialled is not
// trusted either, even from a trusted CA.
func TestClientHostNameMismatch(t *testing.T) {
	srv, _ := newEmulator(t, emulator.Options{})
	cs, _ := enroll.ParseConnectionString(srv.ConnectionString)
	pool := x509.NewCertPool()
	b, err := os.ReadFile(srv.CAFile)
	if err != nil || !pool.AppendCertsFromPEM(b) {
		t.Fatalf("read the emulator's CA: %v", err)
	}
	u, _ := url.Parse(srv.URL)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "dps.example.test"}}
	c, err := enroll.NewClient(enroll.Config{ConnectionString: cs, Endpoint: "https://" + u.Host, HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(context.Background(), "board-1")
	var herr x509.HostnameError
	if !errors.Is(err, enroll.ErrUntrusted) || !errors.As(err, &herr) || !strings.Contains(err.Error(), "dps.example.test") {
		t.Errorf("Get = %v, want ErrUntrusted for the host name", err)
	}
}

// RunOptions.Attempts bounds one Run's retries of a transient answer;
// the next Run has the configured number again.
func TestUploadRunAttempts(t *testing.T) {
	ctx := context.Background()
	var sent atomic.Int32
	c, err := enroll.NewClient(enroll.Config{
		ConnectionString: enroll.ConnectionString{HostName: "dps.example", KeyName: "owner", Key: []byte("key")},
		HTTPClient: &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
			sent.Add(1)
			return nil, errors.New("connection refused")
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	state := newState(t, manyTPM(5))
	up, _ := enroll.NewUploader(enroll.UploaderConfig{Client: c, Queue: state, Quota: 600_000, Attempts: 3})
	_, err = up.RunWith(ctx, enroll.RunOptions{Attempts: 2})
	if !errors.Is(err, enroll.ErrIncomplete) || !errors.Is(err, enroll.ErrUnavailable) || sent.Load() != 2 {
		t.Errorf("RunWith(Attempts 2) = %v after %d requests, want ErrIncomplete after 2", err, sent.Load())
	}
	sent.Store(0)
	if _, err = up.Run(ctx); !errors.Is(err, enroll.ErrIncomplete) || sent.Load() != 3 {
		t.Errorf("Run = %v after %d requests, want ErrIncomplete after the configured 3", err, sent.Load())
	}
}
