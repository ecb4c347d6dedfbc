package flasher

import (
	"bytes"
	"testing"
)

func fuzzSeeds(f *testing.F) {
	f.Add([]byte(goldenLine))
	f.Add(mustFrame(nil, make([]byte, 300)))
	f.Add(append([]byte("*** Booting Zephyr OS ***\r\n"), mustFrame(nil, []byte("abc"))...))
	f.Add([]byte("\x06\x09\n\x04\x14AAAA\n"))
	f.Add([]byte("\x06\x09AB==CD==\n"))
	f.Add([]byte{})
}

// FuzzDecoder feeds arbitrary serial input to a decoder set up as the
// client's: it must not panic, and whatever it returns as a message must
// survive being framed and decoded again.
func FuzzDecoder(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		d := Decoder{MaxLine: MaxLine, MaxPacket: 4092}
		for _, line := range bytes.Split(input, []byte("\n")) {
			msg, err := d.Line(line)
			if err != nil && msg != nil {
				t.Fatalf("Line returned both a message and %v", err)
			}
			if msg == nil {
				continue
			}
			if len(msg) > 4092 {
				t.Fatalf("message of %d bytes passed a 4092-byte limit", len(msg))
			}
			var again Decoder
			got := decodeFrame(t, &again, mustFrame(nil, msg))
			if len(got) != 1 || !bytes.Equal(got[0], msg) {
				t.Fatalf("message %x does not survive a second framing", msg)
			}
		}
	})
}

// FuzzFrameRoundTrip checks that every message frames into lines within
// the limit and decodes back to itself.
func FuzzFrameRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("hello"))
	f.Add(make([]byte, 93))
	f.Add(make([]byte, 1000))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) > maxPacket-crcLen {
			return
		}
		frame := mustFrame(nil, msg)
		for _, line := range bytes.SplitAfter(frame, []byte("\n")) {
			if len(line) > MaxLine {
				t.Fatalf("line of %d bytes", len(line))
			}
		}
		d := Decoder{MaxLine: MaxLine}
		got := decodeFrame(t, &d, frame)
		if len(got) != 1 || !bytes.Equal(got[0], msg) {
			t.Fatalf("round trip of %d bytes failed", len(msg))
		}
	})
}

// FuzzMessage parses arbitrary messages and bodies as the client does with
// a board's answer: no panic, and a parsed header encodes back the same.
func FuzzMessage(f *testing.F) {
	msg, _ := EncodeMessage(Header{Version: Version2, Op: OpReadRsp, Group: GroupFS, Seq: 9, ID: CmdFSHash},
		map[string]any{"type": "sha256", "output": make([]byte, 32), "len": 5})
	f.Add(msg)
	msg, _ = EncodeMessage(Header{Op: OpWriteRsp, Group: GroupImage}, map[string]any{"err": map[string]int{"group": 1, "rc": 3}})
	f.Add(msg)
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 0xbf})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		if err != nil {
			return
		}
		h, _ := m.Header.AppendBinary(nil)
		want := bytes.Clone(b[:HeaderLen])
		want[0] &= 0x1f // the top three bits are reserved
		if !bytes.Equal(h, want) {
			t.Fatalf("header % x encodes back as % x", b[:HeaderLen], h)
		}
		_ = statusError(m.Header.String(), m.Body)
		var rsp struct {
			Off    *int   `cbor:"off"`
			Data   []byte `cbor:"data"`
			Images []ImageState
		}
		_ = DecodeBody(m.Body, &rsp)
	})
}

// FuzzParseImage reads arbitrary files as MCUboot images.
func FuzzParseImage(f *testing.F) {
	f.Add(BuildImage(ImageVersion{1, 2, 3, 4}, []byte("body")))
	f.Add(make([]byte, 40))
	f.Fuzz(func(t *testing.T, img []byte) {
		info, err := ParseImage(img)
		if err != nil {
			return
		}
		if info.Size > len(img) || len(info.Hash) != 32 {
			t.Fatalf("ParseImage accepted %d bytes as %+v", len(img), info)
		}
	})
}
