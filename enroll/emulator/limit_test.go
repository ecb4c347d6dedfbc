package emulator

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zerotouch/enroll"
)

// TestBodyLimits: a body over MaxBody is refused before it is read
// whole, one that stops arriving ends in 408 within ReadTimeout, and a
// request whose credentials fail is answered before its body is read;
// each with DPS's error body, and the connection closed after (HTTP/1).
func TestBodyLimits(t *testing.T) {
	const readTimeout = 500 * time.Millisecond
	const maxBody = 4096
	s, err := Start(context.Background(), "127.0.0.1:0", filepath.Join(t.TempDir(), "dps"), Options{ReadTimeout: readTimeout, MaxBody: maxBody, TPMChallenge: fakeSealer})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer s.Close()
	c := rawClientFor(t, s)
	if resp, body, err := call(t, startClient(t, s, false), s, "PUT", "/enrollments/limits-tpm", tpmEnrollment("limits-tpm")); err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT enrollment: %v %s", err, body)
	}
	// A TPM device's first register request is read before any
	// credential: it brings the keys of its challenge.
	tpmRegister := c.devicePath("limits-tpm/register")

	tests := []struct {
		name    string
		path    string
		auth    string
		length  int64  // Content-Length; -1 chunked
		send    string // sent after the header, then nothing more (chunked: sent again and again)
		status  int
		code    int
		within  time.Duration // the answer comes within
		message string
	}{
		{"service: Content-Length over MaxBody", servicePath("/enrollments/big-1"), c.token(), 10 << 20, "", 413, enroll.CodeTooLarge, readTimeout / 2, "4096 bytes"},
		{"device: Content-Length over MaxBody", tpmRegister, "", 10 << 20, "{", 413, enroll.CodeTooLarge, readTimeout / 2, "4096 bytes"},
		{"service: chunked past MaxBody", servicePath("/enrollments/big-2"), c.token(), -1, strings.Repeat(" ", 1000), 413, enroll.CodeTooLarge, readTimeout, "4096 bytes"},
		{"device: chunked past MaxBody", tpmRegister, "", -1, strings.Repeat(" ", 1000), 413, enroll.CodeTooLarge, readTimeout, "4096 bytes"},
		{"service: body stops", servicePath("/enrollments/slow-1"), c.token(), 100, `{"registrationId":`, 408, codeRequestTimeout, 4 * readTimeout, "did not arrive within 500ms"},
		{"device: body stops", tpmRegister, "", 100, `{"registrationId":`, 408, codeRequestTimeout, 4 * readTimeout, "did not arrive within 500ms"},
		{"device: chunked body stops", tpmRegister, "", -1, `{"registrationId":`, 408, codeRequestTimeout, 4 * readTimeout, "did not arrive"},
		{"service: no token, body never sent", servicePath("/enrollments/slow-2"), "", 100, "", 401, enroll.CodeUnauthorized, readTimeout / 2, "Authorization"},
		{"service: token for another host, body never sent", servicePath("/enrollments/slow-3"), enroll.SASToken("other.example", c.connStr.KeyName, c.connStr.Key, time.Now().Add(time.Hour)), 100, "", 401, enroll.CodeUnauthorized, readTimeout / 2, "other.example"},
		{"device: unknown device, body never sent", c.devicePath("nobody/register"), "", 100, "", 404, enroll.CodeNotFound, readTimeout / 2, "not enrolled"},
		{"device: forged token, body never sent", tpmRegister, deviceToken(c.idScope+"/registrations/limits-tpm", "registration", []byte("forged"), time.Now().Add(time.Hour)), 100, "", 401, enroll.CodeUnauthorized, readTimeout / 2, "no TPM challenge"},
	}
	for _, tt := range tests {
		conn, err := c.dial()
		if err != nil {
			t.Fatalf("%s: dial: %v", tt.name, err)
		}
		start := time.Now()
		io.WriteString(conn, c.head("PUT", tt.path, tt.auth, tt.length))
		stop := make(chan struct{})
		sent := make(chan int64, 1)
		go func() {
			var n int64
			defer func() { sent <- n }()
			if tt.length >= 0 || tt.send == "" {
				k, _ := io.WriteString(conn, tt.send)
				n += int64(k)
				return
			}
			chunk := fmt.Sprintf("%x\r\n%s\r\n", len(tt.send), tt.send)
			if tt.status == 408 {
				k, _ := io.WriteString(conn, chunk)
				n += int64(k)
				return
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				k, err := io.WriteString(conn, chunk)
				n += int64(k)
				if err != nil || n > 64<<20 {
					return
				}
			}
		}()
		conn.SetReadDeadline(time.Now().Add(tt.within + 5*time.Second))
		r, err := readAnswer(conn)
		took := time.Since(start)
		close(stop)
		if err != nil {
			t.Errorf("%s: no answer after %v: %v", tt.name, took, err)
			conn.Close()
			continue
		}
		t.Logf("%s: %d after %v", tt.name, r.status, took.Round(time.Millisecond))
		r.wantError(t, tt.name, tt.status, tt.code, tt.message)
		if took > tt.within {
			t.Errorf("%s: answered after %v, want within %v", tt.name, took, tt.within)
		}
		if !closedAfter(conn) {
			t.Errorf("%s: the connection stayed open after the answer", tt.name)
		}
		conn.Close()
		if n := <-sent; n > 16<<20 {
			t.Errorf("%s: the server took %d bytes of a body over %d", tt.name, n, maxBody)
		}
	}

	// Over HTTP/2, a body that stops arriving ends its stream in 408
	// and leaves the connection to the others.
	h2 := startClient(t, s, true)
	pr, pw := io.Pipe()
	defer pw.Close()
	go io.WriteString(pw, `{"registrationId":`)
	req, _ := http.NewRequest("PUT", s.URL+tpmRegister, pr)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := h2.Do(req)
	if err != nil {
		t.Fatalf("h2 stalled body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	t.Logf("h2 stalled body: %d after %v", resp.StatusCode, time.Since(start).Round(time.Millisecond))
	if resp.ProtoMajor != 2 {
		t.Errorf("answered over HTTP/%d, want 2", resp.ProtoMajor)
	}
	response{status: resp.StatusCode, header: resp.Header, body: b}.wantError(t, "h2 stalled body", 408, codeRequestTimeout, "did not arrive")
	if resp, body, err := call(t, h2, s, "GET", "/enrollments/limits-tpm", nil); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET after the stalled stream: %v %s", err, body)
	}

	// A body that arrives in time is taken, on a connection that the
	// server keeps for the next request.
	conn, err := c.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body, _ := json.Marshal(tpmEnrollment("limits-ok"))
	br := bufio.NewReader(conn)
	for i := range 2 {
		io.WriteString(conn, c.head("PUT", servicePath("/enrollments/limits-ok"), c.token(), int64(len(body))))
		conn.Write(body[:10])
		time.Sleep(readTimeout / 5)
		conn.Write(body[10:])
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("PUT %d on one connection: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("PUT %d of a body sent in two parts: %d", i+1, resp.StatusCode)
		}
		// Longer than the read timeout between requests: the deadline
		// of the body is not left on the connection.
		time.Sleep(readTimeout * 2)
	}
}

