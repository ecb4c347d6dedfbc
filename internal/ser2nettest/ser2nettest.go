// Package ser2nettest runs Debian's ser2net for tests: one serial device
// (a virtual board's pseudo-terminal) served on a TCP port of loopback,
// raw or with RFC 2217, that a test can stop (the connection cut, as a
// device server losing power would cut it) and start again on the same
// port.
package ser2nettest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// TB is the part of testing.TB that Start uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Skip(args ...any)
	Cleanup(func())
	TempDir() string
}

// Server is ser2net serving one device.
type Server struct {
	t       TB
	conf    string
	port    int
	device  string
	baud    int
	rfc2217 bool
	cmd     *exec.Cmd
	done    chan struct{}
}

// Start runs ser2net in front of device at baud, raw or over RFC 2217,
// until the test ends. A new connection takes over from an older one
// (kickolduser), as a station reconnecting for its next board needs.
// Without ser2net the test is skipped, or fails when CI is set (CI
// installs it).
func Start(t TB, device string, baud int, rfc2217 bool) *Server {
	t.Helper()
	if _, err := exec.LookPath("ser2net"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("ser2net is not installed (Debian: apt-get install ser2net; bash .ci/install does)")
		}
		t.Skip("ser2net is not installed (Debian: apt-get install ser2net)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("a free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &Server{t: t, conf: filepath.Join(t.TempDir(), "ser2net.yaml"), port: port, device: device, baud: baud, rfc2217: rfc2217}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// URL is the port's URL for a station: scheme tcp or rfc2217.
func (s *Server) URL(scheme string) string {
	return scheme + "://127.0.0.1:" + strconv.Itoa(s.port)
}

// SetDevice serves device from the next Start on: another board behind
// the same port, as on a fixture.
func (s *Server) SetDevice(device string) { s.device = device }

// Start runs ser2net (again) and waits until it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	accepter := "tcp,127.0.0.1," + strconv.Itoa(s.port)
	if s.rfc2217 {
		accepter = "telnet(rfc2217),tcp,127.0.0.1," + strconv.Itoa(s.port)
	}
	yaml := fmt.Sprintf(`%%YAML 1.1
---
connection: &board
  accepter: %s
  connector: serialdev,%s,%dn81,local
  options:
    kickolduser: true
`, accepter, s.device, s.baud)
	if err := os.WriteFile(s.conf, []byte(yaml), 0o600); err != nil {
		s.t.Fatalf("ser2net's configuration: %v", err)
	}
	pid := filepath.Join(filepath.Dir(s.conf), "ser2net.pid")
	s.cmd = exec.Command("ser2net", "-n", "-d", "-c", s.conf, "-P", pid)
	s.cmd.Stdout, s.cmd.Stderr = logWriter{s.t}, logWriter{s.t}
	dieWithTest(s.cmd)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start ser2net: %v", err)
	}
	s.done = make(chan struct{})
	go func() {
		s.cmd.Wait()
		close(s.done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		// ser2net opens the device for this connection and closes it
		// again when it ends.
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.port))
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-s.done:
			s.t.Fatalf("ser2net ended at start: %v", s.cmd.ProcessState)
		case <-ctx.Done():
			s.t.Fatalf("ser2net does not accept on port %d: %v", s.port, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Stop kills ser2net: its connections are cut, as a device server
// losing power or its network would cut them.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
	default:
		s.cmd.Process.Kill()
		<-s.done
	}
}

// logWriter sends ser2net's output to the test's log.
type logWriter struct{ t TB }

func (w logWriter) Write(b []byte) (int, error) {
	if !bytes.Contains(b, []byte("Unable to start mdns")) { // no mDNS daemon on a test machine
		w.t.Logf("ser2net: %s", b)
	}
	return len(b), nil
}
