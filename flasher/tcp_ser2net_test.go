package flasher_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// ser2netProc is Debian's ser2net serving one serial device on a TCP
// port of loopback, raw or with RFC 2217 (telnet(rfc2217)). It can be
// stopped (the connection cut) and started again on the same port.
type ser2netProc struct {
	t    testing.TB
	conf string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// startSer2net runs ser2net in front of device, at baud, raw or over RFC
// 2217; the test skips if ser2net is not installed. A new connection
// takes over from an older one (kickolduser), as a station reconnecting
// for its next board needs.
func startSer2net(t testing.TB, device string, baud int, rfc2217 bool) *ser2netProc {
	t.Helper()
	if _, err := exec.LookPath("ser2net"); err != nil {
		t.Skip("ser2net is not installed (Debian: apt-get install ser2net)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	accepter := "tcp,127.0.0.1," + strconv.Itoa(port)
	if rfc2217 {
		accepter = "telnet(rfc2217),tcp,127.0.0.1," + strconv.Itoa(port)
	}
	conf := filepath.Join(t.TempDir(), "ser2net.yaml")
	yaml := fmt.Sprintf(`%%YAML 1.1
---
connection: &board
  accepter: %s
  connector: serialdev,%s,%dn81,local
  options:
    kickolduser: true
`, accepter, device, baud)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &ser2netProc{t: t, conf: conf, port: port}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// url is the port's URL for the station.
func (s *ser2netProc) url(scheme string) string {
	return scheme + "://127.0.0.1:" + strconv.Itoa(s.port)
}

// start runs ser2net and waits until it accepts connections.
func (s *ser2netProc) start() {
	s.t.Helper()
	pid := filepath.Join(filepath.Dir(s.conf), "ser2net.pid")
	s.cmd = exec.Command("ser2net", "-n", "-d", "-c", s.conf, "-P", pid)
	s.cmd.Stdout, s.cmd.Stderr = testWriter{s.t}, testWriter{s.t}
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

// stop kills ser2net: its connections are cut, as a device server
// losing power or its network would cut them (seen as a reset or the
// kernel's close).
func (s *ser2netProc) stop() {
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

// testWriter sends a process's output to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	if !bytes.Contains(b, []byte("Unable to start mdns")) { // no mDNS daemon on a test machine
		w.t.Logf("ser2net: %s", b)
	}
	return len(b), nil
}
