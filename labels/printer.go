package labels

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Defaults of [PrinterConfig].
const (
	// DefaultPrintTimeout bounds one [Printer.Print] when
	// PrinterConfig.Timeout is zero.
	DefaultPrintTimeout = 10 * time.Second
	// DefaultZPLPort is the raw TCP port of a ZPL printer (Zebra's, and
	// every JetDirect-style print server's), used when PrinterConfig.ZPL
	// gives only a host.
	DefaultZPLPort = "9100"
)

// ErrPrinter is returned, wrapped, by [Printer.Print] for every failure to
// reach or feed the printer: a connection refused or reset, a printer that
// does not answer within the timeout, a short write, an lp command that is
// missing or exits with an error (its message included), a folder that
// cannot be written. The label itself is fine: print it again once the
// printer is back. A label that cannot be made wraps [ErrInvalid] instead,
// and the end of the caller's context wraps [context.Canceled].
var ErrPrinter = errors.New("label printer failed")

// PrinterConfig says where the labels of passed boards go: station.yaml's
// `labels:` section. At most one of Dir, ZPL and LP is set; none means no
// labels. Durations are written as Go durations ("10s", "1m30s"), as
// everywhere in station.yaml.
type PrinterConfig struct {
	// Dir is a folder: each label is written there as PNG and ZPL files
	// (see [Write]).
	Dir string `yaml:"dir"`
	// ZPL is the HOST:PORT of a ZPL printer fed over raw TCP; port 9100
	// when only HOST is given. An IPv6 address is written [::1]:9100, or
	// bare without a port.
	ZPL string `yaml:"zpl"`
	// LP is the name of a CUPS queue: the ZPL is sent with
	// `lp -d QUEUE -o raw` (the cups-client package).
	LP string `yaml:"lp"`
	// Timeout bounds one print; default [DefaultPrintTimeout].
	Timeout time.Duration `yaml:"timeout"`
}

// ConfigError is a problem with one key of a [PrinterConfig]. Field is its
// YAML path in station.yaml, as "labels.zpl".
type ConfigError struct {
	Field string
	Msg   string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Msg }

// Validate checks c: at most one destination, each well formed, and no
// negative timeout. Its errors are *ConfigError naming the key.
func (c PrinterConfig) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: "labels." + field, Msg: fmt.Sprintf(format, args...)}
	}
	var set []string
	for _, k := range []struct{ name, value string }{{"dir", c.Dir}, {"zpl", c.ZPL}, {"lp", c.LP}} {
		if k.value != "" {
			set = append(set, k.name)
		}
	}
	if len(set) > 1 {
		return &ConfigError{Field: "labels", Msg: fmt.Sprintf("both %s and %s: give one of dir (a folder), zpl (a printer's HOST:PORT) or lp (a CUPS queue)", set[0], set[1])}
	}
	switch {
	case c.Dir != "" && blank(c.Dir):
		return bad("dir", "%q: want a folder, as ./labels", c.Dir)
	case c.ZPL != "":
		if _, err := parseZPLAddress(c.ZPL); err != nil {
			return bad("zpl", "%v", err)
		}
	case c.LP != "":
		if err := checkQueue(c.LP); err != nil {
			return bad("lp", "%v", err)
		}
	}
	if c.Timeout < 0 {
		return bad("timeout", "%v: want a positive duration, as 10s", c.Timeout)
	}
	return nil
}

// parseZPLAddress returns the TCP address of a ZPL printer given as HOST,
// HOST:PORT, [IPV6]:PORT, [IPV6] or a bare IPv6 address, with port
// DefaultZPLPort if none is given.
func parseZPLAddress(s string) (string, error) {
	const want = "want the printer's HOST or HOST:PORT, as 10.0.0.5 or zebra1:9100"
	if strings.Contains(s, "://") {
		return "", fmt.Errorf("%q: %s, without a scheme", s, want)
	}
	host, port := s, DefaultZPLPort
	switch {
	case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
		host = s[1 : len(s)-1]
	case strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1:
		var err error
		if host, port, err = net.SplitHostPort(s); err != nil {
			return "", fmt.Errorf("%q: %s", s, want)
		}
	}
	if host == "" {
		return "", fmt.Errorf("%q: no host: %s", s, want)
	}
	if strings.Contains(host, ":") {
		// Only an IPv6 address, with its zone if any, holds colons.
		ip, zone, _ := strings.Cut(host, "%")
		if net.ParseIP(ip) == nil || strings.Contains(host, "%") && !validZone(zone) {
			return "", fmt.Errorf("%q: %s (an IPv6 address as [fd00::5]:9100)", s, want)
		}
	} else if !validHostName(host) {
		return "", fmt.Errorf("%q: host %q is not a host name or an IP address: %s", s, host, want)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
		return "", fmt.Errorf("%q: port %q: want a number from 1 to 65535, usually %s", s, port, DefaultZPLPort)
	}
	return net.JoinHostPort(host, port), nil
}

