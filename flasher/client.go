package flasher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Link is the byte stream to one board. *Port satisfies it. Close must
// unblock a Read in progress; a Read that returns an error ends the link.
type Link interface {
	io.ReadWriteCloser
}

// Options configure a Client. The zero value is usable.
type Options struct {
	// Name identifies the board in errors and logs, usually its port path.
	Name string
	// Baud is the line rate, used to allow for the time a packet spends on
	// the wire when waiting for an answer. Zero means 115200.
	Baud int
	// Timeout is how long to wait for an answer beyond the wire time of the
	// request and of a full answer. Zero means 2 s; more than MaxTimeout
	// means MaxTimeout.
	Timeout time.Duration
	// Retries is how many times a request is sent again, with the same
	// sequence number, when no answer comes. Zero means 2; negative means
	// none.
	Retries int
	// Protocol is the SMP protocol version of requests: 1 (the original
	// protocol, header version 0) or 2 (the default). Answers in either
	// version are understood.
	Protocol int
	// SkipParams skips reading the board's MCUmgr parameters on connect;
	// buffer sizes then stay at DefaultParams until ReadParams is called.
	SkipParams bool
	// Logger receives debug records of stray lines and dropped frames.
	Logger *slog.Logger
}

// Params are the board's MCUmgr parameters: the size and number of its
// SMP buffers. Chunked transfers size every request to fit BufSize.
type Params struct {
	BufSize  int `cbor:"buf_size"`
	BufCount int `cbor:"buf_count"`
}

// DefaultParams are assumed for a board that does not answer os.params:
// Zephyr's default buffer.
var DefaultParams = Params{BufSize: 384, BufCount: 4}

// Bounds on the buffer a board may claim. A claim below MinBufSize is
// refused: no request fits. A claim above what the client can use is
// taken down to it (see Client.Params): at most MaxBufSize, the largest
// packet the 16-bit length field allows, and at most what crosses the
// line in maxFrameTime at the client's baud rate, so that a board's claim
// can neither make a request unframeable nor stretch the time the client
// waits for an answer.
const (
	MinBufSize = 64
	MaxBufSize = MaxMessage + pktExtra
	// maxFrameTime bounds the wire time of one request and of the
	// answer the client allows for.
	maxFrameTime = 2 * time.Second
)

// MaxTimeout is the longest Options.Timeout: with the wire time of a
// request and an answer, which the buffer's bound keeps within 4 s, it
// bounds every wait for an answer but those of the slow board commands
// (a TPM command, a key made on the board), which allow for themselves.
const MaxTimeout = time.Minute

// usableBuf is the buffer size the client works with for a board that
// claims claimed at baud: see MinBufSize.
func usableBuf(claimed, baud int) int {
	// Frames cost 4/3 of their bytes in base64 plus 3 bytes a line; 10
	// bits a byte on the line.
	budget := int(int64(baud) / 10 * int64(maxFrameTime/time.Millisecond) / 1000 * 3 / 4 * lineChars / MaxLine)
	return min(claimed, MaxBufSize, max(budget, 256))
}

// Stats count what the client saw on the line.
type Stats struct {
	Requests   int64 // requests sent, retries included
	Retries    int64 // requests sent again after a timeout
	StrayLines int64 // lines that were not SMP (console output)
	BadFrames  int64 // packets dropped for bad CRC, base64 or length
	Stale      int64 // messages that matched no request in progress
}

// Client talks SMP to one board. Its methods are safe for concurrent use;
// requests are sent one at a time. Close the Client to close its Link.
type Client struct {
	link Link
	opts Options
	// version is the header version of requests.
	version uint8
	log     *slog.Logger

	mu     sync.Mutex // held for a whole request
	seq    uint8
	params Params

	rx      chan Message
	garbled chan struct{} // a packet was lost to line noise
	writes  chan writeReq
	done    chan struct{}
	readErr atomic.Pointer[error]
	closed  atomic.Bool
	// inbound is the packet arriving now, once its length is known: a
	// wait that runs out while it arrives is stretched to its wire time.
	inbound atomic.Pointer[inboundPacket]

	requests, retries, stray, bad, stale atomic.Int64
}

