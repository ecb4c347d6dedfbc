package labels

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// testLabel is a label with every field set and characters that ZPL
// escapes.
var testLabel = Label{
	Serial:         "ZT-000123",
	RegistrationID: "reg_^ZT~000123",
	Model:          "EVK 2",
	Time:           time.Date(2026, 12, 3, 13, 0, 0, 0, time.UTC),
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		c         PrinterConfig
		wantField string // "" for no error
		wantMsg   string
	}{
		{c: PrinterConfig{}},
		{c: PrinterConfig{Timeout: time.Second}},
		{c: PrinterConfig{Dir: "labels"}},
		{c: PrinterConfig{ZPL: "10.0.0.5"}},
		{c: PrinterConfig{ZPL: "zebra1.line2.local:6101"}},
		{c: PrinterConfig{ZPL: "[fd00::5]:9100"}},
		{c: PrinterConfig{ZPL: "fe80::1%eth0"}},
		{c: PrinterConfig{LP: "Zebra_ZT410-2"}},
		{PrinterConfig{Dir: "labels", ZPL: "10.0.0.5"}, "labels", "both dir and zpl: give one of dir"},
		{PrinterConfig{ZPL: "10.0.0.5", LP: "zebra1"}, "labels", "both zpl and lp"},
		{PrinterConfig{Dir: "x", LP: "zebra1"}, "labels", "both dir and lp"},
		{PrinterConfig{Dir: "  "}, "labels.dir", `"  ": want a folder`},
		{PrinterConfig{ZPL: "10.0.0.5:"}, "labels.zpl", `"10.0.0.5:": port "": want a number from 1 to 65535`},
		{PrinterConfig{ZPL: "10.0.0.5:0"}, "labels.zpl", `port "0"`},
		{PrinterConfig{ZPL: "10.0.0.5:65536"}, "labels.zpl", `port "65536"`},
		{PrinterConfig{ZPL: "10.0.0.5:+9100"}, "labels.zpl", `port "+9100"`},
		{PrinterConfig{ZPL: "zebra1:raw"}, "labels.zpl", `port "raw"`},
		{PrinterConfig{ZPL: "tcp://10.0.0.5:9100"}, "labels.zpl", "without a scheme"},
		{PrinterConfig{ZPL: ":9100"}, "labels.zpl", `":9100": no host`},
		{PrinterConfig{ZPL: "[]:9100"}, "labels.zpl", "no host"},
		{PrinterConfig{ZPL: "zebra 1"}, "labels.zpl", `host "zebra 1" is not a host name or an IP address`},
		{PrinterConfig{ZPL: " 10.0.0.5"}, "labels.zpl", "not a host name"},
		{PrinterConfig{ZPL: "-zebra"}, "labels.zpl", "not a host name"},
		{PrinterConfig{ZPL: "zebra1/9100"}, "labels.zpl", "not a host name"},
		{PrinterConfig{ZPL: "[fd00::5"}, "labels.zpl", "want the printer's HOST or HOST:PORT"},
		{PrinterConfig{ZPL: "zebra1:9100:1"}, "labels.zpl", "an IPv6 address as [fd00::5]:9100"},
		{PrinterConfig{ZPL: "fe80::1%"}, "labels.zpl", "an IPv6 address"},
		{PrinterConfig{LP: " "}, "labels.lp", "empty queue name"},
		{PrinterConfig{LP: "-o"}, "labels.lp", `"-o" starts with '-'`},
		{PrinterConfig{LP: "zebra 1"}, "labels.lp", `"zebra 1" has ' '`},
		{PrinterConfig{LP: "zebra/1"}, "labels.lp", `has '/'`},
		{PrinterConfig{LP: "zebra\n"}, "labels.lp", `has '\n'`},
		{PrinterConfig{LP: strings.Repeat("z", 128)}, "labels.lp", "queue name of 128 bytes"},
		{PrinterConfig{LP: "\xff"}, "labels.lp", "not UTF-8"},
		{PrinterConfig{ZPL: "10.0.0.5", Timeout: -time.Second}, "labels.timeout", "-1s: want a positive duration"},
	} {
		err := tt.c.Validate()
		if tt.wantField == "" {
			if err != nil {
				t.Errorf("%+v.Validate() = %v, want nil", tt.c, err)
			}
			continue
		}
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.wantField || !strings.Contains(ce.Msg, tt.wantMsg) {
			t.Errorf("%+v.Validate() = %v, want %s: ...%s...", tt.c, err, tt.wantField, tt.wantMsg)
			continue
		}
		if want := tt.wantField + ": " + ce.Msg; err.Error() != want {
			t.Errorf("%+v.Validate() = %q, want %q", tt.c, err, want)
		}
		// NewPrinter refuses what Validate refuses.
		if p, err2 := NewPrinter(tt.c); p != nil || err2 == nil || err2.Error() != err.Error() {
			t.Errorf("NewPrinter(%+v) = %v, %v, want nil, %v", tt.c, p, err2, err)
		}
	}
}

