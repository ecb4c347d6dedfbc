package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"zerotouch/enroll"
	"zerotouch/enroll/device"
)

// syncBuffer is a bytes.Buffer the command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runEmulatorCmd starts `zerotouch dps-emulator args...` and waits until
// it has printed want lines; stop cancels it and returns its exit code
// and stderr.
func runEmulatorCmd(t *testing.T, lines int, args ...string) (out string, stop func() (int, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- Run(ctx, append([]string{"dps-emulator"}, args...), &stdout, &stderr) }()
	stop = func() (int, string) {
		cancel()
		select {
		case code := <-done:
			return code, stderr.String()
		case <-time.After(time.Minute):
			t.Fatal("dps-emulator did not stop when cancelled")
			return 0, ""
		}
	}
	deadline := time.Now().Add(time.Minute)
	for strings.Count(stdout.String(), "\n") < lines {
		select {
		case code := <-done:
			cancel()
			t.Fatalf("dps-emulator %q exited %d before serving:\n%s", args, code, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("dps-emulator printed %q in a minute", stdout.String())
		}
	}
	return stdout.String(), stop
}

func TestDPSEmulatorCommand(t *testing.T) {
	data := filepath.Join(t.TempDir(), "dps")
	out, stop := runEmulatorCmd(t, 1, "--json", "--addr", "127.0.0.1:0", "--data", data, "--quota", "0")
	var info emulatorInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		stop()
		t.Fatalf("--json printed %q: %v", out, err)
	}
	cs, err := enroll.ParseConnectionString(info.ConnectionString)
	if err != nil {
		stop()
		t.Fatalf("printed connection string: %v", err)
	}
	_, port, err := net.SplitHostPort(cs.HostName)
	if err != nil || port == "0" || info.URL != "https://"+cs.HostName || info.CAFile != filepath.Join(data, "ca.pem") {
		stop()
		t.Fatalf("printed %+v: want the real port in the URL and the host name, and DIR/ca.pem", info)
	}

	// What was printed is all a client needs.
	get := func(cs enroll.ConnectionString, caFile string) (int, enroll.ErrorBody) {
		t.Helper()
		pemBytes, err := os.ReadFile(caFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pemBytes)
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("GET", "https://"+cs.HostName+"/enrollments/no-such-board?api-version="+enroll.APIVersion, nil)
		req.Header.Set("Authorization", enroll.SASToken(cs.HostName, cs.KeyName, cs.Key, time.Now().Add(time.Hour)))
		resp, err := (&http.Client{Transport: tr, Timeout: time.Minute}).Do(req)
		if err != nil {
			t.Fatalf("GET over HTTPS with the printed CA: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var eb enroll.ErrorBody
		json.Unmarshal(b, &eb)
		return resp.StatusCode, eb
	}
	if status, eb := get(cs, info.CAFile); status != 404 || eb.ErrorCode != enroll.CodeNotFound {
		t.Errorf("GET of an unknown enrollment: %d %+v, want 404 with errorCode %d", status, eb, enroll.CodeNotFound)
	}
	if code, errOut := stop(); code != exitOK {
		t.Fatalf("dps-emulator stopped with exit %d: %s", code, errOut)
	}

	// Restarted on the same port and folder, in text: the same connection
	// string, key and CA.
	out, stop = runEmulatorCmd(t, 3, "--addr", cs.HostName, "--data", data)
	if !strings.Contains(out, "connection string: "+info.ConnectionString+"\n") || !strings.Contains(out, info.CAFile) || !strings.Contains(out, info.URL) {
		stop()
		t.Fatalf("restart printed:\n%s\nwant the connection string %q, %s and %s", out, info.ConnectionString, info.CAFile, info.URL)
	}
	if status, _ := get(cs, info.CAFile); status != 404 {
		t.Errorf("GET after restart: %d, want 404", status)
	}
	if code, errOut := stop(); code != exitOK {
		t.Fatalf("dps-emulator stopped with exit %d: %s", code, errOut)
	}
}

func TestDPSEmulatorUsage(t *testing.T) {
	data := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--addr", "127.0.0.1:0"}, "--data"},
		{[]string{"--data", data, "--error-rate", "1.5"}, "--error-rate"},
		{[]string{"--data", data, "--drop-rate", "-0.1"}, "--drop-rate"},
		{[]string{"--data", data, "--drop-after-rate", "NaN"}, "--drop-after-rate"},
		{[]string{"--data", data, "--quota", "-1"}, "--quota"},
		{[]string{"--data", data, "--burst", "-5"}, "--burst"},
		{[]string{"--data", data, "--latency", "-1s"}, "--latency"},
		{[]string{"--data", data, "--latency", "soon"}, "latency"},
		{[]string{"--data", data, "--quota", "many"}, "quota"},
		{[]string{"--data", data, "extra"}, "extra"},
	} {
		code, out, errOut := run(t, append([]string{"dps-emulator"}, tt.args...)...)
		if code != exitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("dps-emulator %q: exit %d, stderr %q; want %d naming %s", tt.args, code, errOut, exitUsage, tt.want)
		}
		if out != "" {
			t.Errorf("dps-emulator %q printed %q", tt.args, out)
		}
	}
	// An address it cannot listen on is a failure, not a usage error.
	if code, _, errOut := run(t, "dps-emulator", "--data", data, "--addr", "127.0.0.1:99999"); code != exitFailed || !strings.Contains(errOut, "listen") {
		t.Errorf("dps-emulator on a bad port: exit %d, stderr %q", code, errOut)
	}
}

// TestDPSEmulatorDevices: the device API of dps-emulator, in the ID scope
// and over the IoT hub given on its command line, as a device reaches it
// from what the command prints.
func TestDPSEmulatorDevices(t *testing.T) {
	if code, _, errOut := run(t, "dps-emulator", "--data", t.TempDir(), "--id-scope", "not-a-scope"); code != exitUsage || !strings.Contains(errOut, "scope") {
		t.Errorf("--id-scope not-a-scope: exit %d, %s", code, errOut)
	}
	ctx := context.Background()
	out, stop := runEmulatorCmd(t, 1, "--json", "--addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "dps"),
		"--id-scope", "0ne0000BEEF", "--iot-hub", "hub-x.azure-devices.net")
	defer stop()
	var info emulatorInfo
	if err := json.Unmarshal([]byte(out), &info); err != nil || info.IDScope != "0ne0000BEEF" {
		t.Fatalf("--json printed %q (%v); want idScope 0ne0000BEEF", out, err)
	}
	cs, err := enroll.ParseConnectionString(info.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	client, err := enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: info.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	key := []byte("the device's own key, 32 bytes..")
	e := &enroll.Enrollment{RegistrationID: "dev-flags", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey,
		SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(key)}}}
	if _, err := client.CreateOrUpdate(ctx, e, ""); err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(info.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	res, err := device.Register(ctx, device.Config{GlobalEndpoint: info.URL, IDScope: info.IDScope, RegistrationID: "dev-flags",
		SymmetricKey: key, TLS: &tls.Config{RootCAs: roots}, MinWait: 10 * time.Millisecond})
	if err != nil || res.AssignedHub != "hub-x.azure-devices.net" || res.DeviceID != "dev-flags" {
		t.Fatalf("register: %+v, %v; want assigned to hub-x as dev-flags", res, err)
	}
}
