package flasher

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// Serial framing of SMP packets (Zephyr "SMP transport: serial"; the
// mcumgr "smp-console" document).
//
// A packet is len(2, big-endian) | SMP message | CRC16, where len counts the
// SMP message and the CRC. The packet is base64 encoded and cut into lines.
// A line is at most MaxLine bytes including its 2-byte marker and the
// terminating newline, which leaves 124 base64 characters (93 raw bytes).
// The first line of a packet starts with 0x06 0x09, continuation lines with
// 0x04 0x14.
const (
	// MaxLine is the longest line, marker and newline included, that a
	// stock MCUmgr serial transport accepts.
	MaxLine = 127

	lineChars = MaxLine - 3       // base64 characters per line
	lineRaw   = lineChars / 4 * 3 // raw bytes per full line
	maxPacket = 1<<16 - 1         // the length field is 16 bits
	crcLen    = 2                 // CRC-16 after the message
	lenLen    = 2                 // length field before the message
	pktExtra  = lenLen + crcLen   // framing bytes around a message
)

var (
	markerStart = [2]byte{0x06, 0x09}
	markerCont  = [2]byte{0x04, 0x14}
)

// Framing errors. A decoder that returns one of them has dropped the packet
// it was assembling and is ready for the next one.
var (
	// ErrFrameCRC means a packet arrived whole but its CRC did not match.
	ErrFrameCRC = errors.New("smp frame: crc mismatch")
	// ErrFrameEncoding means a line held bytes that are not base64.
	ErrFrameEncoding = errors.New("smp frame: bad base64")
	// ErrFrameLength means the length field was impossible (shorter than a
	// CRC, longer than the receiver's buffer) or more bytes arrived than it
	// announced.
	ErrFrameLength = errors.New("smp frame: bad length")
	// ErrLineTooLong means a line exceeded the receiver's line limit.
	ErrLineTooLong = errors.New("smp frame: line too long")
)

// CRC16 returns the CRC-16/XMODEM (polynomial 0x1021, initial value 0, no
// reflection, no final XOR) of b.
func CRC16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// FrameLen returns how many bytes AppendFrame writes for a message of n
// bytes: the on-the-wire cost of sending it.
func FrameLen(n int) int {
	raw := n + pktExtra
	chars := base64.StdEncoding.EncodedLen(raw)
	lines := (chars + lineChars - 1) / lineChars
	return chars + 3*lines
}

// MaxMessage is the longest SMP message a packet can carry: the packet's
// 16-bit length field counts the message and its CRC.
const MaxMessage = maxPacket - crcLen

// AppendFrame appends msg, framed for the serial line, to dst. A message
// longer than MaxMessage cannot be framed: AppendFrame returns dst
// unchanged and an error wrapping ErrFrameLength.
func AppendFrame(dst, msg []byte) ([]byte, error) {
	if len(msg) > MaxMessage {
		return dst, fmt.Errorf("%w: message of %d bytes, a packet holds at most %d", ErrFrameLength, len(msg), MaxMessage)
	}
	raw := make([]byte, 0, len(msg)+pktExtra)
	raw = binary.BigEndian.AppendUint16(raw, uint16(len(msg)+crcLen))
	raw = append(raw, msg...)
	raw = binary.BigEndian.AppendUint16(raw, CRC16(msg))

	for i := 0; i < len(raw); i += lineRaw {
		chunk := raw[i:min(i+lineRaw, len(raw))]
		if i == 0 {
			dst = append(dst, markerStart[:]...)
		} else {
			dst = append(dst, markerCont[:]...)
		}
		dst = base64.StdEncoding.AppendEncode(dst, chunk)
		dst = append(dst, '\n')
	}
	return dst, nil
}

// LineKind tells what a line of serial input is.
type LineKind int

const (
	// LineOther is console output or noise: not an SMP line.
	LineOther LineKind = iota
	// LineStart begins a packet.
	LineStart
	// LineCont continues a packet.
	LineCont
)

// ClassifyLine tells whether line (without its newline) is an SMP start
// line, a continuation line or something else.
func ClassifyLine(line []byte) LineKind {
	switch {
	case len(line) >= 2 && line[0] == markerStart[0] && line[1] == markerStart[1]:
		return LineStart
	case len(line) >= 2 && line[0] == markerCont[0] && line[1] == markerCont[1]:
		return LineCont
	}
	return LineOther
}