func TestNewPrinter(t *testing.T) {
	fakeLP(t, "exit 0")
	for _, tt := range []struct {
		c    PrinterConfig
		want string // Printer.String(); "" for no printer
	}{
		{PrinterConfig{}, ""},
		{PrinterConfig{Timeout: time.Second}, ""},
		{PrinterConfig{Dir: "/srv/labels"}, "folder /srv/labels"},
		{PrinterConfig{ZPL: "10.0.0.5"}, "ZPL printer 10.0.0.5:9100"},
		{PrinterConfig{ZPL: "zebra1:6101"}, "ZPL printer zebra1:6101"},
		{PrinterConfig{ZPL: "fd00::5"}, "ZPL printer [fd00::5]:9100"},
		{PrinterConfig{ZPL: "[fd00::5]"}, "ZPL printer [fd00::5]:9100"},
		{PrinterConfig{ZPL: "[fd00::5]:6101"}, "ZPL printer [fd00::5]:6101"},
		{PrinterConfig{ZPL: "fe80::1%eth0"}, "ZPL printer [fe80::1%eth0]:9100"},
		{PrinterConfig{LP: "zebra1"}, "CUPS queue zebra1"},
	} {
		p, err := NewPrinter(tt.c)
		if err != nil {
			t.Errorf("NewPrinter(%+v) error %v", tt.c, err)
			continue
		}
		if tt.want == "" {
			if p != nil {
				t.Errorf("NewPrinter(%+v) = %v, want nil", tt.c, p)
			}
			continue
		}
		if p == nil || p.String() != tt.want {
			t.Errorf("NewPrinter(%+v) = %v, want %s", tt.c, p, tt.want)
		}
	}
}

// TestPrinterConfigYAML holds the keys and the duration format of
// station.yaml's labels section.
func TestPrinterConfigYAML(t *testing.T) {
	decode := func(text string) (PrinterConfig, error) {
		dec := yaml.NewDecoder(strings.NewReader(text))
		dec.KnownFields(true)
		var c PrinterConfig
		err := dec.Decode(&c)
		return c, err
	}
	for text, want := range map[string]PrinterConfig{
		"dir: ./labels\n":                 {Dir: "./labels"},
		"zpl: 10.0.0.5:9100\ntimeout: 3s": {ZPL: "10.0.0.5:9100", Timeout: 3 * time.Second},
		"lp: zebra1\ntimeout: 1m30s\n":    {LP: "zebra1", Timeout: 90 * time.Second},
	} {
		got, err := decode(text)
		if err != nil || got != want {
			t.Errorf("decode(%q) = %+v, %v, want %+v", text, got, err, want)
		}
	}
	for _, text := range []string{"timeout: 3\n", "timeout: soon\n", "printer: zebra1\n"} {
		if c, err := decode(text); err == nil {
			t.Errorf("decode(%q) = %+v, want an error", text, c)
		}
	}
}

// newTestPrinter returns the Printer of c, failing the test if it has
// none.
func newTestPrinter(t *testing.T, c PrinterConfig) Printer {
	t.Helper()
	p, err := NewPrinter(c)
	if err != nil || p == nil {
		t.Fatalf("NewPrinter(%+v) = %v, %v", c, p, err)
	}
	return p
}