// validHostName reports whether s can be a DNS name or an IPv4 address:
// letters, digits, '-', '_' and '.', not starting with '-' or '.'.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 || s[0] == '-' || s[0] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !alnum(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// validZone reports whether s can be the zone of an IPv6 address: an
// interface name or number.
func validZone(s string) bool {
	return s != "" && len(s) <= 15 && validHostName(s)
}

// checkQueue checks the name of a CUPS queue: printable characters but
// space, '/', '#', '\\' and quotes, at most 127 bytes (CUPS's rules for
// printer names), and not starting with '-' (lp would read it as an
// option).
func checkQueue(q string) error {
	const want = "want a CUPS queue name as `lpstat -p` lists it, as zebra1"
	switch {
	case blank(q):
		return fmt.Errorf("%q: empty queue name: %s", q, want)
	case len(q) > 127:
		return fmt.Errorf("queue name of %d bytes: %s", len(q), want)
	case q[0] == '-':
		return fmt.Errorf("%q starts with '-': %s", q, want)
	case !utf8.ValidString(q):
		return fmt.Errorf("%q is not UTF-8: %s", q, want)
	}
	for _, r := range q {
		if r <= ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) || strings.ContainsRune(`/#\'"`, r) {
			return fmt.Errorf("%q has %q: %s", q, r, want)
		}
	}
	return nil
}

// Printer puts labels where the station's configuration says: a folder, a
// ZPL printer or a CUPS queue. Every Printer made by [NewPrinter] is safe
// for concurrent use.
type Printer interface {
	// Print prints l and returns once the printer (or the folder) has
	// it, or when the configured timeout or ctx ends. Errors name the
	// board and the printer and wrap [ErrPrinter], [ErrInvalid] or
	// [context.Canceled] (see [ErrPrinter]).
	Print(ctx context.Context, l Label) error
	// String says where labels go, for logs and the operator's
	// messages: "folder /x", "ZPL printer 10.0.0.5:9100", "CUPS queue
	// zebra1".
	String() string
}

// NewPrinter returns the Printer that c configures, or nil and no error if
// c sets no destination. Besides c's [ConfigError]s, it fails with an
// error wrapping [ErrPrinter] and [exec.ErrNotFound] if c names a CUPS
// queue and no lp command is on PATH. It connects to nothing: a printer
// that is off shows in Print.
func NewPrinter(c PrinterConfig) (Printer, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultPrintTimeout
	}
	switch {
	case c.Dir != "":
		return &dirPrinter{dir: c.Dir}, nil
	case c.ZPL != "":
		addr, _ := parseZPLAddress(c.ZPL) // checked by Validate
		return &tcpPrinter{addr: addr, timeout: timeout, turn: make(chan struct{}, 1)}, nil
	case c.LP != "":
		p := &lpPrinter{queue: c.LP, timeout: timeout}
		if _, err := lookLP(); err != nil {
			return nil, fmt.Errorf("labels.lp: %s: %w", p, err)
		}
		return p, nil
	}
	return nil, nil
}

// printError is a failure to reach or feed a printer: it wraps ErrPrinter
// and its cause, and its message is its own.
type printError struct {
	msg   string
	cause error
}

func (e *printError) Error() string   { return e.msg }
func (e *printError) Unwrap() []error { return []error{ErrPrinter, e.cause} }

// budget returns the time one print has: timeout, or less if the caller's
// context ends sooner.
func budget(parent context.Context, timeout time.Duration) time.Duration {
	if dl, ok := parent.Deadline(); ok {
		return min(timeout, time.Until(dl).Round(time.Millisecond))
	}
	return timeout
}

// failed returns the error of printing l on p: a caller's cancellation
// (parent) wraps context.Canceled, not ErrPrinter; a timeout (after
// timeout) says so; anything else is the printer's failure.
func failed(parent context.Context, p Printer, l Label, timeout time.Duration, what string, cause error) error {
	prefix := fmt.Sprintf("label for board %q: %s: ", l.Serial, p)
	if err := parent.Err(); errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s%s: %w", prefix, what, err)
	}
	if errors.Is(cause, context.DeadlineExceeded) || isTimeout(cause) {
		return &printError{msg: fmt.Sprintf("%s%s: no answer within %v", prefix, what, timeout), cause: cause}
	}
	// A net.OpError repeats the address; the prefix has it already.
	text := cause.Error()
	var oe *net.OpError
	if errors.As(cause, &oe) && oe.Err != nil {
		text = oe.Err.Error()
	}
	text = strings.TrimPrefix(text, what+": ") // "connect: connect: ..."
	return &printError{msg: prefix + what + ": " + text, cause: cause}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dirPrinter writes labels into a folder.
