package flasher

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// decodeAll decodes in, fed in pieces cut at the given offsets, and
// returns its data and commands.
func decodeAll(in []byte, bin bool, cuts ...int) ([]byte, []telnetCommand) {
	d := telnetDecoder{binary: bin}
	var cmds []telnetCommand
	handle := func(c telnetCommand) {
		c.data = slices.Clone(c.data)
		cmds = append(cmds, c)
	}
	var data []byte
	start := 0
	for _, c := range append(cuts, len(in)) {
		data = d.decode(in[start:c], data, handle)
		start = c
	}
	return data, cmds
}

func TestTelnetDecoder(t *testing.T) {
	long := append(append([]byte{telIAC, telSB, optComPort}, bytes.Repeat([]byte{1}, maxSubnegotiated+1)...), telIAC, telSE, 'k')
	for _, tt := range []struct {
		name     string
		in       string
		binary   bool
		wantData string
		wantCmds []telnetCommand
	}{
		{name: "data", in: "ab", wantData: "ab"},
		{name: "doubled IAC", in: "a\xff\xffb", wantData: "a\xffb"},
		{name: "option", in: "\xff\xfb\x01", wantCmds: []telnetCommand{{verb: telWILL, opt: 1}}},
		{name: "com port answer amid data", in: "x\xff\xfa\x2c\x65\x00\x01\xc2\x00\xff\xf0y", wantData: "xy",
			wantCmds: []telnetCommand{{verb: telSB, opt: optComPort, data: []byte{101, 0, 1, 0xc2, 0}}}},
		{name: "IAC doubled in a subnegotiation", in: "\xff\xfa\x2c\x65\xff\xff\xff\xf0",
			wantCmds: []telnetCommand{{verb: telSB, opt: optComPort, data: []byte{101, 0xff}}}},
		{name: "NOP", in: "\xff\xf1z", wantData: "z", wantCmds: []telnetCommand{{verb: 241}}},
		{name: "CR NUL outside binary", in: "a\r\x00b\r\nc", wantData: "a\rb\r\nc"},
		{name: "CR NUL in binary", in: "a\r\x00b", binary: true, wantData: "a\r\x00b"},
		{name: "subnegotiation cut by a command", in: "\xff\xfa\x2c\x01\x02\xff\xfd\x03z", wantData: "z",
			wantCmds: []telnetCommand{{verb: telDO, opt: optSGA}}},
		{name: "over-long subnegotiation dropped", in: string(long), wantData: "k"},
		{name: "stray SE", in: "\xff\xf0a", wantData: "a"},
	} {
		for cut := range len(tt.in) + 1 {
			data, cmds := decodeAll([]byte(tt.in), tt.binary, cut)
			if string(data) != tt.wantData || !cmp.Equal(cmds, tt.wantCmds, cmp.AllowUnexported(telnetCommand{}), cmpEmpty) {
				t.Errorf("%s: decode(%q) cut at %d = %q, %+v; want %q, %+v", tt.name, tt.in, cut, data, cmds, tt.wantData, tt.wantCmds)
				break
			}
		}
	}
}

var cmpEmpty = cmp.FilterValues(func(a, b []byte) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore())