// newZPLServer listens on a free port of 127.0.0.1 and serves each
// connection with serve, in turn, until the test ends.
func newZPLServer(t *testing.T, serve func(conn net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			serve(conn)
		}
	}()
	return ln.Addr().String()
}

// TestZPLPrinter sends labels to a raw TCP listener: it gets them byte for
// byte as the ZPL file that Write makes, whether it answers or not, and
// concurrent prints each arrive whole.
func TestZPLPrinter(t *testing.T) {
	for _, answer := range []string{"", "\x02PRINTER STATUS\x03\r\n"} {
		got := make(chan []byte, 10)
		addr := newZPLServer(t, func(conn net.Conn) {
			defer conn.Close()
			if answer != "" {
				io.WriteString(conn, answer)
			}
			b, err := io.ReadAll(conn)
			if err != nil {
				t.Errorf("printer read: %v", err)
			}
			got <- b
		})
		p := newTestPrinter(t, PrinterConfig{ZPL: addr})
		if err := p.Print(context.Background(), testLabel); err != nil {
			t.Fatalf("%v.Print() error %v", p, err)
		}
		_, zplPath, err := Write(t.TempDir(), testLabel)
		if err != nil {
			t.Fatal(err)
		}
		file, err := os.ReadFile(zplPath)
		if err != nil {
			t.Fatal(err)
		}
		if b := <-got; !bytes.Equal(b, file) {
			t.Errorf("printer answering %q got %q, want the ZPL file's %q", answer, b, file)
		}

		// Concurrent prints to one printer.
		var want []string
		var wg sync.WaitGroup
		for i := range 4 {
			l := Label{Serial: "ZT-" + strconv.Itoa(i), RegistrationID: "reg-" + strconv.Itoa(i)}
			want = append(want, must(l.ZPL()))
			wg.Go(func() {
				if err := p.Print(context.Background(), l); err != nil {
					t.Errorf("%v.Print(%s) error %v", p, l.Serial, err)
				}
			})
		}
		wg.Wait()
		var all []string
		for range want {
			all = append(all, string(<-got))
		}
		slices.Sort(all)
		slices.Sort(want)
		if diff := cmp.Diff(want, all); diff != "" {
			t.Errorf("concurrent prints (-want +got):\n%s", diff)
		}
	}
}

// checkPrintError fails unless err is a printer's failure for testLabel
// that names the printer and says what.
func checkPrintError(t *testing.T, p Printer, err error, what ...string) {
	t.Helper()
	if !errors.Is(err, ErrPrinter) {
		t.Fatalf("%v.Print() error %v, want %v", p, err, ErrPrinter)
	}
	for _, s := range append([]string{`label for board "ZT-000123": ` + p.String() + ": "}, what...) {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%v.Print() error %q, want it to say %q", p, err, s)
		}
	}
}

func TestZPLPrinterRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := newTestPrinter(t, PrinterConfig{ZPL: addr, Timeout: time.Minute})
	err = p.Print(context.Background(), testLabel)
	checkPrintError(t, p, err, "connection refused")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("%v.Print() error %v, want %v", p, err, syscall.ECONNREFUSED)
	}
}

// TestZPLPrinterTimeout: a printer that takes the connection but never
// reads nor closes it fails the print once the configured timeout ends.
func TestZPLPrinterTimeout(t *testing.T) {
	var held []net.Conn // closed once the server has stopped
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	addr := newZPLServer(t, func(conn net.Conn) { held = append(held, conn) })
	p := newTestPrinter(t, PrinterConfig{ZPL: addr, Timeout: 100 * time.Millisecond})
	start := time.Now()
	err := p.Print(context.Background(), testLabel)
	if elapsed := time.Since(start); elapsed >= DefaultPrintTimeout {
		t.Errorf("%v.Print() took %v, want the configured 100ms", p, elapsed)
	}
	checkPrintError(t, p, err, "bytes, waiting for the printer to close the connection: no answer within 100ms")
}

