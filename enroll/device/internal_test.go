package device

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"zerotouch/enroll"
)

func TestParseRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"3", 3 * time.Second}, {" 2 ", 2 * time.Second}, {"0", 0}, {"-1", 0}, {"1.5", 0},
		{"Wed, 21 Oct 2015 07:28:00 GMT", 0}, {"9999999999", 0}, {"300", 5 * time.Minute},
	} {
		if got := parseRetryAfter(tt.in); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	c := &client{cfg: Config{MinWait: time.Second, MaxWait: 5 * time.Minute}}
	for _, tt := range []struct{ in, def, want time.Duration }{
		{0, time.Second, time.Second}, {3 * time.Second, time.Second, 3 * time.Second},
		{time.Hour, time.Second, 5 * time.Minute}, {time.Millisecond, 0, time.Second},
	} {
		if got := c.clamp(tt.in, tt.def); got != tt.want {
			t.Errorf("clamp(%v, %v) = %v, want %v", tt.in, tt.def, got, tt.want)
		}
	}
}

func TestSymmetricKeyToken(t *testing.T) {
	// The token verifies as DPS verifies it, for the device's resource.
	key := []byte("device key")
	expiry := time.Unix(1795424126, 0)
	tok := SymmetricKeyToken("0ne00DE0000", "dev:1.a", key, expiry)
	const want = "SharedAccessSignature sr=0ne00DE0000%2Fregistrations%2Fdev%3A1.a&sig="
	if !strings.HasPrefix(tok, want) || !strings.HasSuffix(tok, "&se=1795424126&skn=registration") {
		t.Errorf("SymmetricKeyToken = %q, want %s...&se=1795424126&skn=registration", tok, want)
	}
	sas, err := enroll.ParseSAS(tok)
	if err != nil {
		t.Fatalf("ParseSAS(%q): %v", tok, err)
	}
	if err := sas.Verify([][]byte{key}, "0ne00de0000/registrations/DEV:1.A", expiry); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if err := sas.Verify([][]byte{[]byte("other")}, "0ne00DE0000/registrations/dev:1.a", expiry); !errors.Is(err, enroll.ErrSASSignature) {
		t.Errorf("Verify with another key = %v, want ErrSASSignature", err)
	}
}

func TestDecodeAnswers(t *testing.T) {
	tests := []struct {
		name    string
		resp    response
		wantErr error
	}{
		{"assigning", response{status: 202, body: []byte(`{"operationId":"op","status":"assigning"}`)}, nil},
		{"202 without an operation", response{status: 202, body: []byte(`{"status":"assigning"}`)}, ErrProtocol},
		{"not JSON", response{status: 200, body: []byte(`<html>`)}, ErrProtocol},
		{"401", response{status: 401, body: []byte(`{"errorCode":401002,"trackingId":"t","message":"Unauthorized"}`)}, ErrUnauthorized},
		{"404 not JSON", response{status: 404, body: []byte(`Not Found`)}, ErrNotFound},
		{"400", response{status: 400, body: nil}, ErrBadRequest},
		{"503", response{status: 503}, ErrServer},
	}
	for _, tt := range tests {
		_, err := decodeStatus("op", &tt.resp)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("decodeStatus(%s) = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	var e *Error
	_, err := decodeStatus("register dev-1", &response{status: 401, body: []byte(`{"errorCode":401002,"trackingId":"abc","message":"Unauthorized"}`)})
	if !errors.As(err, &e) || e.Code != 401002 || e.TrackingID != "abc" || !strings.Contains(err.Error(), "register dev-1: DPS answered 401") {
		t.Errorf("decodeStatus(401) = %v", err)
	}
}

func FuzzDecodeAnswer(f *testing.F) {
	f.Add(200, []byte(`{"operationId":"5.a.b","status":"assigned","registrationState":{"registrationId":"d","assignedHub":"h","deviceId":"d","status":"assigned"}}`), "1")
	f.Add(202, []byte(`{"operationId":"5.a.b","status":"assigning"}`), "3")
	f.Add(401, []byte(`{"authenticationKey":"AAAA","keyName":"registration"}`), "")
	f.Add(429, []byte(`{"errorCode":429001}`), "2")
	f.Fuzz(func(t *testing.T, status int, body []byte, retry string) {
		resp := &response{status: status, body: body, retryAfter: parseRetryAfter(retry)}
		if resp.retryAfter < 0 {
			t.Fatalf("parseRetryAfter(%q) = %v", retry, resp.retryAfter)
		}
		st, err := decodeStatus("op", resp)
		if err == nil {
			if status != http.StatusOK && status != http.StatusAccepted {
				t.Fatalf("decodeStatus took status %d", status)
			}
			if pending(resp, st) && st.OperationID == "" {
				t.Fatalf("decodeStatus(%d, %q): pending without an operation ID", status, body)
			}
			return
		}
		if e := (*Error)(nil); errors.As(err, &e) && e.Status != status {
			t.Fatalf("decodeStatus(%d) = %v: status lost", status, err)
		}
	})
}
