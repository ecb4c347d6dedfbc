package emulator

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"time"
)

// reclaimAge is how long a connection that has sent a request must have
// waited for its client (for the rest of a body, or for the next
// request) before it can be closed to make room for a new one.
const reclaimAge = 250 * time.Millisecond

// newConnAge is the same for a connection that has not yet sent a
// request's header: long enough for a client that means it to finish its
// TLS handshake and send its request on a busy machine. Such connections
// are closed for room only when no other can be.
const newConnAge = time.Second

// idleTimeout is how long Start's server keeps a connection open between
// requests (Go's HTTP client keeps them 90 s).
const idleTimeout = 2 * time.Minute

// reservedFiles are the open files the default connection cap leaves to
// the rest of the process: the store's connections (each holds the
// database and its WAL) and some more.
const reservedFiles = 2*maxDBConns + 32

// minConns is the least the default connection cap comes to, however low
// the open-file limit.
const minConns = 8

// maxConns is the cap on Start's connections: n when given, else
// DefaultMaxConns cut to half of what the process's open-file limit
// leaves once reservedFiles are set aside (half, as the clients may live
// in the same process: the demo and the tests).
func maxConns(n int) int {
	if n > 0 {
		return n
	}
	n = DefaultMaxConns
	if lim := openFileLimit(); lim > 0 {
		n = min(n, max(minConns, (lim-reservedFiles)/2))
	}
	return n
}

// limitListener holds at most max connections open at once, so that
// clients cannot run the process out of file descriptors. When one more
// arrives, it is accepted (one at a time: the server accepts the next
// only once this one is in) and waits for room, which is made by closing
// the connection that has waited longest for its client: first among
// those that have sent a request and have waited reclaimAge since (for
// the rest of a body, or idle between requests), else among those that
// have not yet sent a request's header (in their TLS handshake or
// sending the header) and have waited newConnAge. A connection whose
// request is being worked on or answered is never closed for room; it
// ends by the server's timeouts. Slow clients, however many, thus
// neither hold the server nor keep others out for long; the read
// timeouts end them in any case.
type limitListener struct {
	net.Listener
	max       int
	reclaimed func() // counts a connection closed to make room

	mu    sync.Mutex
	conns map[*limitedConn]struct{}

	wake      chan struct{} // a connection closed or started waiting for its client
	closed    chan struct{}
	closeOnce sync.Once
}

func newLimitListener(ln net.Listener, max int, reclaimed func()) *limitListener {
	return &limitListener{Listener: ln, max: max, reclaimed: reclaimed,
		conns: map[*limitedConn]struct{}{}, wake: make(chan struct{}, 1), closed: make(chan struct{})}
}

// Accept accepts the next connection and waits for room for it, closing
// for it the connection that has waited longest for its client when
// there is one old enough.
func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	for {
		now := time.Now()
		l.mu.Lock()
		if len(l.conns) < l.max {
			lc := &limitedConn{Conn: c, l: l, since: now}
			l.conns[lc] = struct{}{}
			l.mu.Unlock()
			return lc, nil
		}
		victim, wait := l.victimLocked(now)
		l.mu.Unlock()
		if victim != nil {
			victim.Close()
			l.reclaimed()
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-l.wake:
		case <-t.C:
		case <-l.closed:
			t.Stop()
			c.Close()
			return nil, net.ErrClosed
		}
		t.Stop()
	}
}

// victimLocked is the connection to close for room, if there is one
// (see limitListener); else how long until there could be. Guarded by
// l.mu.
func (l *limitListener) victimLocked(now time.Time) (*limitedConn, time.Duration) {
	var victim *limitedConn
	wait := newConnAge
	for c := range l.conns {
		if !c.waitingLocked() {
			continue
		}
		least := reclaimAge
		if !c.begun {
			least = newConnAge
		}
		if age := now.Sub(c.since); age < least {
			wait = min(wait, least-age)
			continue
		}
		if victim == nil || c.begun && !victim.begun || c.begun == victim.begun && c.since.Before(victim.since) {
			victim = c
		}
	}
	if victim != nil {
		return victim, 0
	}
	return nil, wait
}

// Close stops accepting; the connections accepted stay open.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *limitListener) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// limitedConn is a connection limitListener holds. The emulator's
// handler tells it when a request begins and ends and while the request
// waits for its body (begin, end, reading); nil does nothing.
type limitedConn struct {
	net.Conn
	l         *limitListener
	closeOnce sync.Once

	// Guarded by l.mu.
	begun    bool      // a request has begun
	handlers int       // requests being handled
	reads    int       // of those, the ones waiting for their body
	since    time.Time // accepted, or a request began or ended
}

// waitingLocked reports whether c waits for its client: no request of
// its is being worked on or answered.
func (c *limitedConn) waitingLocked() bool { return c.handlers == c.reads }

func (c *limitedConn) begin() {
	if c == nil {
		return
	}
	c.l.mu.Lock()
	c.begun = true
	c.handlers++
	c.since = time.Now()
	c.l.mu.Unlock()
}

func (c *limitedConn) end() {
	if c == nil {
		return
	}
	c.l.mu.Lock()
	c.handlers--
	c.since = time.Now()
	c.l.mu.Unlock()
	c.l.signal()
}

func (c *limitedConn) reading(on bool) {
	if c == nil {
		return
	}
	c.l.mu.Lock()
	if on {
		c.reads++
	} else {
		c.reads--
	}
	c.l.mu.Unlock()
	if on {
		c.l.signal()
	}
}

// Close closes the connection and makes its room free.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
		c.l.signal()
	})
	return err
}

type connKey struct{}

// connContext is Start's server's ConnContext: it keeps the
// *limitedConn under c (a *tls.Conn) in ctx for servedConn.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if lc, ok := c.(*limitedConn); ok {
		return context.WithValue(ctx, connKey{}, lc)
	}
	return ctx
}

// servedConn is the connection a request came in on when Start's server
// serves it, else nil.
func servedConn(ctx context.Context) *limitedConn {
	c, _ := ctx.Value(connKey{}).(*limitedConn)
	return c
}
