package flasher_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/flasher"
	"zerotouch/internal/rawpty"
	"zerotouch/internal/ser2nettest"
)

func TestParseMatchNetPort(t *testing.T) {
	for _, tt := range []struct {
		rule, want, wantErr string
	}{
		{rule: "tcp://127.0.0.1:4001", want: "tcp://127.0.0.1:4001"},
		{rule: "rfc2217://moxa-3.line:950", want: "rfc2217://moxa-3.line:950"},
		{rule: "TCP://fixture:23/", want: "tcp://fixture:23"},
		{rule: " rfc2217://[::1]:2217 ", want: "rfc2217://[::1]:2217"},
		{rule: "tcp://fixture", wantErr: "host and port"},
		{rule: "tcp://:4001", wantErr: "host and port"},
		{rule: "udp://fixture:4001", wantErr: `scheme "udp"`},
		{rule: "tcp://fixture:0", wantErr: "1 to 65535"},
		{rule: "tcp://fixture:70000", wantErr: "1 to 65535"},
		{rule: "tcp://fixture:http", wantErr: "port"},
		{rule: "tcp://fixture:4001/ttyS0", wantErr: "nothing more"},
		{rule: "tcp://op@fixture:4001", wantErr: "nothing more"},
		{rule: "rfc2217://fixture:4001?baud=9600", wantErr: "nothing more"},
		{rule: "tcp://fixture:4001,vid=2fe3", wantErr: "port"},
	} {
		m, err := flasher.ParseMatch(tt.rule)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseMatch(%q) = %+v, %v; want an error saying %q", tt.rule, m, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseMatch(%q): %v", tt.rule, err)
			continue
		}
		got, err := m.Resolve()
		if err != nil || got != tt.want || m.String() != tt.want || !flasher.IsNetPort(got) {
			t.Errorf("ParseMatch(%q).Resolve() = %q, %v (String %q); want %q", tt.rule, got, err, m.String(), tt.want)
		}
		if m.Matches(flasher.PortInfo{Path: got}) {
			t.Errorf("ParseMatch(%q) matches a serial port", tt.rule)
		}
	}
	for _, name := range []string{"/dev/ttyACM0", "COM7", "2fe3:0100", "usb-ZEPHYR_x"} {
		if flasher.IsNetPort(name) {
			t.Errorf("IsNetPort(%q) = true, want false", name)
		}
	}
}

// newTCPBoard starts a virtual board served on TCP.
func newTCPBoard(t testing.TB, cfg board.Config) *board.Board {
	t.Helper()
	cfg.Listen = "tcp://127.0.0.1:0"
	b := newTestBoard(t, cfg)
	if !strings.HasPrefix(b.Path(), "tcp://127.0.0.1:") {
		t.Fatalf("board on TCP: Path() = %q, want tcp://127.0.0.1:PORT", b.Path())
	}
	return b
}

// A board on TCP answers as on a pseudo-terminal; a second station
// connecting takes the line over, and the first sees its link dropped.
func TestTCPBoard(t *testing.T) {
	b := newTCPBoard(t, board.Config{Serial: "SN-TCP"})
	ctx := testCtx(t)
	first := newTestClient(t, b.Path(), testBaud, flasher.Options{})
	id, err := first.Identity(ctx)
	if err != nil || id.Serial != "SN-TCP" {
		t.Fatalf("Identity over TCP = %+v, %v; want SN-TCP", id, err)
	}
	data := testData(20_000, 3)
	if err := first.FileUpload(ctx, "/lfs/tcp.bin", data, false, nil); err != nil {
		t.Fatalf("FileUpload over TCP: %v", err)
	}
	if got, err := b.ReadFile("/lfs/tcp.bin"); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the board holds %d bytes (%v), want the %d uploaded", len(got), err, len(data))
	}

	second := newTestClient(t, b.Path(), testBaud, flasher.Options{})
	if got, err := second.Echo(ctx, "second"); err != nil || got != "second" {
		t.Fatalf("Echo from a second station = %q, %v", got, err)
	}
	if _, err := first.Echo(ctx, "first"); !errors.Is(err, flasher.ErrDisconnected) {
		t.Errorf("Echo from the station whose connection was taken over = %v, want ErrDisconnected", err)
	}
}

// cutProxy forwards TCP connections to target and cuts the next one
// once it has carried limit bytes towards target: a connection dropped
// mid-write, at a byte count the test chooses.
type cutProxy struct {
	ln     net.Listener
	target string
	limit  atomic.Int64 // 0: none
	cut    chan struct{}
	wg     sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, cut: make(chan struct{}, 1)}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) url() string { return "tcp://" + p.ln.Addr().String() }

func (p *cutProxy) serve() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		limit := p.limit.Swap(0)
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			io.Copy(in, out)
			in.Close()
		}()
		go func() {
			defer p.wg.Done()
			defer out.Close()
			defer in.Close()
			if limit == 0 {
				io.Copy(out, in)
				return
			}
			io.CopyN(out, in, limit)
			p.cut <- struct{}{}
		}()
	}
}