// Decoder reassembles SMP messages from serial lines. It accepts base64
// that is padded per line (as Zephyr sends it) and base64 that was encoded
// whole and cut anywhere. The zero value accepts packets up to the 16-bit
// limit and lines of any length. A Decoder is not safe for concurrent use.
type Decoder struct {
	// MaxPacket, if not zero, is the largest message (SMP header and body)
	// accepted; a packet announcing more is dropped with ErrFrameLength.
	MaxPacket int
	// MaxLine, if not zero, is the longest line accepted, newline included;
	// a longer line is dropped with ErrLineTooLong and, like a stock board,
	// the packet it belonged to is dropped too.
	MaxLine int

	active  bool
	want    int    // packet bytes after the length field; -1 until known
	pending []byte // base64 characters not yet decoded
	raw     []byte // decoded bytes, length field included
	cut     bool   // a packet was abandoned for the next one
}

// Reset drops any packet being assembled.
func (d *Decoder) Reset() {
	d.active = false
	d.want = -1
	d.pending = d.pending[:0]
	d.raw = d.raw[:0]
}

// Cut reports whether, since it was last called, a packet was abandoned
// unfinished because another one started: a line of it was lost.
func (d *Decoder) Cut() bool {
	cut := d.cut
	d.cut = false
	return cut
}

// InPacket reports whether a packet has been started and not finished.
func (d *Decoder) InPacket() bool { return d.active }

// Announced returns the message length (SMP header and body) the packet
// being assembled announced, or -1 before its length is known or outside
// a packet.
func (d *Decoder) Announced() int {
	if !d.active || d.want < 0 {
		return -1
	}
	return d.want - crcLen
}

// Line feeds one line, without its trailing newline (a trailing '\r' is
// ignored). It returns the SMP message when the line completes a packet,
// (nil, nil) when more lines are needed or the line is not part of a
// packet, and a framing error when the packet being assembled is dropped.
// The returned message is a copy that the caller owns.
func (d *Decoder) Line(line []byte) ([]byte, error) {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	kind := ClassifyLine(line)
	if d.MaxLine > 0 && len(line)+1 > d.MaxLine && kind != LineOther {
		wasActive := d.active
		d.Reset()
		if kind == LineStart || wasActive {
			return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrLineTooLong, len(line)+1, d.MaxLine)
		}
		return nil, nil
	}
	switch kind {
	case LineStart:
		cut := d.active
		d.Reset()
		d.active = true
		d.cut = d.cut || cut
	case LineCont:
		if !d.active {
			return nil, nil // a continuation of a packet we never saw
		}
	default:
		return nil, nil
	}
	d.pending = append(d.pending, line[2:]...)
	if err := d.decodePending(); err != nil {
		d.Reset()
		return nil, err
	}
	if d.want < 0 && len(d.raw) >= lenLen {
		d.want = int(binary.BigEndian.Uint16(d.raw))
		if d.want < crcLen || (d.MaxPacket > 0 && d.want-crcLen > d.MaxPacket) {
			n := d.want
			d.Reset()
			return nil, fmt.Errorf("%w: packet announces %d bytes", ErrFrameLength, n)
		}
	}
	if d.want < 0 {
		return nil, nil
	}
	got := len(d.raw) - lenLen
	switch {
	case got < d.want:
		return nil, nil
	case got > d.want || len(d.pending) > 0:
		d.Reset()
		return nil, fmt.Errorf("%w: more bytes than announced", ErrFrameLength)
	}
	body := d.raw[lenLen:]
	if CRC16(body) != 0 { // CRC over message and CRC is zero when they agree
		d.Reset()
		return nil, ErrFrameCRC
	}
	msg := make([]byte, len(body)-crcLen) // not nil, even when empty
	copy(msg, body)
	d.Reset()
	return msg, nil
}

// decodePending decodes every complete 4-character group of pending. A
// group with padding ends a run, so per-line padding decodes too.
func (d *Decoder) decodePending() error {
	n := len(d.pending) / 4 * 4
	start := 0
	for i := 0; i < n; i += 4 {
		if d.pending[i+3] != '=' && i+4 < n {
			continue
		}
		var err error
		d.raw, err = base64.StdEncoding.AppendDecode(d.raw, d.pending[start:i+4])
		if err != nil {
			return fmt.Errorf("%w: %v", ErrFrameEncoding, err)
		}
		start = i + 4
	}
	d.pending = append(d.pending[:0], d.pending[n:]...)
	return nil
}
