package board

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"zerotouch/flasher"
)

// errNewStation tells the board's receive loop that a station connected
// afresh: what it had of a line from the previous connection is dropped.
var errNewStation = errors.New("a new station connected")

// tcpLine is the board's end of a line served on TCP, for stations to
// reach as tcp://HOST:PORT: a serial device server and its board in one.
// It holds one station's connection at a time: a station that connects
// while another is connected takes the line over, and the older
// connection is closed (a dead station cannot keep the board). Bytes the
// board sends while no station is connected are lost, as on a line with
// nothing at its other end.
type tcpLine struct {
	ln   net.Listener
	url  string
	done chan struct{} // closed when the accept loop has ended

	mu     sync.Mutex
	cond   *sync.Cond // signalled when conn changes or the line closes
	conn   net.Conn   // the station's, or nil
	gen    int        // connections taken so far
	read   int        // the connection Read last read from, by gen
	closed bool
}

// listenTCP checks listen, tcp://HOST:PORT (PORT 0: any free port), and
// listens there.
func listenTCP(listen string) (*tcpLine, error) {
	addr, err := ListenAddr(listen)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", listen, err)
	}
	l := &tcpLine{ln: ln, url: flasher.SchemeTCP + "://" + ln.Addr().String(), done: make(chan struct{})}
	l.cond = sync.NewCond(&l.mu)
	go l.accept()
	return l, nil
}

// ListenAddr checks a board's listen URL, tcp://HOST:PORT where PORT may
// be 0 (any free port), and returns HOST:PORT.
func ListenAddr(listen string) (string, error) {
	scheme, hostport, ok := strings.Cut(listen, "://")
	if !ok || scheme != flasher.SchemeTCP {
		return "", fmt.Errorf("listen %q: want tcp://HOST:PORT (PORT 0 for any free port)", listen)
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", fmt.Errorf("listen %q: want tcp://HOST:PORT: %v", listen, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("listen %q: port %q: want 0 to 65535", listen, port)
	}
	return net.JoinHostPort(host, port), nil
}

// accept takes stations' connections until the line closes.
func (l *tcpLine) accept() {
	defer close(l.done)
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return // closed
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			return
		}
		if l.conn != nil {
			l.conn.Close()
		}
		l.conn = c
		l.gen++
		l.cond.Broadcast()
		l.mu.Unlock()
	}
}

// current waits for a station's connection and returns it with its
// number, or an error once the line is closed.
func (l *tcpLine) current() (net.Conn, int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.conn == nil && !l.closed {
		l.cond.Wait()
	}
	if l.closed {
		return nil, 0, net.ErrClosed
	}
	return l.conn, l.gen, nil
}

// drop closes c if it is still the station's connection.
func (l *tcpLine) drop(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == c {
		l.conn = nil
	}
	c.Close()
}

// Read reads what the station sends, waiting for a station when none is
// connected. It returns errNewStation once when a new connection takes
// over, and an error only for that or once the line is closed.
func (l *tcpLine) Read(b []byte) (int, error) {
	for {
		c, gen, err := l.current()
		if err != nil {
			return 0, err
		}
		if gen != l.read {
			l.read = gen
			return 0, errNewStation
		}
		n, err := c.Read(b)
		if n > 0 {
			return n, nil
		}
		if err != nil {
			l.drop(c)
		}
	}
}

// Write sends b to the station connected now; with none, or if the
// connection fails, the bytes are lost.
func (l *tcpLine) Write(b []byte) (int, error) {
	l.mu.Lock()
	c, closed := l.conn, l.closed
	l.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	if c != nil {
		if _, err := c.Write(b); err != nil {
			l.drop(c)
		}
	}
	return len(b), nil
}

// Close stops listening and closes the station's connection.
func (l *tcpLine) Close() error {
	l.mu.Lock()
	l.closed = true
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
	l.cond.Broadcast()
	l.mu.Unlock()
	err := l.ln.Close()
	<-l.done
	return err
}
