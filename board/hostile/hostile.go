// Package hostile is a board that lies: an SMP server on a pseudo-terminal
// (or any byte stream) whose every answer a test scripts, for checking
// that a station survives what a broken firmware or an attacker's board
// sends. Left alone it answers as a minimal honest board of the
// provisioning group does (params, identity, file upload, hash and
// status, commit, echo); a test replaces the answer to any command, or
// all of them, with bytes of its choosing: oversized parameters, huge
// lengths, garbage, slow drips, endless lines.
//
// It is test equipment, like package board, and not a reference for
// firmware authors: see package board for that.
package hostile

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"zerotouch/flasher"
	"zerotouch/internal/rawpty"
)

// Reply is what the board does with one request: Answer may write
// anything to w (framed answers, garbage, nothing), for as long as it
// likes; it should return once stop is closed or a write fails.
type Reply func(stop <-chan struct{}, req flasher.Message, w io.Writer)

// Key names a command of a group.
type Key struct {
	Group uint16
	ID    uint8
}

// Commands of interest, as Keys.
var (
	Params   = Key{flasher.GroupOS, flasher.CmdOSParams}
	Echo     = Key{flasher.GroupOS, flasher.CmdOSEcho}
	Identity = Key{flasher.GroupProvisioning, flasher.CmdProvIdentity}
	TPM      = Key{flasher.GroupProvisioning, flasher.CmdProvTPM}
	Keygen   = Key{flasher.GroupProvisioning, flasher.CmdProvKeygen}
	Commit   = Key{flasher.GroupProvisioning, flasher.CmdProvCommit}
	File     = Key{flasher.GroupFS, flasher.CmdFSFile}
	Status   = Key{flasher.GroupFS, flasher.CmdFSStatus}
	Hash     = Key{flasher.GroupFS, flasher.CmdFSHash}
	Image    = Key{flasher.GroupImage, flasher.CmdImageUpload}
)

// Board is a hostile board. Its methods are safe for concurrent use.
type Board struct {
	master *os.File
	tty    *os.File
	rw     io.ReadWriter
	stop   chan struct{}
	done   chan struct{}
	once   sync.Mutex

	mu        sync.Mutex
	serial    string
	replies   map[Key]Reply
	any       Reply // for every command, before replies
	files     map[string][]byte
	committed bool
	requests  int
}

// New serves the hostile board on rw (an in-memory pipe, say) until Close.
func New(serial string, rw io.ReadWriter) *Board {
	b := &Board{rw: rw, serial: serial, replies: map[Key]Reply{}, files: map[string][]byte{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go b.serve()
	return b
}

// Start serves the hostile board on a new pseudo-terminal; Path names the
// station's side.
func Start(serial string) (*Board, error) {
	master, tty, err := rawpty.Open()
	if err != nil {
		return nil, fmt.Errorf("hostile board %s: %w", serial, err)
	}
	b := New(serial, master)
	b.master, b.tty = master, tty
	return b, nil
}

// Path returns the pseudo-terminal's path for the station ("" for New).
func (b *Board) Path() string {
	if b.tty == nil {
		return ""
	}
	return b.tty.Name()
}

// Close stops the board.
func (b *Board) Close() error {
	b.once.Lock()
	defer b.once.Unlock()
	select {
	case <-b.stop:
		return nil
	default:
	}
	close(b.stop)
	if b.master != nil {
		b.master.Close()
	}
	if c, ok := b.rw.(io.Closer); ok && b.master == nil {
		c.Close()
	}
	<-b.done
	if b.tty != nil {
		b.tty.Close()
	}
	return nil
}

// On replaces the board's answer to command k.
func (b *Board) On(k Key, r Reply) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.replies[k] = r
}

// OnAny answers every command with r.
func (b *Board) OnAny(r Reply) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.any = r
}

// Committed reports whether the station committed a configuration.
func (b *Board) Committed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.committed
}

// Requests returns how many requests the board has taken.
func (b *Board) Requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.requests
}

func (b *Board) serve() {
	defer close(b.done)
	var dec flasher.Decoder
	buf := make([]byte, 4096)
	var line []byte
	for {
		n, err := b.rw.Read(buf)
		for _, c := range buf[:n] {
			if c != '\n' {
				if len(line) < 1<<16 {
					line = append(line, c)
				}
				continue
			}
			msg, _ := dec.Line(line)
			line = line[:0]
			if msg == nil {
				continue
			}
			m, err := flasher.ParseMessage(msg)
			if err != nil || m.Op.IsResponse() {
				continue
			}
			b.answer(m)
		}
		if err != nil {
			return
		}
		select {
		case <-b.stop:
			return
		default:
		}
	}
}

func (b *Board) answer(m flasher.Message) {
	b.mu.Lock()
	b.requests++
	r := b.any
	if r == nil {
		r = b.replies[Key{m.Group, m.ID}]
	}
	b.mu.Unlock()
	if r == nil {
		r = b.honest
	}
	r(b.stop, m, b.rw)
}

