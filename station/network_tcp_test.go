package station_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/flasher"
	"zerotouch/station"
)

// A slot whose port is a virtual board served on TCP provisions it.
func TestTCPBoardSlot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l := newLine(t)
	b, err := board.Start(board.Config{Serial: "ZT-TCP-1", Dir: t.TempDir(), TPM: board.TPMNone, Baud: 2_000_000, Listen: "tcp://127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	st := l.stationAt(t, station.ModeSymmetricKey, b.Path())
	sum, err := st.Run(ctx, station.RunOptions{Once: true})
	if err != nil || sum.Passed != 1 || !b.Provisioned() {
		t.Fatalf("Run on %s = %+v, %v; provisioned %v; want the board passed", b.Path(), sum, err, b.Provisioned())
	}
}

// ser2net (Debian's) between the station and a virtual board's
// pseudo-terminal, raw and over RFC 2217: the station provisions the
// board through the network port; the connection cut in the middle of
// the write step is ErrDisconnected with the step's operator message;
// once ser2net is back, Retry passes.
func TestSer2netSlot(t *testing.T) {
	for _, scheme := range []string{flasher.SchemeTCP, flasher.SchemeRFC2217} {
		t.Run(scheme, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			l := newLine(t)
			first := startBoard(t, "ZT-S2N-1", board.TPMNone)
			s := startSer2net(t, first.Path(), 2_000_000, scheme == flasher.SchemeRFC2217)
			st := l.stationAt(t, station.ModeSymmetricKey, s.url(scheme))
			sum, err := st.Run(ctx, station.RunOptions{Once: true})
			if err != nil || sum.Passed != 1 || !first.Provisioned() {
				t.Fatalf("Run through ser2net = %+v, %v; provisioned %v; want the board passed", sum, err, first.Provisioned())
			}

			// The next board goes deaf 100 bytes into the write step, so
			// the station waits for its answer; ser2net dies meanwhile.
			second := startBoard(t, "ZT-S2N-2", board.TPMNone)
			s.stop()
			s.device = second.Path()
			s.start()
			l.mu.Lock()
			l.events = nil
			l.mu.Unlock()
			armed := make(chan struct{})
			var arm sync.Once
			l.onEvent = func(e station.Event) {
				l.event(e)
				if e.Step == station.StepWrite && e.Result == station.Running {
					arm.Do(func() {
						second.SetFaults(board.Faults{DropAfter: 100})
						close(armed)
					})
				}
			}
			st = l.stationAt(t, station.ModeSymmetricKey, s.url(scheme))
			runDone := make(chan error, 1)
			go func() {
				_, err := st.Run(ctx, station.RunOptions{Poll: 20 * time.Millisecond})
				runDone <- err
			}()
			select {
			case <-armed:
			case <-ctx.Done():
				t.Fatal("the write step did not begin")
			}
			for second.Received() < 100 {
				select {
				case <-ctx.Done():
					t.Fatal("the board did not receive the write")
				case <-time.After(5 * time.Millisecond):
				}
			}
			s.stop()
			failed := waitEvent(t, ctx, l, func(e station.Event) bool { return e.Result == station.Failed })
			const want = "writing the configuration to the board failed: reseat the board and press Retry"
			if failed.Step != station.StepWrite || failed.Message != want || !strings.Contains(failed.Error, flasher.ErrDisconnected.Error()) {
				t.Errorf("the cut connection failed step %q with %q (cause %q); want step write, %q, and the cause %q",
					failed.Step, failed.Message, failed.Error, want, flasher.ErrDisconnected)
			}
			if second.Provisioned() {
				t.Fatal("the board whose write was cut is provisioned")
			}

			s.start()
			second.SetFaults(board.Faults{})
			if err := st.Retry("slot-1"); err != nil {
				t.Fatalf("Retry: %v", err)
			}
			passed := waitEvent(t, ctx, l, func(e station.Event) bool { return e.Result == station.Passed })
			if passed.Serial != "ZT-S2N-2" || passed.Attempt != 2 || !second.Provisioned() {
				t.Errorf("after Retry: %+v, provisioned %v; want ZT-S2N-2 passed at its second attempt", passed, second.Provisioned())
			}
			cancel()
			if err := <-runDone; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

// waitEvent waits for the first event of l that match accepts.
func waitEvent(t *testing.T, ctx context.Context, l *line, match func(station.Event) bool) station.Event {
	t.Helper()
	for {
		l.mu.Lock()
		for _, e := range l.events {
			if match(e) {
				l.mu.Unlock()
				return e
			}
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			t.Fatal("timed out waiting for an event")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ser2netProc is Debian's ser2net serving one serial device on a TCP
// port of loopback, raw or with RFC 2217 (telnet(rfc2217)). It can be
// stopped (its connections cut) and started again on the same port,
// with another device.
type ser2netProc struct {
	t       testing.TB
	dir     string
	port    int
	device  string
	baud    int
	rfc2217 bool
	cmd     *exec.Cmd
	done    chan struct{}
}

// startSer2net runs ser2net in front of device; the test skips if
// ser2net is not installed. A new connection takes over from an older
// one (kickolduser), as the station's connection for its next board
// needs.
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
	s := &ser2netProc{t: t, dir: t.TempDir(), port: port, device: device, baud: baud, rfc2217: rfc2217}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *ser2netProc) url(scheme string) string {
	return scheme + "://127.0.0.1:" + strconv.Itoa(s.port)
}

// start runs ser2net and waits until it accepts connections.
func (s *ser2netProc) start() {
	s.t.Helper()
	accepter := "tcp,127.0.0.1," + strconv.Itoa(s.port)
	if s.rfc2217 {
		accepter = "telnet(rfc2217)," + accepter
	}
	conf := filepath.Join(s.dir, "ser2net.yaml")
	yaml := fmt.Sprintf("%%YAML 1.1\n---\nconnection: &board\n  accepter: %s\n  connector: serialdev,%s,%dn81,local\n  options:\n    kickolduser: true\n",
		accepter, s.device, s.baud)
	if err := os.WriteFile(conf, []byte(yaml), 0o600); err != nil {
		s.t.Fatal(err)
	}
	s.cmd = exec.Command("ser2net", "-n", "-d", "-c", conf, "-P", filepath.Join(s.dir, "ser2net.pid"))
	s.cmd.Stdout, s.cmd.Stderr = ser2netLog{s.t}, ser2netLog{s.t}
	dieWithTest(s.cmd)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start ser2net: %v", err)
	}
	done := make(chan struct{})
	s.done = done
	go func() {
		s.cmd.Wait()
		close(done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(s.port))
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			s.t.Fatalf("ser2net ended at start: %v", s.cmd.ProcessState)
		case <-ctx.Done():
			s.t.Fatalf("ser2net does not accept on port %d: %v", s.port, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stop kills ser2net: its connections are cut, as a device server
// losing power or its network would cut them.
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

// ser2netLog sends ser2net's output to the test's log.
type ser2netLog struct{ t testing.TB }

func (w ser2netLog) Write(b []byte) (int, error) {
	if !bytes.Contains(b, []byte("Unable to start mdns")) { // no mDNS daemon on a test machine
		w.t.Logf("ser2net: %s", b)
	}
	return len(b), nil
}
