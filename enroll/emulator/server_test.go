package emulator

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zerotouch/enroll"
)

// startClient is an HTTPS client that trusts only the server's CA file;
// h2 picks HTTP/2 or HTTP/1.1.
func startClient(t *testing.T, s *Server, h2 bool) *http.Client {
	t.Helper()
	pemBytes, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("%s holds no certificate", s.CAFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// call makes a request signed from the server's connection string, as a
// client given only that string and the CA would.
func call(t *testing.T, c *http.Client, s *Server, method, path string, body any) (*http.Response, []byte, error) {
	t.Helper()
	cs, err := enroll.ParseConnectionString(s.ConnectionString)
	if err != nil {
		t.Fatalf("connection string: %v", err)
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, "https://"+cs.HostName+path+"?api-version="+enroll.APIVersion, rd)
	req.Header.Set("Authorization", enroll.SASToken(cs.HostName, cs.KeyName, cs.Key, time.Now().Add(time.Hour)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestStart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dps")
	ctx := context.Background()
	s, err := Start(ctx, "127.0.0.1:0", dir, Options{HostNames: []string{"dps.line7.example"}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "https://"))
	if port == "0" || s.URL != "https://127.0.0.1:"+port || s.HostName != "127.0.0.1:"+port {
		t.Fatalf("URL %q, HostName %q: want the real port", s.URL, s.HostName)
	}
	if !strings.HasPrefix(s.ConnectionString, "HostName="+s.HostName+";SharedAccessKeyName="+DefaultKeyName+";SharedAccessKey=") {
		t.Errorf("connection string %q", s.ConnectionString)
	}
	for name, mode := range map[string]os.FileMode{"": 0o700 | os.ModeDir, FileCAKey: 0o600, FileConnectionString: 0o600} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode() != mode {
			t.Errorf("%s/%s: mode %v, %v; want %v", dir, name, st.Mode(), err, mode)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, FileConnectionString)); strings.TrimSpace(string(b)) != s.ConnectionString {
		t.Errorf("the connection string file holds %q, not %q", b, s.ConnectionString)
	}

	for _, h2 := range []bool{false, true} {
		c := startClient(t, s, h2)
		resp, body, err := call(t, c, s, "PUT", "/enrollments/start-1", tpmEnrollment("start-1"))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("PUT over HTTPS (h2 %v): %v %s", h2, err, body)
		}
		if want := map[bool]int{false: 1, true: 2}[h2]; resp.ProtoMajor != want {
			t.Errorf("answered over HTTP/%d, want HTTP/%d", resp.ProtoMajor, want)
		}
		// A connection cut after the work is an error to the client, over
		// either protocol.
		s.Emulator.SetFaults(Faults{DropAfterRate: 1})
		id := map[bool]string{false: "after-h1", true: "after-h2"}[h2]
		if resp, _, err := call(t, c, s, "PUT", "/enrollments/"+id, tpmEnrollment(id)); err == nil {
			t.Errorf("DropAfterRate 1 over HTTP/%d: answered %d", resp.ProtoMajor, resp.StatusCode)
		}
		s.Emulator.SetFaults(Faults{})
		if n, _ := s.Emulator.Writes(ctx, id); n != 1 {
			t.Errorf("%s: Writes %d, want 1", id, n)
		}
	}
	// The certificate covers the configured host names.
	cert := s.srv.TLSConfig.Certificates[0]
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	for _, name := range []string{"localhost", "127.0.0.1", "::1", "dps.line7.example"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("server certificate: %v", err)
		}
	}

	ca1, _ := os.ReadFile(s.CAFile)
	cs1 := s.ConnectionString
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Restarted on the same address: the same CA, key and connection
	// string, and the enrollments kept.
	s2, err := Start(ctx, "127.0.0.1:"+port, dir, Options{})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer s2.Close()
	if ca2, _ := os.ReadFile(s2.CAFile); !bytes.Equal(ca1, ca2) {
		t.Errorf("restart made a new CA")
	}
	if s2.ConnectionString != cs1 {
		t.Errorf("restart changed the connection string:\n%s\n%s", cs1, s2.ConnectionString)
	}
	if resp, body, err := call(t, startClient(t, s2, false), s2, "GET", "/enrollments/start-1", nil); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET after restart: %v %s", err, body)
	}
}

func TestStartErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// A CA certificate without its key.
	os.WriteFile(filepath.Join(dir, FileCA), []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), 0o644)
	if s, err := Start(ctx, "127.0.0.1:0", dir, Options{}); err == nil {
		s.Close()
		t.Errorf("Start with ca.pem and no ca.key succeeded")
	} else if !strings.Contains(err.Error(), FileCAKey) {
		t.Errorf("Start with ca.pem and no ca.key: %v, want it to name %s", err, FileCAKey)
	}

	dir = t.TempDir()
	os.WriteFile(filepath.Join(dir, FileConnectionString), []byte("HostName=x;SharedAccessKeyName=y;SharedAccessKey=!!"), 0o600)
	if s, err := Start(ctx, "127.0.0.1:0", dir, Options{}); err == nil {
		s.Close()
		t.Errorf("Start with a broken connection string file succeeded")
	} else if !errors.Is(err, enroll.ErrConnectionString) || strings.Contains(err.Error(), "!!") {
		t.Errorf("Start with a broken connection string: %v", err)
	}

	if _, err := Start(ctx, "127.0.0.1:0", "", Options{}); !errors.Is(err, ErrOptions) {
		t.Errorf("Start without a folder: %v, want ErrOptions", err)
	}
	if _, err := Start(ctx, "127.0.0.1:0", t.TempDir(), Options{Quota: -1}); !errors.Is(err, ErrOptions) {
		t.Errorf("Start with a negative quota: %v, want ErrOptions", err)
	}
	if _, err := Start(ctx, "127.0.0.1:99999", t.TempDir(), Options{}); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("Start on a bad address: %v", err)
	}
}