// TestReclaim: when MaxConns connections are held by clients that send
// nothing more, the one that has waited longest is closed to let a new
// one in, which is answered at once.
func TestReclaim(t *testing.T) {
	s, err := Start(context.Background(), "127.0.0.1:0", filepath.Join(t.TempDir(), "dps"), Options{MaxConns: 4, ReadTimeout: time.Minute})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer s.Close()
	c := rawClientFor(t, s)
	if resp, body, err := call(t, startClient(t, s, false), s, "PUT", "/enrollments/reclaim-tpm", tpmEnrollment("reclaim-tpm")); err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT enrollment: %v %s", err, body)
	}
	// Four connections: one idle after its TLS handshake, one with half
	// a header, two with half a body (one service request with a token,
	// one TPM device's first register request).
	var held []*tls.Conn
	for i, send := range []string{
		"",
		"PUT /enrollments/x HTTP/1.1\r\nHost: " + c.addr + "\r\n",
		c.head("PUT", servicePath("/enrollments/reclaim-1"), c.token(), 100) + "{",
		c.head("PUT", c.devicePath("reclaim-tpm/register"), "", 100) + "{",
	} {
		conn, err := c.dial()
		if err != nil {
			t.Fatalf("held connection %d: %v", i+1, err)
		}
		defer conn.Close()
		io.WriteString(conn, send)
		held = append(held, conn)
	}
	time.Sleep(2 * reclaimAge)
	for i := range 3 {
		start := time.Now()
		resp, body, err := call(t, startClient(t, s, i%2 == 1), s, "GET", "/enrollments/reclaim-tpm", nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %d with every connection held: %v %s", i+1, err, body)
		}
		t.Logf("GET %d with every connection held: answered after %v", i+1, time.Since(start).Round(time.Millisecond))
	}
	if n := s.Emulator.Stats().Reclaimed; n < 1 {
		t.Errorf("Stats().Reclaimed = %d, want connections closed to make room", n)
	}
	closed := 0
	for _, conn := range held {
		if closedAfter(conn) {
			closed++
		}
	}
	if closed == 0 {
		t.Errorf("none of the held connections was closed")
	}
	t.Logf("%d of %d held connections closed, %d reclaimed", closed, len(held), s.Emulator.Stats().Reclaimed)
}

// TestMaxConns: the default cap keeps within the open-file limit.
func TestMaxConns(t *testing.T) {
	if got := maxConns(7); got != 7 {
		t.Errorf("maxConns(7) = %d, want 7", got)
	}
	got := maxConns(0)
	if got < minConns || got > DefaultMaxConns {
		t.Errorf("maxConns(0) = %d, want %d to %d", got, minConns, DefaultMaxConns)
	}
	if lim := openFileLimit(); lim > 0 && lim < 2*got+reservedFiles && got > minConns {
		t.Errorf("maxConns(0) = %d under an open-file limit of %d", got, lim)
	}
	if _, err := New(context.Background(), Options{DB: filepath.Join(t.TempDir(), "e.db"), PrimaryKey: testKey, MaxConns: -1}); !errors.Is(err, ErrOptions) {
		t.Errorf("New with MaxConns -1: %v, want ErrOptions", err)
	}
	if _, err := New(context.Background(), Options{DB: filepath.Join(t.TempDir(), "e.db"), PrimaryKey: testKey, ReadTimeout: -time.Second}); !errors.Is(err, ErrOptions) {
		t.Errorf("New with ReadTimeout -1s: %v, want ErrOptions", err)
	}
}
