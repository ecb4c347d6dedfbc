package flasher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Schemes of the ports reached over the network, as a port rule names
// them: tcp://HOST:PORT and rfc2217://HOST:PORT.
const (
	// SchemeTCP is raw TCP: the serial line's bytes as they are, as
	// ser2net's raw mode and serial device servers' "TCP server" mode
	// carry them. The line's settings are the server's.
	SchemeTCP = "tcp"
	// SchemeRFC2217 is Telnet with the com port control option (RFC
	// 2217): the station sets the line's rate, 8N1 and no flow control.
	SchemeRFC2217 = "rfc2217"
)

// DialTimeout bounds the TCP connection to a network port when the
// caller's context allows longer.
const DialTimeout = 5 * time.Second

// netKeepAlive notices a port server that vanished without closing the
// connection (its power or network cable pulled) within about 11 s.
var netKeepAlive = net.KeepAliveConfig{Enable: true, Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3}

// IsNetPort reports whether name names a port on the network
// (tcp://... or rfc2217://...) rather than a serial port.
func IsNetPort(name string) bool {
	scheme, _, ok := strings.Cut(name, "://")
	if !ok {
		return false
	}
	scheme = strings.ToLower(scheme)
	return scheme == SchemeTCP || scheme == SchemeRFC2217
}

// ParseNetPort checks a network port's URL, SCHEME://HOST:PORT with
// SCHEME tcp or rfc2217, and returns it in canonical form (the scheme in
// lower case, no trailing slash) with its scheme and address.
func ParseNetPort(name string) (canonical, scheme, addr string, err error) {
	u, err := url.Parse(name)
	if err != nil {
		return "", "", "", fmt.Errorf("port %q: %v", name, err)
	}
	scheme = strings.ToLower(u.Scheme)
	if scheme != SchemeTCP && scheme != SchemeRFC2217 {
		return "", "", "", fmt.Errorf("port %q: scheme %q: want tcp:// (raw TCP) or rfc2217:// (RFC 2217)", name, u.Scheme)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || u.Path != "" && u.Path != "/" {
		return "", "", "", fmt.Errorf("port %q: want %s://HOST:PORT and nothing more", name, scheme)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || port == "" {
		return "", "", "", fmt.Errorf("port %q: want %s://HOST:PORT (host and port number)", name, scheme)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", "", fmt.Errorf("port %q: port number %q: want 1 to 65535", name, port)
	}
	addr = net.JoinHostPort(host, port)
	return scheme + "://" + addr, scheme, addr, nil
}

// NetPort is a board's serial line reached over TCP: raw, or through
// RFC 2217. It satisfies Link as Port does, so the SMP client works over
// either. The server hanging up, or the connection failing, ends Read with
// an error (wrapping io.EOF when it hung up cleanly), which the client
// reports as ErrDisconnected, as it does a pulled USB cable. Read and Write may be
// called from one goroutine each; Close, from any, ends both.
type NetPort struct {
	url    string
	conn   net.Conn
	tel    *telnet // nil: raw TCP
	closed atomic.Bool
}

var _ Link = (*NetPort)(nil)

// OpenNetPort connects to the network port at rawURL (see ParseNetPort).
// Over RFC 2217 it sets the line to baud, 8N1, no flow control, and
// fails unless the server does; over raw TCP the line is the server's
// to set and baud is not used. A server that cannot be reached (nothing
// listens there, no route) is an error wrapping ErrNoPort.
func OpenNetPort(ctx context.Context, rawURL string, baud int) (*NetPort, error) {
	canonical, scheme, addr, err := ParseNetPort(rawURL)
	if err != nil {
		return nil, err
	}
	if baud <= 0 {
		baud = 115200
	}
	d := net.Dialer{Timeout: DialTimeout, KeepAliveConfig: netKeepAlive}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to %s: %w", canonical, ctx.Err())
		}
		return nil, fmt.Errorf("connect to %s: %w: %v", canonical, ErrNoPort, err)
	}
	p := &NetPort{url: canonical, conn: conn}
	if scheme == SchemeRFC2217 {
		p.tel = newTelnet(conn, canonical)
		if err := p.tel.negotiate(ctx, baud); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return p, nil
}

// Path returns the port's URL, in canonical form.
func (p *NetPort) Path() string { return p.url }

// Read reads the serial line's data, blocking until some arrives or the
// connection ends.
func (p *NetPort) Read(b []byte) (int, error) {
	var n int
	var err error
	if p.tel != nil {
		n, err = p.tel.Read(b)
	} else {
		n, err = p.conn.Read(b)
	}
	return n, p.netErr(err)
}

// Write writes to the serial line.
func (p *NetPort) Write(b []byte) (int, error) {
	var n int
	var err error
	if p.tel != nil {
		n, err = p.tel.Write(b)
	} else {
		n, err = p.conn.Write(b)
	}
	return n, p.netErr(err)
}

// Close closes the connection.
func (p *NetPort) Close() error {
	p.closed.Store(true)
	if p.tel != nil {
		return p.tel.Close()
	}
	return p.conn.Close()
}

// netErr turns the connection's errors into ours: ErrClosed after Close;
// an error wrapping io.EOF when the server hung up; others with the
// port's URL.
func (p *NetPort) netErr(err error) error {
	switch {
	case err == nil:
		return nil
	case p.closed.Load() || errors.Is(err, net.ErrClosed):
		return ErrClosed
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%s: the port server closed the connection: %w", p.url, err)
	}
	return fmt.Errorf("%s: %w", p.url, err)
}