func TestStartIDScope(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Start(ctx, "127.0.0.1:0", dir, Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if s.IDScope != DefaultIDScope {
		t.Errorf("IDScope %q, want the default %q", s.IDScope, DefaultIDScope)
	}
	s.Close()
	// Given once, kept in the folder for the next start.
	if s, err = Start(ctx, "127.0.0.1:0", dir, Options{IDScope: "0ne00ABC123"}); err != nil {
		t.Fatalf("Start with an ID scope: %v", err)
	}
	s.Close()
	if b, _ := os.ReadFile(filepath.Join(dir, FileIDScope)); strings.TrimSpace(string(b)) != "0ne00ABC123" {
		t.Errorf("%s holds %q", FileIDScope, b)
	}
	if s, err = Start(ctx, "127.0.0.1:0", dir, Options{}); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if s.IDScope != "0ne00ABC123" || s.Emulator.IDScope() != "0ne00ABC123" {
		t.Errorf("restart: IDScope %q, want the one kept", s.IDScope)
	}
	s.Close()

	os.WriteFile(filepath.Join(dir, FileIDScope), []byte("not/a scope\n"), 0o644)
	if s, err := Start(ctx, "127.0.0.1:0", dir, Options{}); err == nil {
		s.Close()
		t.Errorf("Start with a broken %s succeeded", FileIDScope)
	} else if !strings.Contains(err.Error(), FileIDScope) {
		t.Errorf("Start with a broken %s: %v, want it named", FileIDScope, err)
	}
	for _, bad := range []Options{{IDScope: "0ne-00"}, {IoTHubs: []string{"https://hub"}}, {RegistrationQuota: -1}, {AssignDelay: -time.Second}} {
		if s, err := Start(ctx, "127.0.0.1:0", t.TempDir(), bad); !errors.Is(err, ErrOptions) {
			if err == nil {
				s.Close()
			}
			t.Errorf("Start(%+v) = %v, want ErrOptions", bad, err)
		}
	}
}

// TestStartAudience: a service SAS token is checked against the names
// the server answers to (its certificate's and the address connections
// come in on), never against the Host header the request chose.
func TestStartAudience(t *testing.T) {
	s, err := Start(context.Background(), "127.0.0.1:0", filepath.Join(t.TempDir(), "dps"), Options{HostNames: []string{"dps.line7.example"}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer s.Close()
	cs, err := enroll.ParseConnectionString(s.ConnectionString)
	if err != nil {
		t.Fatalf("connection string: %v", err)
	}
	_, port, _ := net.SplitHostPort(s.HostName)
	const other = "other-dps.azure-devices-provisioning.net"
	tests := []struct {
		name     string
		sr, host string // the token's audience and the request's Host ("": the URL's)
		want     int
	}{
		{"another host, named by Host", other, other, http.StatusUnauthorized},
		{"another host and the port, named by Host", other + ":" + port, other + ":" + port, http.StatusUnauthorized},
		{"another host, Host the server's", other, s.HostName, http.StatusUnauthorized},
		{"another host, no Host given", other, "", http.StatusUnauthorized},
		{"the server's host name", s.HostName, "", http.StatusNotFound},
		{"the server's host name, Host another", s.HostName, other, http.StatusNotFound},
		{"the server's address without the port, Host in capitals", "127.0.0.1", "LOCALHOST:" + port, http.StatusNotFound},
		{"localhost and the port", "localhost:" + port, s.HostName, http.StatusNotFound},
		{"a configured name in capitals", "DPS.line7.example", "dps.line7.example", http.StatusNotFound},
		{"a configured name and the port, Host another", "dps.line7.example:" + port, other, http.StatusNotFound},
	}
	for _, h2 := range []bool{false, true} {
		c := startClient(t, s, h2)
		for _, tt := range tests {
			req, _ := http.NewRequest("GET", s.URL+"/enrollments/nobody?api-version="+enroll.APIVersion, nil)
			req.Header.Set("Authorization", enroll.SASToken(tt.sr, cs.KeyName, cs.Key, time.Now().Add(time.Hour)))
			req.Host = tt.host
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s (h2 %v): %v", tt.name, h2, err)
			}
			var eb enroll.ErrorBody
			json.NewDecoder(resp.Body).Decode(&eb)
			resp.Body.Close()
			wantCode := map[int]int{http.StatusUnauthorized: enroll.CodeUnauthorized, http.StatusNotFound: enroll.CodeNotFound}[tt.want]
			if resp.StatusCode != tt.want || eb.ErrorCode != wantCode {
				t.Errorf("%s (h2 %v): GET with sr %q and Host %q = %d %d %q, want %d %d", tt.name, h2, tt.sr, tt.host, resp.StatusCode, eb.ErrorCode, eb.Message, tt.want, wantCode)
			}
		}
	}
}

// Given --host localhost, the connection string names localhost, which
// the Azure SDKs take; a name that does not lead to the server is not used.
func TestStartConnectionStringName(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{[]string{"localhost"}, "localhost"},
		{[]string{"no-such-host.invalid", "localhost"}, "localhost"},
		{[]string{"no-such-host.invalid"}, "127.0.0.1"},
		{nil, "127.0.0.1"},
	} {
		s, err := Start(context.Background(), "127.0.0.1:0", filepath.Join(t.TempDir(), "dps"), Options{HostNames: tc.names})
		if err != nil {
			t.Fatalf("Start: %v", err)
		}
		cs, err := enroll.ParseConnectionString(s.ConnectionString)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if host, _, _ := net.SplitHostPort(cs.HostName); host != tc.want {
			t.Errorf("names %v: connection string HostName %s, want %s", tc.names, cs.HostName, tc.want)
		}
	}
}