// TestZPLPrinterReset: a printer that drops the connection without
// reading it fails the print.
func TestZPLPrinterReset(t *testing.T) {
	addr := newZPLServer(t, func(conn net.Conn) {
		conn.(*net.TCPConn).SetLinger(0) // close with a reset
		conn.Close()
	})
	p := newTestPrinter(t, PrinterConfig{ZPL: addr, Timeout: time.Minute})
	err := p.Print(context.Background(), testLabel)
	checkPrintError(t, p, err)
	// The reset may come while the label is written (ECONNRESET, EPIPE)
	// or after, when the printer's side is shut (ENOTCONN).
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("%v.Print() error %v, want a reset connection", p, err)
	}
}

// TestZPLPrinterCanceled: the caller's cancellation ends a print at once,
// and is not the printer's failure.
func TestZPLPrinterCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var held []net.Conn // closed once the server has stopped
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	addr := newZPLServer(t, func(conn net.Conn) {
		held = append(held, conn)
		cancel()
	})
	p := newTestPrinter(t, PrinterConfig{ZPL: addr, Timeout: time.Hour})
	err := p.Print(ctx, testLabel)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrPrinter) {
		t.Errorf("%v.Print(canceled) error %v, want %v and not %v", p, err, context.Canceled, ErrPrinter)
	}
}

func TestPrintInvalidLabel(t *testing.T) {
	fakeLP(t, "exit 0")
	addr := newZPLServer(t, func(conn net.Conn) {
		t.Errorf("printer connected for an invalid label")
		conn.Close()
	})
	for _, c := range []PrinterConfig{{Dir: t.TempDir()}, {ZPL: addr}, {LP: "zebra1"}} {
		p := newTestPrinter(t, c)
		err := p.Print(context.Background(), Label{Serial: "ZT-1"})
		if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrPrinter) {
			t.Errorf("%v.Print(no registration ID) error %v, want %v and not %v", p, err, ErrInvalid, ErrPrinter)
		}
	}
}

func TestDirPrinter(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "labels")
	p := newTestPrinter(t, PrinterConfig{Dir: dir})
	if err := p.Print(context.Background(), testLabel); err != nil {
		t.Fatalf("%v.Print() error %v", p, err)
	}
	got, err := os.ReadFile(filepath.Join(dir, testLabel.Serial+".zpl"))
	if err != nil || string(got) != must(testLabel.ZPL()) {
		t.Errorf("%v.Print(): %s.zpl = %q, %v, want the label's ZPL", p, testLabel.Serial, got, err)
	}
	if _, err := os.Stat(filepath.Join(dir, testLabel.Serial+".png")); err != nil {
		t.Errorf("%v.Print(): %v", p, err)
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p = newTestPrinter(t, PrinterConfig{Dir: filepath.Join(file, "labels")})
	err = p.Print(context.Background(), testLabel)
	if !errors.Is(err, ErrPrinter) || !errors.Is(err, syscall.ENOTDIR) || !strings.HasPrefix(err.Error(), `label for board "ZT-000123": create `) {
		t.Errorf("%v.Print() error %v, want %v naming the board and the folder", p, err, ErrPrinter)
	}
}

// fakeLP puts an lp command running the shell script body first on PATH,
// and returns the files where it records its arguments (one a line) and
// its standard input.
func fakeLP(t *testing.T, body string) (argsFile, stdinFile string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("the fake lp is a shell script")
	}
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "args")
	stdinFile = filepath.Join(dir, "stdin")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > '" + argsFile + "'\ncat > '" + stdinFile + "'\n" + body + "\n"
	if err := os.WriteFile(filepath.Join(dir, "lp"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return argsFile, stdinFile
}

func TestLPPrinter(t *testing.T) {
	argsFile, stdinFile := fakeLP(t, `echo "request id is zebra1-7 (0 file(s))"`)
	p := newTestPrinter(t, PrinterConfig{LP: "zebra1"})
	if err := p.Print(context.Background(), testLabel); err != nil {
		t.Fatalf("%v.Print() error %v", p, err)
	}
	args, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"-d", "zebra1", "-o", "raw"}, strings.Split(strings.TrimSuffix(string(args), "\n"), "\n")); diff != "" {
		t.Errorf("lp arguments (-want +got):\n%s", diff)
	}
	stdin, err := os.ReadFile(stdinFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := must(testLabel.ZPL()); string(stdin) != want {
		t.Errorf("lp standard input %q, want the label's ZPL %q", stdin, want)
	}
}