// NewClient starts a client on link and, unless opts.SkipParams is set,
// reads the board's MCUmgr parameters. A board that does not support them
// gets DefaultParams; a board that does not answer at all is an error
// wrapping ErrTimeout, and the link is closed.
func NewClient(ctx context.Context, link Link, opts Options) (*Client, error) {
	if opts.Baud <= 0 {
		opts.Baud = 115200
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	opts.Timeout = min(opts.Timeout, MaxTimeout)
	switch {
	case opts.Retries == 0:
		opts.Retries = 2
	case opts.Retries < 0:
		opts.Retries = 0
	}
	version := Version2
	switch opts.Protocol {
	case 0, 2:
	case 1:
		version = Version1
	default:
		link.Close()
		return nil, fmt.Errorf("SMP protocol version %d: want 1 or 2", opts.Protocol)
	}
	if opts.Name == "" {
		opts.Name = "board"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		link:    link,
		opts:    opts,
		version: version,
		log:     log,
		params:  DefaultParams,
		rx:      make(chan Message, 8),
		garbled: make(chan struct{}, 1),
		writes:  make(chan writeReq),
		done:    make(chan struct{}),
	}
	go c.readLoop()
	go c.writeLoop()
	if !opts.SkipParams {
		if _, err := c.ReadParams(ctx); err != nil && !errors.Is(err, ErrNotSupported) {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Name returns the name the client was given.
func (c *Client) Name() string { return c.opts.Name }

// Params returns the board's MCUmgr parameters as the client uses them:
// as last read, with the buffer size bounded (see MinBufSize).
func (c *Client) Params() Params {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.params
}

// Stats returns what the client has counted so far.
func (c *Client) Stats() Stats {
	return Stats{
		Requests:   c.requests.Load(),
		Retries:    c.retries.Load(),
		StrayLines: c.stray.Load(),
		BadFrames:  c.bad.Load(),
		Stale:      c.stale.Load(),
	}
}

// Close closes the link and ends the client. Calls in progress return an
// error wrapping ErrClosed.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	err := c.link.Close()
	<-c.done
	return err
}

// inboundPacket is a packet whose first line has arrived.
type inboundPacket struct {
	start time.Time
	size  int // message bytes the packet announced
}

// readLoop reads lines from the link, reassembles packets and hands every
// answer to the request in progress. It ends when the link fails.
func (c *Client) readLoop() {
	defer close(c.done)
	defer func() {
		// Nothing a board sends may end the process: a fault in
		// decoding ends this link only.
		if p := recover(); p != nil {
			err := fmt.Errorf("%w: decoding the board's answer failed: %v", ErrProtocol, p)
			c.log.Error("link ended by an internal error", "port", c.opts.Name, "err", err)
			c.readErr.Store(&err)
			c.link.Close()
		}
	}()
	var (
		dec  Decoder
		buf  = make([]byte, 4096)
		line []byte
	)
	for {
		n, err := c.link.Read(buf)
		for _, b := range buf[:n] {
			if b != '\n' {
				if len(line) < 1<<16 {
					line = append(line, b)
				}
				continue
			}
			c.handleLine(&dec, line)
			line = line[:0]
		}
		if err != nil {
			c.readErr.Store(&err)
			return
		}
	}
}

func (c *Client) handleLine(dec *Decoder, line []byte) {
	started := ClassifyLine(line) == LineStart
	msg, err := dec.Line(line)
	switch {
	case !dec.InPacket():
		c.inbound.Store(nil)
	case started || c.inbound.Load() == nil:
		if n := dec.Announced(); n >= 0 {
			c.inbound.Store(&inboundPacket{start: time.Now(), size: n})
		}
	}
	if dec.Cut() {
		c.bad.Add(1)
		c.log.Debug("dropped frame", "port", c.opts.Name, "err", "a line of it was lost")
		c.signalGarbled()
	}
	switch {
	case err != nil:
		c.bad.Add(1)
		c.log.Debug("dropped frame", "port", c.opts.Name, "err", err)
		c.signalGarbled()
		return
	case msg == nil:
		if ClassifyLine(line) == LineOther && len(bytes.TrimSpace(line)) > 0 {
			c.stray.Add(1)
			c.log.Debug("stray line", "port", c.opts.Name, "line", string(bytes.TrimSpace(line)))
		}
		return
	}
	m, err := ParseMessage(msg)
	if err != nil {
		c.bad.Add(1)
		c.log.Debug("dropped message", "port", c.opts.Name, "err", err)
		c.signalGarbled()
		return
	}
	if !m.Op.IsResponse() {
		// A well-formed request is not noise (an echoing line, another
		// station): skip it without resending.
		c.stale.Add(1)
		c.log.Debug("skipped a request on the line", "port", c.opts.Name, "cmd", m.Header.String())
		return
	}
	select {
	case c.rx <- m:
	default:
		c.stale.Add(1) // nobody is waiting and the queue is full
	}
}

// signalGarbled tells the request in progress that a packet was lost, so
// that it resends at once instead of waiting out its timeout.
func (c *Client) signalGarbled() {
	select {
	case c.garbled <- struct{}{}:
	default:
	}
}

// linkErr returns why the read loop ended, as one of the package's errors.
func (c *Client) linkErr() error {
	if c.closed.Load() {
		return ErrClosed
	}
	if p := c.readErr.Load(); p != nil {
		return fmt.Errorf("%w: %v", ErrDisconnected, *p)
	}
	return ErrDisconnected
}

// errGarbled ends a wait early when a packet arrived damaged: likely the
// answer.
var errGarbled = errors.New("answer garbled")

// call is one request-response exchange with its options.
type call struct {
	op      Op
	group   uint16
	id      uint8
	timeout time.Duration // per attempt beyond wire time; 0: the client's
	retries int           // -1: the client's
}

// Do sends one request and decodes the answer into rsp (a pointer, or
// nil). op is OpRead or OpWrite; req is encoded as the CBOR body (nil for
// an empty map). It retries on timeout with the same sequence number and
// returns an *Error when the board reports one.
func (c *Client) Do(ctx context.Context, op Op, group uint16, id uint8, req, rsp any) error {
	return c.do(ctx, call{op: op, group: group, id: id, retries: -1}, req, rsp)
}

func (c *Client) do(ctx context.Context, cl call, req, rsp any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	name := CommandName(cl.group, cl.id)
	if req == nil {
		req = struct{}{}
	}
	c.seq++
	seq := c.seq
	msg, err := EncodeMessage(Header{Version: c.version, Op: cl.op, Group: cl.group, Seq: seq, ID: cl.id}, req)
	if err != nil {
		return err
	}
	if limit := c.maxMessage(); len(msg) > limit {
		return fmt.Errorf("%s on %s: %w: request of %d bytes exceeds the board's %d-byte buffer", name, c.opts.Name, ErrInvalid, len(msg), limit)
	}
	frame, err := AppendFrame(nil, msg)
	if err != nil {
		return fmt.Errorf("%s on %s: %w", name, c.opts.Name, err)
	}

	timeout := cl.timeout
	if timeout <= 0 {
		timeout = c.opts.Timeout
	}
	// Allow for the request and an answer of the buffer's size crossing
	// the wire; the buffer is bounded (usableBuf), and so is this. A
	// longer answer that is arriving stretches the wait (await).
	timeout += c.wireTime(len(frame) + FrameLen(max(c.params.BufSize, 512)))
	retries := cl.retries
	if retries < 0 {
		retries = c.opts.Retries
	}

	c.drain()
	garbled := 0
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			c.retries.Add(1)
			c.log.Debug("resending", "port", c.opts.Name, "cmd", name, "seq", seq, "attempt", attempt+1)
		}
		if err := c.write(ctx, frame, timeout); err != nil {
			return fmt.Errorf("%s on %s: %w", name, c.opts.Name, err)
		}
		ans, err := c.await(ctx, cl, seq, timeout)
		if errors.Is(err, errGarbled) {
			garbled++
		}
		if errors.Is(err, ErrTimeout) || errors.Is(err, errGarbled) {
			// The same sequence number again: a board that did carry
			// out the request answers from its cache.
			continue
		}
		if err != nil {
			return fmt.Errorf("%s on %s: %w", name, c.opts.Name, err)
		}
		if ans.Op != cl.op.Response() {
			return fmt.Errorf("%s on %s: %w: answer has op %d", name, c.opts.Name, ErrProtocol, ans.Op)
		}
		if err := statusError(name, ans.Body); err != nil {
			return fmt.Errorf("on %s: %w", c.opts.Name, err)
		}
		if rsp != nil {
			if err := DecodeBody(ans.Body, rsp); err != nil {
				return fmt.Errorf("%s on %s: %w: %v", name, c.opts.Name, ErrProtocol, err)
			}
		}
		return nil
	}
	if garbled > 0 {
		return fmt.Errorf("%s on %s: %w: %d of %d answers arrived garbled (line noise? check the cable and the baud rate)", name, c.opts.Name, ErrTimeout, garbled, retries+1)
	}
	return fmt.Errorf("%s on %s: %w: no answer to %d attempts of %v (is the board powered and on this port, at this baud rate?)", name, c.opts.Name, ErrTimeout, retries+1, timeout.Round(time.Millisecond))
}

// maxMessage is the longest SMP message the board takes: its buffer holds
// the packet's length and CRC too.
func (c *Client) maxMessage() int { return c.params.BufSize - pktExtra }

// wireTime is how long n bytes take on the line (10 bits a byte).
func (c *Client) wireTime(n int) time.Duration {
	return time.Duration(n) * 10 * time.Second / time.Duration(c.opts.Baud)
}

// drain drops answers left over from earlier, abandoned requests.
func (c *Client) drain() {
	for {
		select {
		case <-c.rx:
			c.stale.Add(1)
		case <-c.garbled:
		default:
			return
		}
	}
}

// write sends frame through the writer goroutine, so that a write that
// blocks (a board that stopped reading) leaves the caller free: it returns
// when ctx ends or after limit, and the write is left to finish or fail.
func (c *Client) write(ctx context.Context, frame []byte, limit time.Duration) error {
	if c.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	w := writeReq{frame: frame, done: make(chan error, 1)}
	select {
	case c.writes <- w:
	case <-c.done:
		return c.linkErr()
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return fmt.Errorf("%w: the port has not taken the previous request for %v", ErrTimeout, limit.Round(time.Millisecond))
	}
	c.requests.Add(1)
	select {
	case err := <-w.done:
		if err != nil {
			if c.closed.Load() {
				return ErrClosed
			}
			return fmt.Errorf("%w: write: %v", ErrDisconnected, err)
		}
		return nil
	case <-c.done:
		return c.linkErr()
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return fmt.Errorf("%w: the port took no data for %v (is the board reading?)", ErrTimeout, limit.Round(time.Millisecond))
	}
}

type writeReq struct {
	frame []byte
	done  chan error
}

// writeLoop carries out writes one at a time until the link fails.
func (c *Client) writeLoop() {
	for {
		select {
		case w := <-c.writes:
			_, err := c.link.Write(w.frame)
			w.done <- err
		case <-c.done:
			return
		}
	}
}

// await waits for the answer to the request with sequence number seq.
// When the wait runs out while a packet is arriving, it is stretched
// once, to the time that packet takes on the line from its first line
// plus the client's timeout: a board may answer with more than the
// buffer the client works with, but no board can hold a wait longer than
// a 64 KiB packet's wire time.
func (c *Client) await(ctx context.Context, cl call, seq uint8, timeout time.Duration) (Message, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	stretched := false
	for {
		select {
		case m := <-c.rx:
			if m.Seq != seq || m.Group != cl.group || m.ID != cl.id {
				c.stale.Add(1)
				continue
			}
			return m, nil
		case <-c.garbled:
			return Message{}, errGarbled
		case <-t.C:
			if p := c.inbound.Load(); p != nil && !stretched {
				stretched = true
				end := p.start.Add(c.wireTime(FrameLen(p.size)) + c.opts.Timeout)
				if d := time.Until(end); d > 0 {
					t.Reset(d)
					continue
				}
			}
			return Message{}, ErrTimeout
		case <-ctx.Done():
			return Message{}, ctx.Err()
		case <-c.done:
			return Message{}, c.linkErr()
		}
	}
}

// ReadParams reads the board's MCUmgr parameters (OS group, command 6) and
// sizes later transfers by them. It returns them as the board said; the
// client works with a buffer of at most MaxBufSize and at most what
// crosses the line in 2 s (Params says which). A buffer below MinBufSize
// or a negative count is an error wrapping ErrProtocol, and the client
// keeps what it had. A board without the command returns an error
// matching ErrNotSupported and keeps DefaultParams.
func (c *Client) ReadParams(ctx context.Context) (Params, error) {
	var p Params
	if err := c.Do(ctx, OpRead, GroupOS, CmdOSParams, nil, &p); err != nil {
		return Params{}, err
	}
	if p.BufSize < MinBufSize || p.BufCount < 0 {
		return Params{}, fmt.Errorf("os.params on %s: %w: buffer size %d, count %d (want a size of at least %d)",
			c.opts.Name, ErrProtocol, p.BufSize, p.BufCount, MinBufSize)
	}
	use := p
	use.BufSize = usableBuf(p.BufSize, c.opts.Baud)
	if use.BufSize != p.BufSize {
		c.log.Debug("board buffer larger than the client uses", "port", c.opts.Name, "claimed", p.BufSize, "used", use.BufSize)
	}
	c.mu.Lock()
	c.params = use
	c.mu.Unlock()
	return p, nil
}
