package flasher

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// The Telnet protocol as RFC 2217 uses it: commands (RFC 854), option
// negotiation, binary transmission (RFC 856), suppress go-ahead (RFC
// 858) and the com port control option (RFC 2217).
const (
	telSE   = 240 // end of subnegotiation
	telSB   = 250 // start of subnegotiation
	telWILL = 251
	telWONT = 252
	telDO   = 253
	telDONT = 254
	telIAC  = 255 // interpret as command; doubled in data

	optBinary  = 0  // RFC 856
	optSGA     = 3  // RFC 858
	optComPort = 44 // RFC 2217
)

// RFC 2217 com port commands as the client sends them. The server's
// answers carry the same command plus cpServer.
const (
	cpSignature         = 0
	cpSetBaudRate       = 1
	cpSetDataSize       = 2
	cpSetParity         = 3
	cpSetStopSize       = 4
	cpSetControl        = 5
	cpNotifyLineState   = 6
	cpNotifyModemState  = 7
	cpFlowSuspend       = 8
	cpFlowResume        = 9
	cpSetLineStateMask  = 10
	cpSetModemStateMask = 11
	cpPurgeData         = 12
	cpServer            = 100
)

// Values of the com port commands zerotouch sends (RFC 2217, "Com Port
// Configuration Commands").
const (
	cpParityNone     = 1
	cpStopOne        = 1
	cpNoFlowOut      = 1  // SET-CONTROL: no flow control, outbound (both)
	cpDTROn          = 8  // SET-CONTROL: DTR signal on
	cpRTSOn          = 11 // SET-CONTROL: RTS signal on
	cpNoFlowIn       = 14 // SET-CONTROL: no flow control, inbound
	cpPurgeReceive   = 1  // PURGE-DATA: the server's buffer of data from the device
	rfc2217DataBits  = 8
	maxSubnegotiated = 256 // a longer subnegotiation is dropped whole
)

// telnetCommand is one command a Telnet stream carried: an option verb
// (WILL, WONT, DO, DONT) with its option, a subnegotiation (SB) with its
// option and parameters, or another command (NOP, GA...) alone.
type telnetCommand struct {
	verb byte
	opt  byte
	// data are a subnegotiation's parameters, IAC doubling undone. They
	// are valid until the handler returns.
	data []byte
}

// telnetDecoder splits a Telnet stream into data and commands. The zero
// value expects a peer that does not send binary (NVT): set binary once
// the peer agrees to (RFC 856).
type telnetDecoder struct {
	state   uint8
	verb    byte
	sbOpt   byte
	sb      []byte
	sbLong  bool // the subnegotiation outgrew maxSubnegotiated
	afterCR bool // the previous data byte was a CR, in NVT mode
	// binary: the peer sends 8-bit data as is. Otherwise a CR it sends
	// is followed by NUL or LF (RFC 854, "The NVT printer and keyboard"),
	// and that NUL is dropped.
	binary bool
}

const (
	decData  = iota
	decIAC   // after IAC
	decOpt   // after IAC WILL/WONT/DO/DONT
	decSBOpt // after IAC SB
	decSB    // in a subnegotiation's parameters
	decSBIAC // after IAC in a subnegotiation
)

// decode appends the data bytes of in to out and calls handle for each
// command, in stream order. A command split across calls is held until
// its end arrives.
func (d *telnetDecoder) decode(in, out []byte, handle func(telnetCommand)) []byte {
	for _, c := range in {
		switch d.state {
		case decData:
			if c == telIAC {
				d.state = decIAC
				continue
			}
			if d.afterCR {
				d.afterCR = false
				if c == 0 && !d.binary {
					continue
				}
			}
			out = append(out, c)
			d.afterCR = c == '\r' && !d.binary
		case decIAC:
			if c == telIAC {
				out = append(out, telIAC)
				d.afterCR = false
				d.state = decData
				continue
			}
			d.command(c, handle)
		case decOpt:
			handle(telnetCommand{verb: d.verb, opt: c})
			d.state = decData
		case decSBOpt:
			d.sbOpt, d.sb, d.sbLong = c, d.sb[:0], false
			d.state = decSB
		case decSB:
			if c == telIAC {
				d.state = decSBIAC
				continue
			}
			d.subByte(c)
		case decSBIAC:
			switch c {
			case telIAC:
				d.subByte(telIAC)
				d.state = decSB
			case telSE:
				if !d.sbLong {
					handle(telnetCommand{verb: telSB, opt: d.sbOpt, data: d.sb})
				}
				d.state = decData
			default:
				// RFC 855 allows only IAC SE or a doubled IAC here: the
				// subnegotiation is cut short and c is a command of its
				// own.
				d.command(c, handle)
			}
		}
	}
	return out
}