// honest answers as a minimal board of the provisioning group does.
func (b *Board) honest(_ <-chan struct{}, m flasher.Message, w io.Writer) {
	var body any
	switch (Key{m.Group, m.ID}) {
	case Params:
		body = map[string]any{"buf_size": 1024, "buf_count": 4}
	case Echo:
		var req struct {
			D string `cbor:"d"`
		}
		flasher.DecodeBody(m.Body, &req)
		body = map[string]any{"r": req.D}
	case Identity:
		body = map[string]any{"serial": b.serial, "model": "hostile", "hw": "1", "fw": "1.0.0", "caps": []string{"fs"}}
	case File:
		body = b.fileWrite(m)
	case Status:
		var req struct {
			Name string `cbor:"name"`
		}
		flasher.DecodeBody(m.Body, &req)
		b.mu.Lock()
		data, ok := b.files[req.Name]
		b.mu.Unlock()
		if !ok {
			body = map[string]any{"err": map[string]any{"group": flasher.GroupFS, "rc": flasher.FSRCFileNotFound}}
		} else {
			body = map[string]any{"len": len(data)}
		}
	case Hash:
		var req struct {
			Name string `cbor:"name"`
		}
		flasher.DecodeBody(m.Body, &req)
		b.mu.Lock()
		data := b.files[req.Name]
		b.mu.Unlock()
		sum := sha256.Sum256(data)
		body = map[string]any{"type": "sha256", "off": 0, "len": len(data), "output": sum[:]}
	case Commit:
		b.mu.Lock()
		b.committed = true
		b.mu.Unlock()
		body = map[string]any{}
	default:
		body = map[string]any{"rc": int(flasher.RCNotSupported)}
	}
	w.Write(Frame(m, body))
}

func (b *Board) fileWrite(m flasher.Message) any {
	var req struct {
		Off  int    `cbor:"off"`
		Data []byte `cbor:"data"`
		Name string `cbor:"name"`
	}
	if err := flasher.DecodeBody(m.Body, &req); err != nil {
		return map[string]any{"rc": int(flasher.RCInvalid)}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.files[req.Name]
	if req.Off == 0 {
		old = nil
	}
	if req.Off != len(old) {
		return map[string]any{"err": map[string]any{"group": flasher.GroupFS, "rc": flasher.FSRCFileOffset}}
	}
	b.files[req.Name] = append(old, req.Data...)
	b.committed = false
	return map[string]any{"off": req.Off + len(req.Data)}
}

// Frame encodes body as the answer to req and frames it for the line. A
// body too long for a packet is sent as its first 65,533 bytes.
func Frame(req flasher.Message, body any) []byte {
	h := req.Header
	h.Op = h.Op.Response()
	msg, err := flasher.EncodeMessage(h, body)
	if err != nil {
		panic(fmt.Sprintf("hostile: encode answer: %v", err))
	}
	return FrameRaw(msg)
}

// FrameRaw frames msg, cut to what a packet holds.
func FrameRaw(msg []byte) []byte {
	msg = msg[:min(len(msg), flasher.MaxMessage)]
	out, err := flasher.AppendFrame(nil, msg)
	if err != nil {
		panic(err)
	}
	return out
}

// Answer replies with body, framed as the answer to the request.
func Answer(body any) Reply {
	return func(_ <-chan struct{}, req flasher.Message, w io.Writer) {
		w.Write(Frame(req, body))
	}
}

// Bodies answers with raw SMP bodies, not necessarily CBOR: the first
// request gets first, every later one rest, each in a well-framed
// answer to its request.
func Bodies(first, rest []byte) Reply {
	var mu sync.Mutex
	n := 0
	return func(_ <-chan struct{}, req flasher.Message, w io.Writer) {
		mu.Lock()
		body := rest
		if n == 0 {
			body = first
		}
		n++
		mu.Unlock()
		h := req.Header
		h.Op = h.Op.Response()
		body = body[:min(len(body), flasher.MaxMessage-flasher.HeaderLen)]
		h.Len = uint16(len(body))
		msg, _ := h.AppendBinary(nil)
		w.Write(FrameRaw(append(msg, body...)))
	}
}

// Raw replies with data as it is, framing and all.
func Raw(data []byte) Reply {
	return func(_ <-chan struct{}, _ flasher.Message, w io.Writer) { w.Write(data) }
}

// Silent never answers.
func Silent() Reply { return func(<-chan struct{}, flasher.Message, io.Writer) {} }

// Drip sends what r would send one byte every interval.
func Drip(r Reply, every time.Duration) Reply {
	return func(stop <-chan struct{}, req flasher.Message, w io.Writer) {
		pr, pw := io.Pipe()
		go func() {
			r(stop, req, pw)
			pw.Close()
		}()
		defer pr.Close()
		one := make([]byte, 1)
		for {
			if _, err := io.ReadFull(pr, one); err != nil {
				return
			}
			if _, err := w.Write(one); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
		}
	}
}

// Endless writes chunk again and again until stop or a failed write.
func Endless(chunk []byte) Reply {
	return func(stop <-chan struct{}, _ flasher.Message, w io.Writer) {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
}