func TestParseComPortReply(t *testing.T) {
	for _, tt := range []struct {
		in      []byte
		want    comPortReply
		wantErr string
	}{
		{in: []byte{101, 0, 1, 0xc2, 0}, want: comPortReply{code: 101, value: 115200}},
		{in: []byte{102, 8}, want: comPortReply{code: 102, value: 8}},
		{in: []byte{108}, want: comPortReply{code: 108}},
		{in: []byte{100, 's', '2', 'n'}, want: comPortReply{code: 100, text: "s2n"}},
		{in: nil, wantErr: "without a command"},
		{in: []byte{1, 0, 0, 0, 9}, wantErr: "not a server's"},
		{in: []byte{101, 0, 1, 0xc2}, wantErr: "3 bytes, want 4"},
		{in: []byte{103}, wantErr: "0 bytes, want 1"},
		{in: []byte{109, 1}, wantErr: "1 bytes, want 0"},
	} {
		got, err := parseComPortReply(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseComPortReply(% x) = %+v, %v; want an error saying %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseComPortReply(% x) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

// encodeComPortReply is the subnegotiation's parameters for r, as a
// server sends them.
func encodeComPortReply(r comPortReply) []byte {
	switch r.code {
	case cpServer + cpSignature:
		return append([]byte{r.code}, r.text...)
	case cpServer + cpSetBaudRate:
		return binary.BigEndian.AppendUint32([]byte{r.code}, r.value)
	case cpServer + cpFlowSuspend, cpServer + cpFlowResume:
		return []byte{r.code}
	}
	return []byte{r.code, byte(r.value)}
}

// FuzzRFC2217 feeds arbitrary server streams to the Telnet decoder and
// the com port parser: decoding does not depend on how the stream is cut;
// what the parser accepts encodes back to the same bytes; and data
// escaped as the client sends it decodes to itself.
func FuzzRFC2217(f *testing.F) {
	f.Add([]byte("plain \r\n text"), uint16(3), false)
	f.Add([]byte{telIAC, telSB, optComPort, 101, 0, 1, 0xc2, 0, telIAC, telSE}, uint16(5), true)
	f.Add([]byte{telIAC, telSB, optComPort, 101, telIAC, telIAC, 0, 0, 1, telIAC, telSE, 'x'}, uint16(4), false)
	f.Add([]byte{telIAC, telWILL, optBinary, telIAC, telDO, optComPort, telIAC, telIAC, '\r', 0}, uint16(7), false)
	f.Add([]byte{telIAC, telSB, optComPort, 108, telIAC, telSE, telIAC, telSB, optComPort, 100, 'a', telIAC, telSE}, uint16(9), true)
	f.Add([]byte{telIAC, telSB, telIAC, telIAC, telIAC, telDONT}, uint16(2), false)
	f.Fuzz(func(t *testing.T, in []byte, cut uint16, bin bool) {
		at := int(cut) % (len(in) + 1)
		data, cmds := decodeAll(in, bin)
		data2, cmds2 := decodeAll(in, bin, at)
		if !bytes.Equal(data, data2) || !cmp.Equal(cmds, cmds2, cmp.AllowUnexported(telnetCommand{}), cmpEmpty) {
			t.Fatalf("decode(% x) = % x, %+v whole, % x, %+v cut at %d", in, data, cmds, data2, cmds2, at)
		}
		for _, c := range cmds {
			if c.verb != telSB || c.opt != optComPort {
				continue
			}
			r, err := parseComPortReply(c.data)
			if err != nil {
				continue
			}
			if back := encodeComPortReply(r); !bytes.Equal(back, c.data) {
				t.Fatalf("parseComPortReply(% x) = %+v, which encodes to % x", c.data, r, back)
			}
			sb := appendComPort(nil, r.code, c.data[1:])
			if _, got := decodeAll(sb, bin); len(got) != 1 || !bytes.Equal(got[0].data, c.data) {
				t.Fatalf("appendComPort(% x) decodes to %+v", c.data, got)
			}
		}
		esc := appendEscaped(nil, in, bin)
		if got, gotCmds := decodeAll(esc, bin, at); !bytes.Equal(got, in) || len(gotCmds) != 0 {
			t.Fatalf("decode(appendEscaped(% x)) = % x, %+v", in, got, gotCmds)
		}
	})
}

// fakeServer is the server's side of an RFC 2217 connection, scripted by
// a test.
type fakeServer struct {
	t    *testing.T
	c    net.Conn
	dec  telnetDecoder
	cmds []telnetCommand
	raw  []byte // every byte the client sent since the last reset
}

// serveRFC2217 runs script on each connection to a new listener and
// returns the listener's URL.
func serveRFC2217(t *testing.T, script func(s *fakeServer)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		script(&fakeServer{t: t, c: c, dec: telnetDecoder{binary: true}})
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return "rfc2217://" + ln.Addr().String()
}

// readUntil reads from the client until done holds, or the connection
// ends (then it reports false).
func (s *fakeServer) readUntil(done func() bool) bool {
	buf := make([]byte, 512)
	for !done() {
		n, err := s.c.Read(buf)
		s.raw = append(s.raw, buf[:n]...)
		s.dec.decode(buf[:n], nil, func(c telnetCommand) {
			c.data = slices.Clone(c.data)
			s.cmds = append(s.cmds, c)
		})
		if err != nil {
			return false
		}
	}
	return true
}

func (s *fakeServer) has(verb, opt byte) bool {
	return slices.ContainsFunc(s.cmds, func(c telnetCommand) bool { return c.verb == verb && c.opt == opt })
}

// comPort returns the value the client sent with com port command
// code, or nil.
func (s *fakeServer) comPort(code byte) []byte {
	for _, c := range s.cmds {
		if c.verb == telSB && c.opt == optComPort && len(c.data) > 0 && c.data[0] == code {
			return c.data[1:]
		}
	}
	return nil
}

func (s *fakeServer) send(b ...byte) { s.c.Write(b) }

func (s *fakeServer) answer(code byte, value ...byte) {
	s.send(appendComPort(nil, cpServer+code, value)...)
}

// negotiate plays a server's part until the client has set the line,
// answering with baud and 8N1.
func (s *fakeServer) negotiate(baud uint32, extra ...byte) bool {
	if !s.readUntil(func() bool { return s.has(telWILL, optComPort) }) {
		return false
	}
	s.send(append([]byte{telIAC, telDO, optComPort}, extra...)...)
	if !s.readUntil(func() bool { return s.comPort(cpSetStopSize) != nil }) {
		return false
	}
	s.answer(cpSetBaudRate, binary.BigEndian.AppendUint32(nil, baud)...)
	s.answer(cpSetDataSize, 8)
	s.answer(cpSetParity, cpParityNone)
	s.answer(cpSetStopSize, cpStopOne)
	return true
}

// The client sets the line as asked and refuses a server that does not
// set it so.
func TestRFC2217Negotiation(t *testing.T) {
	for _, tt := range []struct {
		name    string
		script  func(s *fakeServer)
		wantErr string
		wait    time.Duration // for the client's negotiation; default 10 s
	}{
		{name: "refused", wantErr: "refuses RFC 2217", script: func(s *fakeServer) {
			s.readUntil(func() bool { return s.has(telWILL, optComPort) })
			s.send(telIAC, telDONT, optComPort)
			s.readUntil(func() bool { return false })
		}},
		{name: "other rate", wantErr: "baud rate 9600, not 115200", script: func(s *fakeServer) {
			s.negotiate(9600)
			s.readUntil(func() bool { return false })
		}},
		{name: "malformed answer", wantErr: "broke RFC 2217: RFC 2217: com port command 101 carries 3 bytes, want 4", script: func(s *fakeServer) {
			s.readUntil(func() bool { return s.has(telWILL, optComPort) })
			s.send(telIAC, telDO, optComPort)
			s.readUntil(func() bool { return s.comPort(cpSetBaudRate) != nil })
			s.answer(cpSetBaudRate, 0, 1, 0xc2)
			s.readUntil(func() bool { return false })
		}},
		{name: "silent", wantErr: "RFC 2217", wait: 300 * time.Millisecond, script: func(s *fakeServer) {
			s.readUntil(func() bool { return false })
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			url := serveRFC2217(t, tt.script)
			if tt.wait == 0 {
				tt.wait = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), tt.wait)
			defer cancel()
			p, err := OpenNetPort(ctx, url, 115200)
			if err == nil {
				p.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || errors.Is(err, ErrNoPort) {
				t.Errorf("OpenNetPort(%s) = %v; want an error saying %q", url, err, tt.wantErr)
			}
		})
	}
}

// After the negotiation: the client sets the line to the rate, 8N1, no
// flow control; refuses options it does not know; undoes Telnet's
// escaping both ways outside binary mode; and holds its data while the
// server suspends the flow.
func TestRFC2217Session(t *testing.T) {
	got := make(chan []byte, 1)
	errs := make(chan string, 10)
	resume := make(chan struct{})
	url := serveRFC2217(t, func(s *fakeServer) {
		// The server refuses binary both ways, asks for echo and a
		// terminal type.
		if !s.negotiate(921600, telIAC, telWONT, optBinary, telIAC, telDONT, optBinary, telIAC, telWILL, 1, telIAC, telDO, 24) {
			errs <- "the client hung up during the negotiation"
			return
		}
		if v := s.comPort(cpSetBaudRate); !bytes.Equal(v, []byte{0, 0x0e, 0x10, 0}) {
			errs <- "SET-BAUDRATE " + string(v)
		}
		for code, want := range map[byte]byte{cpSetDataSize: 8, cpSetParity: cpParityNone, cpSetStopSize: cpStopOne} {
			if v := s.comPort(code); !bytes.Equal(v, []byte{want}) {
				errs <- "com port setting wrong"
			}
		}
		var controls []byte
		for _, c := range s.cmds {
			if c.verb == telSB && len(c.data) == 2 && c.data[0] == cpSetControl {
				controls = append(controls, c.data[1])
			}
		}
		if !bytes.Contains(controls, []byte{cpNoFlowOut, cpNoFlowIn}) {
			errs <- "no flow control not asked"
		}
		if !s.readUntil(func() bool { return s.has(telDONT, 1) && s.has(telWONT, 24) }) {
			errs <- "the client did not refuse echo and terminal type"
		}
		s.send([]byte("a\xff\xffb\r\x00c")...)
		s.raw = nil
		s.readUntil(func() bool { return bytes.Contains(s.raw, []byte("x\r\x00y\xff\xff")) })
		s.raw = nil
		s.send(append(appendComPort(nil, cpServer+cpFlowSuspend, nil), 'S')...)
		<-resume
		if len(s.raw) > 0 {
			errs <- "data came while the flow was suspended: " + string(s.raw)
		}
		s.send(append(appendComPort(nil, cpServer+cpFlowResume, nil), 'R')...)
		s.readUntil(func() bool { return bytes.Contains(s.raw, []byte("held")) })
		got <- s.raw
		s.readUntil(func() bool { return false })
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := OpenNetPort(ctx, url, 921600)
	if err != nil {
		t.Fatalf("OpenNetPort: %v", err)
	}
	defer p.Close()
	read := func(want string) {
		t.Helper()
		buf := make([]byte, len(want))
		n := 0
		for n < len(buf) {
			m, err := p.Read(buf[n:])
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			n += m
		}
		if string(buf) != want {
			t.Errorf("Read = %q, want %q", buf, want)
		}
	}
	read("a\xffb\rc") // IAC undoubled, CR NUL made CR
	if _, err := p.Write([]byte("x\ry\xff")); err != nil {
		t.Fatalf("Write: %v", err)
	}
	read("S") // the suspension has come
	wrote := make(chan error, 1)
	go func() {
		_, err := p.Write([]byte("held"))
		wrote <- err
	}()
	select {
	case err := <-wrote:
		t.Fatalf("Write while the server suspended the flow returned %v, want it held", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(resume)
	read("R") // the resumption has come
	if err := <-wrote; err != nil {
		t.Fatalf("Write after the resume: %v", err)
	}
	if raw := <-got; !bytes.Contains(raw, []byte("held")) {
		t.Errorf("the server got %q, want the held data", raw)
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