// command takes the byte after an IAC that is not a doubled IAC.
func (d *telnetDecoder) command(c byte, handle func(telnetCommand)) {
	switch c {
	case telWILL, telWONT, telDO, telDONT:
		d.verb = c
		d.state = decOpt
	case telSB:
		d.state = decSBOpt
	default:
		if c != telSE { // an SE outside a subnegotiation ends nothing
			handle(telnetCommand{verb: c})
		}
		d.state = decData
	}
}

func (d *telnetDecoder) subByte(c byte) {
	if len(d.sb) >= maxSubnegotiated {
		d.sbLong = true
		return
	}
	d.sb = append(d.sb, c)
}

// appendEscaped appends data to dst as Telnet sends it: 0xFF doubled and,
// unless binary was agreed, a CR followed by NUL (RFC 854).
func appendEscaped(dst, data []byte, binary bool) []byte {
	for _, c := range data {
		dst = append(dst, c)
		switch {
		case c == telIAC:
			dst = append(dst, telIAC)
		case c == '\r' && !binary:
			dst = append(dst, 0)
		}
	}
	return dst
}

// appendComPort appends the subnegotiation IAC SB COM-PORT-OPTION code
// value IAC SE, with IAC doubled in value.
func appendComPort(dst []byte, code byte, value []byte) []byte {
	dst = append(dst, telIAC, telSB, optComPort, code)
	dst = appendEscaped(dst, value, true)
	return append(dst, telIAC, telSE)
}

// comPortReply is a com port message from the server (RFC 2217): the
// answer to one of the client's commands, or a notification.
type comPortReply struct {
	code  byte   // the server's command code, cpServer to cpServer+12
	value uint32 // SET-BAUDRATE's rate, or the one-byte value of the others
	text  string // SIGNATURE's text
}

// parseComPortReply parses the parameters of a com port subnegotiation
// from the server. The value's length is the one RFC 2217 gives each
// command: 4 bytes for the baud rate, none for the flow control
// notifications, any text for the signature, one byte for the others.
func parseComPortReply(sub []byte) (comPortReply, error) {
	if len(sub) == 0 {
		return comPortReply{}, errors.New("RFC 2217: com port subnegotiation without a command")
	}
	r := comPortReply{code: sub[0]}
	v := sub[1:]
	want := 1
	switch r.code {
	case cpServer + cpSignature:
		r.text = string(v)
		return r, nil
	case cpServer + cpSetBaudRate:
		want = 4
	case cpServer + cpFlowSuspend, cpServer + cpFlowResume:
		want = 0
	case cpServer + cpSetDataSize, cpServer + cpSetParity, cpServer + cpSetStopSize, cpServer + cpSetControl,
		cpServer + cpNotifyLineState, cpServer + cpNotifyModemState, cpServer + cpSetLineStateMask,
		cpServer + cpSetModemStateMask, cpServer + cpPurgeData:
	default:
		return r, fmt.Errorf("RFC 2217: com port command %d is not a server's (want %d to %d)", r.code, cpServer, cpServer+cpPurgeData)
	}
	if len(v) != want {
		return r, fmt.Errorf("RFC 2217: com port command %d carries %d bytes, want %d", r.code, len(v), want)
	}
	switch want {
	case 4:
		r.value = binary.BigEndian.Uint32(v)
	case 1:
		r.value = uint32(v[0])
	}
	return r, nil
}

// rfc2217NegotiationTime bounds the negotiation when ctx allows longer.
const rfc2217NegotiationTime = 5 * time.Second

// telnet is the client side of an RFC 2217 connection: data in and out
// with Telnet's escaping, option negotiation answered as it comes, and the
// com port's flow control notifications obeyed. Read is called from one
// goroutine at a time, Write from one other; Close from any.
type telnet struct {
	conn net.Conn
	name string // for errors

	// Read's own: the decoder and its buffers.
	dec  telnetDecoder
	raw  []byte
	data []byte // decoded data; data[off:] is not yet returned
	off  int

	wmu sync.Mutex // one writer on conn: data and negotiation answers

	mu        sync.Mutex // guards what follows
	cond      *sync.Cond // signalled when any of it changes
	us, him   [256]bool  // options in effect on our side and on the server's
	askedUs   [256]bool  // we sent WILL and await DO or DONT
	askedHim  [256]bool  // we sent DO and await WILL or WONT
	refused   [256]bool  // the server refused an option we asked for on our side
	awaited   map[byte]int
	answered  map[byte]uint32
	suspended bool  // the server asked us to stop sending (FLOWCONTROL-SUSPEND)
	closed    bool  // Close was called
	badReply  error // the first malformed com port message
	replies   []byte
}