type dirPrinter struct{ dir string }

var _ Printer = (*dirPrinter)(nil)

func (p *dirPrinter) String() string { return "folder " + p.dir }

// Print writes l as [Write] does.
func (p *dirPrinter) Print(ctx context.Context, l Label) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("label for board %q: %s: %w", l.Serial, p, err)
	}
	_, _, err := Write(p.dir, l) // its errors name the board and the file
	if err != nil && !errors.Is(err, ErrInvalid) {
		return &printError{msg: err.Error(), cause: err}
	}
	return err
}

// tcpPrinter feeds a ZPL printer over raw TCP, as the socket backend of
// CUPS does: connect, send the whole format, close the sending side, and
// wait for the printer to close the connection, which it does once it has
// read everything, discarding whatever it sends back meanwhile.
type tcpPrinter struct {
	addr    string
	timeout time.Duration
	// turn holds a token while a print is under way: a printer serves one
	// connection at a time, so prints wait for their turn (within their
	// timeout) rather than pile up on its port.
	turn chan struct{}
}

var _ Printer = (*tcpPrinter)(nil)

func (p *tcpPrinter) String() string { return "ZPL printer " + p.addr }

// drainLimit bounds what is read back from a printer before it closes.
const drainLimit = 1 << 20

// Print sends l.ZPL() and waits for the printer to close the connection,
// all within the timeout, which counts from the call (a print waiting for
// an earlier one to the same printer included).
func (p *tcpPrinter) Print(parent context.Context, l Label) error {
	zpl, err := l.ZPL()
	if err != nil {
		return err
	}
	timeout := budget(parent, p.timeout)
	ctx, cancel := context.WithTimeout(parent, p.timeout)
	defer cancel()
	select {
	case p.turn <- struct{}{}:
		defer func() { <-p.turn }()
	case <-ctx.Done():
		return failed(parent, p, l, timeout, "wait for the previous label", ctx.Err())
	}

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return failed(parent, p, l, timeout, "connect", err)
	}
	defer conn.Close()
	// The deadline covers the timeout; the caller's cancellation
	// interrupts blocked reads and writes the same way.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	n, err := io.WriteString(conn, zpl)
	if err != nil {
		return failed(parent, p, l, timeout, fmt.Sprintf("sent %d of %d bytes", n, len(zpl)), err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		if err := tc.CloseWrite(); err != nil {
			return failed(parent, p, l, timeout, fmt.Sprintf("sent %d bytes, then close", n), err)
		}
	}
	// A printer that read everything closes its side; one that resets
	// the connection may have lost part of the label.
	if _, err := io.Copy(io.Discard, io.LimitReader(conn, drainLimit)); err != nil {
		return failed(parent, p, l, timeout, fmt.Sprintf("sent %d bytes, waiting for the printer to close the connection", n), err)
	}
	return nil
}

// lpPrinter sends labels to a CUPS queue with lp.
type lpPrinter struct {
	queue   string
	timeout time.Duration
}

var _ Printer = (*lpPrinter)(nil)

func (p *lpPrinter) String() string { return "CUPS queue " + p.queue }

// lookLP finds the lp command on PATH.
func lookLP() (string, error) {
	path, err := exec.LookPath("lp")
	if err != nil {
		return "", &printError{msg: "no lp command: install cups-client (apt install cups-client)", cause: err}
	}
	return path, nil
}

// stderrLimit bounds the part of lp's error output kept for the error.
const stderrLimit = 4096

// Print runs `lp -d QUEUE -o raw` with l.ZPL() on its standard input,
// killed if it outlasts the timeout.
func (p *lpPrinter) Print(parent context.Context, l Label) error {
	zpl, err := l.ZPL()
	if err != nil {
		return err
	}
	path, err := lookLP()
	if err != nil {
		return fmt.Errorf("label for board %q: %s: %w", l.Serial, p, err)
	}
	timeout := budget(parent, p.timeout)
	ctx, cancel := context.WithTimeout(parent, p.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "-d", p.queue, "-o", "raw")
	cmd.Stdin = strings.NewReader(zpl)
	var stderr limitedBuffer
	stderr.limit = stderrLimit
	cmd.Stderr = &stderr
	// A child of lp that keeps its output open must not hold Print.
	cmd.WaitDelay = time.Second
	what := "lp -d " + p.queue + " -o raw"
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return failed(parent, p, l, timeout, what, ctx.Err())
		}
		if msg := strings.Join(strings.Fields(stderr.String()), " "); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return failed(parent, p, l, timeout, what, err)
	}
	return nil
}

// limitedBuffer keeps the first limit bytes written to it.
type limitedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