// A TCP connection cut while an upload is under way is ErrDisconnected,
// as a pulled USB cable is; a new connection reaches the board again.
func TestTCPCutMidWrite(t *testing.T) {
	b := newTCPBoard(t, board.Config{})
	proxy := newCutProxy(t, strings.TrimPrefix(b.Path(), "tcp://"))
	ctx := testCtx(t)
	proxy.limit.Store(6000)
	c := newTestClient(t, proxy.url(), testBaud, flasher.Options{SkipParams: true})
	err := c.FileUpload(ctx, "/lfs/cut.bin", testData(40_000, 4), false, nil)
	if !errors.Is(err, flasher.ErrDisconnected) {
		t.Fatalf("FileUpload over a connection cut after 6000 bytes = %v, want ErrDisconnected", err)
	}
	<-proxy.cut
	if _, err := c.Echo(ctx, "still there?"); !errors.Is(err, flasher.ErrDisconnected) {
		t.Errorf("Echo after the cut = %v, want ErrDisconnected", err)
	}
	again := newTestClient(t, proxy.url(), testBaud, flasher.Options{})
	data := testData(10_000, 5)
	if err := again.FileUpload(ctx, "/lfs/cut.bin", data, false, nil); err != nil {
		t.Fatalf("FileUpload over a new connection: %v", err)
	}
	if got, _ := b.ReadFile("/lfs/cut.bin"); !bytes.Equal(got, data) {
		t.Errorf("after the new connection's upload the board holds %d bytes, want the %d uploaded", len(got), len(data))
	}
}

// Nothing listening on a network port is ErrNoPort, as a missing serial
// port is.
func TestNetPortNoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, scheme := range []string{"tcp", "rfc2217"} {
		_, err := flasher.Open(testCtx(t), scheme+"://"+addr, flasher.Options{})
		if !errors.Is(err, flasher.ErrNoPort) {
			t.Errorf("Open(%s://%s) with nothing listening = %v, want ErrNoPort", scheme, addr, err)
		}
	}
}

// ser2net (Debian's) between the station and a virtual board's
// pseudo-terminal, raw and over RFC 2217: the link works, a cut
// mid-upload (ser2net killed) is ErrDisconnected, and once ser2net is
// back a new connection works.
func TestSer2net(t *testing.T) {
	for _, scheme := range []string{flasher.SchemeTCP, flasher.SchemeRFC2217} {
		t.Run(scheme, func(t *testing.T) {
			b := newTestBoard(t, board.Config{Serial: "SN-S2N", Baud: 460800})
			s := ser2nettest.Start(t, b.Path(), 460800, scheme == flasher.SchemeRFC2217)
			ctx := testCtx(t)
			c := newTestClient(t, s.URL(scheme), 460800, flasher.Options{})
			id, err := c.Identity(ctx)
			if err != nil || id.Serial != "SN-S2N" {
				t.Fatalf("Identity through ser2net = %+v, %v; want SN-S2N", id, err)
			}
			data := testData(16_000, 6)
			if err := c.FileUpload(ctx, "/lfs/s2n.bin", data, false, nil); err != nil {
				t.Fatalf("FileUpload through ser2net: %v", err)
			}
			got, err := c.FileDownload(ctx, "/lfs/s2n.bin", nil)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("FileDownload through ser2net = %d bytes, %v; want the %d uploaded", len(got), err, len(data))
			}

			// The board goes deaf 3000 bytes into the next upload, so the
			// upload waits for an answer; ser2net dies meanwhile.
			b.SetFaults(board.Faults{DropAfter: 3000})
			errc := make(chan error, 1)
			go func() { errc <- c.FileUpload(ctx, "/lfs/s2n.bin", testData(30_000, 7), false, nil) }()
			for b.Received() < 3000 {
				select {
				case err := <-errc:
					t.Fatalf("FileUpload ended before the cut: %v", err)
				case <-time.After(5 * time.Millisecond):
				}
			}
			s.Stop()
			if err := <-errc; !errors.Is(err, flasher.ErrDisconnected) {
				t.Fatalf("FileUpload cut by ser2net's end = %v, want ErrDisconnected", err)
			}
			if _, err := flasher.Open(ctx, s.URL(scheme), flasher.Options{}); !errors.Is(err, flasher.ErrNoPort) {
				t.Errorf("Open while ser2net is down = %v, want ErrNoPort", err)
			}
			s.Start()
			b.SetFaults(board.Faults{})
			again := newTestClient(t, s.URL(scheme), 460800, flasher.Options{})
			if err := again.FileUpload(ctx, "/lfs/s2n.bin", data, false, nil); err != nil {
				t.Fatalf("FileUpload once ser2net is back: %v", err)
			}
		})
	}
}

// Every byte value crosses ser2net both ways unchanged: 0xFF, which
// Telnet doubles, CR and NUL, which it pairs outside binary mode.
func TestSer2netAllBytes(t *testing.T) {
	var all []byte
	for i := range 256 {
		all = append(all, byte(i))
	}
	all = append(all, 0xff, 0xff, '\r', 0, '\r', '\n', 0xff, '\r', 0xff, 0)
	for _, scheme := range []string{flasher.SchemeTCP, flasher.SchemeRFC2217} {
		t.Run(scheme, func(t *testing.T) {
			master, tty, err := rawpty.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer master.Close()
			defer tty.Close()
			s := ser2nettest.Start(t, tty.Name(), 115200, scheme == flasher.SchemeRFC2217)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			p, err := flasher.OpenNetPort(ctx, s.URL(scheme), 115200)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if _, err := p.Write(all); err != nil {
				t.Fatalf("Write: %v", err)
			}
			got := make([]byte, len(all))
			if err := readFull(ctx, master, got); err != nil || !bytes.Equal(got, all) {
				t.Errorf("station to device: got % x (%v), want % x", got, err, all)
			}
			if _, err := master.Write(all); err != nil {
				t.Fatalf("device Write: %v", err)
			}
			got = make([]byte, len(all))
			if err := readFull(ctx, p, got); err != nil || !bytes.Equal(got, all) {
				t.Errorf("device to station: got % x (%v), want % x", got, err, all)
			}
		})
	}
}

// readFull fills b from r, or fails when ctx ends.
func readFull(ctx context.Context, r io.ReadCloser, b []byte) error {
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(r, b)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		r.Close()
		<-done
		return ctx.Err()
	}
}