// Options zerotouch agrees to: on its own side, binary, suppress
// go-ahead and the com port; on the server's, binary and suppress
// go-ahead. Everything else (echo above all) is refused.
func acceptUs(opt byte) bool  { return opt == optBinary || opt == optSGA || opt == optComPort }
func acceptHim(opt byte) bool { return opt == optBinary || opt == optSGA }

func newTelnet(conn net.Conn, name string) *telnet {
	t := &telnet{conn: conn, name: name, raw: make([]byte, 4096), awaited: map[byte]int{}, answered: map[byte]uint32{}}
	t.cond = sync.NewCond(&t.mu)
	return t
}

// negotiate asks for the com port option and sets the line up: baud, 8
// data bits, no parity, one stop bit, no flow control, DTR and RTS on (as
// a serial port opened here is), the server's receive buffer purged. It
// returns once the server has answered the rate and the framing, and
// fails if the server refuses the option or sets the line otherwise.
func (t *telnet) negotiate(ctx context.Context, baud int) error {
	deadline := time.Now().Add(rfc2217NegotiationTime)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	allowed := time.Until(deadline).Round(time.Millisecond)
	t.conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { t.conn.SetDeadline(time.Unix(1, 0)) })
	err := t.setLine(ctx, baud, allowed)
	if !stop() && err == nil {
		// ctx ended as the negotiation did: its past deadline may land
		// after any reset here, so the connection is not usable.
		err = fmt.Errorf("%s: RFC 2217 negotiation: %w", t.name, ctx.Err())
	}
	t.conn.SetDeadline(time.Time{})
	return err
}