func TestLPPrinterFails(t *testing.T) {
	fakeLP(t, `echo "lp: The printer or class does not exist." >&2; exit 1`)
	p := newTestPrinter(t, PrinterConfig{LP: "zebra1"})
	err := p.Print(context.Background(), testLabel)
	checkPrintError(t, p, err, "lp -d zebra1 -o raw: exit status 1: lp: The printer or class does not exist.")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("%v.Print() error %v, want exit status 1", p, err)
	}
}

// TestLPPrinterTimeout: an lp that hangs is killed at the timeout, even
// if a child of it keeps its output open.
func TestLPPrinterTimeout(t *testing.T) {
	fakeLP(t, "sleep 12")
	p := newTestPrinter(t, PrinterConfig{LP: "zebra1", Timeout: 200 * time.Millisecond})
	start := time.Now()
	err := p.Print(context.Background(), testLabel)
	if elapsed := time.Since(start); elapsed >= DefaultPrintTimeout {
		t.Errorf("%v.Print() took %v, want about the configured 200ms", p, elapsed)
	}
	checkPrintError(t, p, err, "lp -d zebra1 -o raw: no answer within 200ms")
}

func TestLPMissing(t *testing.T) {
	fakeLP(t, "exit 0")
	p := newTestPrinter(t, PrinterConfig{LP: "zebra1"})
	t.Setenv("PATH", t.TempDir())

	_, err := NewPrinter(PrinterConfig{LP: "zebra1"})
	want := "labels.lp: CUPS queue zebra1: no lp command: install cups-client (apt install cups-client)"
	if !errors.Is(err, exec.ErrNotFound) || err.Error() != want {
		t.Errorf("NewPrinter(lp, no lp on PATH) error %q, want %q", err, want)
	}
	err = p.Print(context.Background(), testLabel)
	checkPrintError(t, p, err, "no lp command: install cups-client")
	if !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("%v.Print(no lp on PATH) error %v, want %v", p, err, exec.ErrNotFound)
	}
}

// FuzzPrinterConfig checks that a printer address or queue name that
// Validate accepts is one a dialer or lp takes as it is.
func FuzzPrinterConfig(f *testing.F) {
	for _, s := range []string{
		"10.0.0.5", "10.0.0.5:9100", "zebra1:6101", "[fd00::5]:9100", "fd00::5", "[fd00::5]",
		"fe80::1%eth0", "[fe80::1%eth0]:1", "::ffff:10.0.0.5", "10.0.0.5:", ":9100", "[]", "[::1",
		"a:b:c", "tcp://x", "x:+1", "x:0x10", "x:065535", "zebra 1", "-o", "zebra1", "\xff", "%",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if addr, err := parseZPLAddress(s); err == nil {
			host, port, err := net.SplitHostPort(addr)
			if err != nil || host == "" {
				t.Fatalf("parseZPLAddress(%q) = %q, which SplitHostPort reads as %q, %q, %v", s, addr, host, port, err)
			}
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				t.Fatalf("parseZPLAddress(%q) = %q, port out of range", s, addr)
			}
			if again, err := parseZPLAddress(addr); again != addr || err != nil {
				t.Fatalf("parseZPLAddress(%q) = %q, %v, want itself", addr, again, err)
			}
			if strings.ContainsAny(addr, " \t\r\n/") {
				t.Fatalf("parseZPLAddress(%q) = %q, with a space or slash", s, addr)
			}
		}
		if checkQueue(s) == nil && (strings.ContainsAny(s, " \t\r\n/") || strings.HasPrefix(s, "-") || s == "") {
			t.Fatalf("checkQueue(%q) accepted it", s)
		}
	})
}