// setLine is negotiate's exchange, under the connection's deadline.
func (t *telnet) setLine(ctx context.Context, baud int, allowed time.Duration) error {
	fail := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: RFC 2217 negotiation: %w", t.name, ctx.Err())
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("%s: no RFC 2217 answer within %v: is the port server in raw mode? Then name the port tcp://: %w",
				t.name, allowed, err)
		}
		return fmt.Errorf("%s: RFC 2217 negotiation: %w", t.name, err)
	}

	t.mu.Lock()
	t.askedUs[optComPort], t.askedUs[optBinary], t.askedHim[optBinary] = true, true, true
	t.mu.Unlock()
	if err := t.writeRaw([]byte{telIAC, telWILL, optComPort, telIAC, telWILL, optBinary, telIAC, telDO, optBinary}); err != nil {
		return fail(err)
	}
	if err := t.await(func() bool { return t.us[optComPort] || t.refused[optComPort] }); err != nil {
		return fail(err)
	}
	t.mu.Lock()
	refused := t.refused[optComPort]
	t.mu.Unlock()
	if refused {
		return fmt.Errorf("%s: the port server refuses RFC 2217 (DONT COM-PORT-OPTION): is it in telnet mode without RFC 2217? Then name the port tcp:// and set its rate on the server", t.name)
	}

	var cmds []byte
	rate := make([]byte, 4)
	binary.BigEndian.PutUint32(rate, uint32(baud))
	cmds = appendComPort(cmds, cpSetBaudRate, rate)
	cmds = appendComPort(cmds, cpSetDataSize, []byte{rfc2217DataBits})
	cmds = appendComPort(cmds, cpSetParity, []byte{cpParityNone})
	cmds = appendComPort(cmds, cpSetStopSize, []byte{cpStopOne})
	controls := []byte{cpNoFlowOut, cpNoFlowIn, cpDTROn, cpRTSOn}
	for _, c := range controls {
		cmds = appendComPort(cmds, cpSetControl, []byte{c})
	}
	cmds = appendComPort(cmds, cpPurgeData, []byte{cpPurgeReceive})
	// The answers awaited are those of the settings checked: a server
	// may leave a control it cannot carry out unanswered (ser2net does
	// DTR on a pseudo-terminal).
	t.mu.Lock()
	for _, c := range []byte{cpSetBaudRate, cpSetDataSize, cpSetParity, cpSetStopSize} {
		t.awaited[cpServer+c] = 1
	}
	t.mu.Unlock()
	if err := t.writeRaw(cmds); err != nil {
		return fail(err)
	}
	err := t.await(func() bool {
		if t.badReply != nil {
			return true
		}
		for _, n := range t.awaited {
			if n > 0 {
				return false
			}
		}
		return true
	})
	if err != nil {
		return fail(err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.badReply != nil {
		return fmt.Errorf("%s: the port server broke RFC 2217: %w", t.name, t.badReply)
	}
	for _, s := range []struct {
		code byte
		what string
		want uint32
	}{
		{cpSetBaudRate, "baud rate", uint32(baud)},
		{cpSetDataSize, "data bits", rfc2217DataBits},
		{cpSetParity, "parity (RFC 2217 code; 1 is none)", cpParityNone},
		{cpSetStopSize, "stop bits (RFC 2217 code; 1 is one)", cpStopOne},
	} {
		if got := t.answered[cpServer+s.code]; got != s.want {
			return fmt.Errorf("%s: the port server set %s %d, not %d as asked", t.name, s.what, got, s.want)
		}
	}
	return nil
}

// await reads from the server until done (called under mu) holds.
func (t *telnet) await(done func() bool) error {
	for {
		t.mu.Lock()
		ok := done()
		t.mu.Unlock()
		if ok {
			return nil
		}
		if err := t.fill(); err != nil {
			return err
		}
	}
}

// fill reads once from the server, answers the commands that came and
// keeps the data for Read.
func (t *telnet) fill() error {
	n, err := t.conn.Read(t.raw)
	if n > 0 {
		if t.off == len(t.data) {
			t.data, t.off = t.data[:0], 0
		}
		t.data = t.dec.decode(t.raw[:n], t.data, t.handle)
		t.mu.Lock()
		replies := t.replies
		t.replies = nil
		t.mu.Unlock()
		if len(replies) > 0 {
			if werr := t.writeRaw(replies); werr != nil && err == nil {
				err = werr
			}
		}
	}
	return err
}

// handle answers one command from the server (RFC 854's option rules:
// an option already in the state asked for is not acknowledged again).
func (t *telnet) handle(c telnetCommand) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer t.cond.Broadcast()
	reply := func(verb byte) { t.replies = append(t.replies, telIAC, verb, c.opt) }
	switch c.verb {
	case telDO:
		switch {
		case !acceptUs(c.opt):
			reply(telWONT)
		case !t.us[c.opt]:
			t.us[c.opt] = true
			if !t.askedUs[c.opt] {
				reply(telWILL)
			}
		}
		t.askedUs[c.opt] = false
	case telDONT:
		if t.us[c.opt] {
			t.us[c.opt] = false
			reply(telWONT)
		} else if t.askedUs[c.opt] {
			t.refused[c.opt] = true
		}
		t.askedUs[c.opt] = false
	case telWILL:
		switch {
		case !acceptHim(c.opt):
			reply(telDONT)
		case !t.him[c.opt]:
			t.him[c.opt] = true
			if !t.askedHim[c.opt] {
				reply(telDO)
			}
		}
		t.askedHim[c.opt] = false
	case telWONT:
		if t.him[c.opt] {
			t.him[c.opt] = false
			reply(telDONT)
		}
		t.askedHim[c.opt] = false
	case telSB:
		if c.opt == optComPort {
			t.comPort(c.data)
		}
	}
	t.dec.binary = t.him[optBinary]
}

// comPort takes a com port message from the server; called under mu.
func (t *telnet) comPort(sub []byte) {
	r, err := parseComPortReply(sub)
	if err != nil {
		if t.badReply == nil {
			t.badReply = err
		}
		return
	}
	switch r.code {
	case cpServer + cpFlowSuspend:
		t.suspended = true
	case cpServer + cpFlowResume:
		t.suspended = false
	default:
		if t.awaited[r.code] > 0 {
			t.awaited[r.code]--
		}
		t.answered[r.code] = r.value
	}
}

// Read returns the serial line's data from the server.
func (t *telnet) Read(b []byte) (int, error) {
	for t.off == len(t.data) {
		if err := t.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(b, t.data[t.off:])
	t.off += n
	return n, nil
}

// Write sends b to the serial line, escaped, once the server lets data
// flow.
func (t *telnet) Write(b []byte) (int, error) {
	t.mu.Lock()
	for t.suspended && !t.closed {
		t.cond.Wait()
	}
	closed, bin := t.closed, t.us[optBinary]
	t.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	if err := t.writeRaw(appendEscaped(make([]byte, 0, len(b)+len(b)/64+8), b, bin)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (t *telnet) writeRaw(b []byte) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	_, err := t.conn.Write(b)
	return err
}

// Close closes the connection, ending a Read or a Write in progress.
func (t *telnet) Close() error {
	t.mu.Lock()
	t.closed = true
	t.cond.Broadcast()
	t.mu.Unlock()
	return t.conn.Close()
}
