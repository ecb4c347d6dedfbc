package flasher

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The v1 echo of "hi" with sequence number 0x42, as the SMP specification
// lays it out: 8-byte header, CBOR {"d":"hi"}, then length, CRC-16/XMODEM
// and base64 on one start line.
const (
	goldenMsg  = "0200000600004200a1616462686" + "9"
	goldenLine = "\x06\x09ABACAAAGAABCAKFhZGJoaXBh\n"
)

func TestGoldenEcho(t *testing.T) {
	msg, err := EncodeMessage(Header{Version: Version1, Op: OpWrite, Group: GroupOS, Seq: 0x42, ID: CmdOSEcho}, map[string]string{"d": "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(msg); got != goldenMsg {
		t.Errorf("message = %s, want %s", got, goldenMsg)
	}
	if got := CRC16(msg); got != 0x7061 {
		t.Errorf("CRC16 = %#04x, want 0x7061", got)
	}
	if got := string(mustFrame(nil, msg)); got != goldenLine {
		t.Errorf("frame = %q, want %q", got, goldenLine)
	}
	var d Decoder
	got, err := d.Line([]byte(strings.TrimSuffix(goldenLine, "\n")))
	if err != nil || !bytes.Equal(got, msg) {
		t.Errorf("Decoder.Line(golden) = %x, %v; want %x", got, err, msg)
	}
}

func TestCRC16(t *testing.T) {
	// The standard check value of CRC-16/XMODEM.
	if got := CRC16([]byte("123456789")); got != 0x31c3 {
		t.Errorf("CRC16(123456789) = %#04x, want 0x31c3", got)
	}
}

// decodeFrame feeds a whole frame, line by line, to d.
func decodeFrame(t testing.TB, d *Decoder, frame []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for _, line := range bytes.SplitAfter(frame, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if line[len(line)-1] != '\n' {
			t.Fatalf("frame does not end in a newline: %q", line)
		}
		msg, err := d.Line(line[:len(line)-1])
		if err != nil {
			t.Fatalf("Decoder.Line: %v", err)
		}
		if msg != nil {
			out = append(out, append([]byte(nil), msg...))
		}
	}
	return out
}

func TestFrameRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 8, 89, 90, 91, 92, 93, 94, 95, 96, 180, 183, 186, 1000, 4092, maxPacket - crcLen} {
		msg := make([]byte, n)
		for i := range msg {
			msg[i] = byte(i * 7)
		}
		frame := mustFrame(nil, msg)
		if len(frame) != FrameLen(n) {
			t.Errorf("len(mustFrame(%d bytes)) = %d, FrameLen says %d", n, len(frame), FrameLen(n))
		}
		for i, line := range bytes.SplitAfter(frame, []byte("\n")) {
			if len(line) > MaxLine {
				t.Errorf("%d bytes: line %d is %d bytes, over %d", n, i, len(line), MaxLine)
			}
			if len(line) > 0 && (i == 0) != (ClassifyLine(line) == LineStart) {
				t.Errorf("%d bytes: line %d has marker % x", n, i, line[:2])
			}
		}
		d := Decoder{MaxLine: MaxLine}
		got := decodeFrame(t, &d, frame)
		if len(got) != 1 || !bytes.Equal(got[0], msg) {
			t.Errorf("%d bytes: decoded %d messages, first differs", n, len(got))
		}
	}
}

func TestDecoderBetweenConsoleOutput(t *testing.T) {
	a := bytes.Repeat([]byte{0xaa}, 300)
	b := []byte{1, 2, 3}
	var stream []byte
	stream = append(stream, "uart:~$ *** Booting Zephyr OS ***\r\n"...)
	stream = mustFrame(stream, a)
	stream = append(stream, "[00:00:01.000,000] <inf> app: hello\r\n"...)
	stream = mustFrame(stream, b)
	var d Decoder
	var got [][]byte
	for _, line := range bytes.Split(stream, []byte("\n")) {
		msg, err := d.Line(line)
		if err != nil {
			t.Fatalf("Line(%q): %v", line, err)
		}
		if msg != nil {
			got = append(got, append([]byte(nil), msg...))
		}
	}
	if diff := cmp.Diff([][]byte{a, b}, got); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
}

// TestDecoderWholeBase64 checks a packet encoded as one base64 string and
// cut into lines anywhere, as some clients send it.
func TestDecoderWholeBase64(t *testing.T) {
	msg := bytes.Repeat([]byte("0123456789"), 40)
	pkt := append([]byte{byte((len(msg) + 2) >> 8), byte(len(msg) + 2)}, msg...)
	crc := CRC16(msg)
	pkt = append(pkt, byte(crc>>8), byte(crc))
	enc := []byte(base64.StdEncoding.EncodeToString(pkt))
	var frame []byte
	for i := 0; i < len(enc); i += 50 {
		marker := markerCont
		if i == 0 {
			marker = markerStart
		}
		frame = append(frame, marker[:]...)
		frame = append(frame, enc[i:min(i+50, len(enc))]...)
		frame = append(frame, '\n')
	}
	var d Decoder
	got := decodeFrame(t, &d, frame)
	if len(got) != 1 || !bytes.Equal(got[0], msg) {
		t.Fatalf("decoded %d messages, want the one sent", len(got))
	}
}

func TestDecoderErrors(t *testing.T) {
	good := mustFrame(nil, []byte("a message of some length"))
	flip := func(i int) []byte {
		f := bytes.Clone(good)
		f[i] ^= 0x01
		return f
	}
	long := mustFrame(nil, make([]byte, 500))
	long = bytes.ReplaceAll(long, []byte("\n\x04\x14"), nil) // lines joined
	for _, tc := range []struct {
		name  string
		dec   Decoder
		frame []byte
		want  error
	}{
		{"bad CRC", Decoder{}, flip(len(good) - 4), ErrFrameCRC},
		{"bad base64", Decoder{}, append([]byte{6, 9}, "AB!D\n"...), ErrFrameEncoding},
		{"line too long", Decoder{MaxLine: MaxLine}, long, ErrLineTooLong},
		{"packet too large", Decoder{MaxPacket: 10}, good, ErrFrameLength},
		{"length too short", Decoder{}, append([]byte{6, 9}, base64.StdEncoding.EncodeToString([]byte{0, 1, 0})+"\n"...), ErrFrameLength},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.dec
			var err error
			for _, line := range bytes.SplitAfter(tc.frame, []byte("\n")) {
				if len(line) == 0 {
					continue
				}
				var msg []byte
				msg, err = d.Line(bytes.TrimSuffix(line, []byte("\n")))
				if msg != nil {
					t.Fatalf("decoded a message from a bad frame")
				}
				if err != nil {
					break
				}
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %v, want %v", err, tc.want)
			}
			// The decoder is ready for the next, good frame.
			if got := decodeFrame(t, &d, mustFrame(nil, []byte("ok"))); len(got) != 1 {
				t.Errorf("after the error, a good frame gave %d messages", len(got))
			}
		})
	}
}

func TestDecoderCut(t *testing.T) {
	two := mustFrame(nil, make([]byte, 200))
	lines := bytes.SplitAfter(two, []byte("\n"))
	var d Decoder
	if _, err := d.Line(bytes.TrimSuffix(lines[0], []byte("\n"))); err != nil {
		t.Fatal(err)
	}
	if d.Cut() {
		t.Fatalf("Cut() after a start line")
	}
	// The rest of the packet is lost; the next one starts.
	if got := decodeFrame(t, &d, mustFrame(nil, []byte("next"))); len(got) != 1 || string(got[0]) != "next" {
		t.Fatalf("next packet after a cut one: %q", got)
	}
	if !d.Cut() {
		t.Errorf("Cut() = false after a packet was abandoned")
	}
	if d.Cut() {
		t.Errorf("Cut() stays true after being read")
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Version: Version1, Op: OpRead, Group: GroupOS, Seq: 0, ID: CmdOSParams},
		{Version: Version2, Op: OpWriteRsp, Flags: 0x5a, Len: 0xfffe, Group: GroupProvisioning, Seq: 255, ID: CmdProvCommit},
	} {
		b, _ := h.AppendBinary(nil)
		if len(b) != HeaderLen {
			t.Fatalf("header is %d bytes", len(b))
		}
		got, err := ParseHeader(b)
		if err != nil || got != h {
			t.Errorf("ParseHeader(AppendBinary(%+v)) = %+v, %v", h, got, err)
		}
	}
	if _, err := ParseHeader(make([]byte, 7)); !errors.Is(err, ErrHeader) {
		t.Errorf("ParseHeader(7 bytes) error = %v, want ErrHeader", err)
	}
	msg, _ := EncodeMessage(Header{Group: GroupFS}, map[string]int{"off": 5})
	if _, err := ParseMessage(msg[:len(msg)-1]); !errors.Is(err, ErrHeader) {
		t.Errorf("ParseMessage(short body) error = %v, want ErrHeader", err)
	}
}

func TestStatusError(t *testing.T) {
	enc := func(v any) []byte {
		b, err := cborEnc.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		body []byte
		is   error
		ok   bool
	}{
		{"empty", nil, nil, true},
		{"rc 0", enc(map[string]int{"rc": 0}), nil, true},
		{"v1 not supported", enc(map[string]int{"rc": 8}), ErrNotSupported, false},
		{"v1 no entry", enc(map[string]int{"rc": 5}), ErrNotFound, false},
		{"v2 fs not found", enc(map[string]any{"err": map[string]int{"group": 8, "rc": FSRCFileNotFound}}), ErrNotFound, false},
		{"v2 image too large", enc(map[string]any{"err": map[string]int{"group": 1, "rc": ImgRCTooLarge}}), ErrNoSpace, false},
		{"v2 commit mismatch", enc(map[string]any{"err": map[string]int{"group": int(GroupProvisioning), "rc": ProvRCConfigMismatch}}), ErrMismatch, false},
		{"not a map", []byte{0x01}, ErrProtocol, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := statusError("x.y", tc.body)
			if tc.ok {
				if err != nil {
					t.Fatalf("statusError = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tc.is) {
				t.Fatalf("statusError = %v, want %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), "x.y") {
				t.Errorf("error %q does not name the command", err)
			}
		})
	}
}

func TestParseMatch(t *testing.T) {
	for _, tc := range []struct {
		rule string
		want Match
		err  bool
	}{
		{rule: "/dev/ttyACM0", want: Match{Path: "/dev/ttyACM0"}},
		{rule: "usb-ZEPHYR_Board_E661-if00", want: Match{Path: "/dev/serial/by-id/usb-ZEPHYR_Board_E661-if00"}},
		{rule: "2FE3:0100", want: Match{VID: "2fe3", PID: "0100"}},
		{rule: "vid=2fe3, usb-serial=E6614103", want: Match{VID: "2fe3", Serial: "E6614103"}},
		{rule: "pid=0100", want: Match{PID: "0100"}},
		{rule: "", err: true},
		{rule: "vid=2fe", err: true},
		{rule: "pid=zzzz", err: true},
		{rule: "colour=blue", err: true},
		{rule: "usb-serial=", err: true},
	} {
		got, err := ParseMatch(tc.rule)
		if (err != nil) != tc.err {
			t.Errorf("ParseMatch(%q) error = %v, want error %v", tc.rule, err, tc.err)
			continue
		}
		if !tc.err && got != tc.want {
			t.Errorf("ParseMatch(%q) = %+v, want %+v", tc.rule, got, tc.want)
		}
	}
	ports := []PortInfo{
		{Path: "/dev/ttyACM0", VID: "2fe3", PID: "0100", SerialNumber: "A1", ByID: []string{"/dev/serial/by-id/usb-Z_A1-if00"}},
		{Path: "/dev/ttyACM1", VID: "2fe3", PID: "0100", SerialNumber: "B2"},
		{Path: "/dev/ttyUSB0", VID: "0403", PID: "6001", SerialNumber: "A1"},
	}
	for rule, want := range map[string][]string{
		"2fe3:0100":                      {"/dev/ttyACM0", "/dev/ttyACM1"},
		"usb-serial=A1":                  {"/dev/ttyACM0", "/dev/ttyUSB0"},
		"2fe3:0100,usb-serial=A1":        {"/dev/ttyACM0"},
		"usb-Z_A1-if00":                  {"/dev/ttyACM0"},
		"/dev/ttyUSB0":                   {"/dev/ttyUSB0"},
		"vid=0403,usb-serial=B2":         nil,
		"/dev/ttyACM1,usb-serial=B2":     {"/dev/ttyACM1"},
		"/dev/ttyACM1,usb-serial=nobody": nil,
	} {
		m, err := ParseMatch(rule)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range m.Find(ports) {
			got = append(got, p.Path)
		}
		if !cmp.Equal(got, want) {
			t.Errorf("%q matches %v, want %v", rule, got, want)
		}
	}
}

func TestImageVersion(t *testing.T) {
	for s, want := range map[string]ImageVersion{
		"1.2.3":            {1, 2, 3, 0},
		"255.0.65535.7":    {255, 0, 65535, 7},
		"0.0.0.4294967295": {0, 0, 0, 4294967295},
	} {
		got, err := ParseImageVersion(s)
		if err != nil || got != want {
			t.Errorf("ParseImageVersion(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "1.2", "1.2.3.", "1.2.3.4.5", "256.0.0", "1.2.3x", "1.2.3.4x", "a.b.c", "-1.0.0"} {
		if v, err := ParseImageVersion(s); err == nil {
			t.Errorf("ParseImageVersion(%q) = %v, want an error", s, v)
		}
	}
}

func TestImageRoundTrip(t *testing.T) {
	body := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1000)
	v := ImageVersion{2, 1, 7, 99}
	img := BuildImage(v, body)
	info, err := ParseImage(img)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != v || info.Size != len(body) {
		t.Errorf("ParseImage = %+v", info)
	}
	want := sha256.Sum256(img[:32+len(body)])
	if !bytes.Equal(info.Hash, want[:]) {
		t.Errorf("image hash = %x, want sha256 of header and body %x", info.Hash, want)
	}
	for name, bad := range map[string][]byte{
		"empty":        nil,
		"not an image": bytes.Repeat([]byte{0xff}, 200),
		"body changed": func() []byte { b := bytes.Clone(img); b[100] ^= 1; return b }(),
		"cut short":    img[:len(img)-10],
	} {
		if _, err := ParseImage(bad); !errors.Is(err, ErrNotImage) {
			t.Errorf("ParseImage(%s) error = %v, want ErrNotImage", name, err)
		}
	}
}

func TestStallGuard(t *testing.T) {
	var g stallGuard
	if err := g.check("fs.file", "p", 0, 100); err != nil {
		t.Fatal(err)
	}
	// A board may ask for a chunk again a few times...
	for i := 1; i < maxStalls; i++ {
		if err := g.check("fs.file", "p", 100, 100); err != nil {
			t.Fatalf("stall %d: %v", i, err)
		}
	}
	// ...but not for ever.
	if err := g.check("fs.file", "p", 100, 50); !errors.Is(err, ErrProtocol) {
		t.Fatalf("stall %d: %v, want ErrProtocol", maxStalls, err)
	}
	// Progress clears the count.
	g = stallGuard{stalls: maxStalls - 1}
	g.check("fs.file", "p", 100, 200)
	if err := g.check("fs.file", "p", 200, 200); err != nil {
		t.Errorf("a stall after progress: %v", err)
	}
}

// mustFrame is AppendFrame for messages a test knows to fit.
func mustFrame(dst, msg []byte) []byte {
	out, err := AppendFrame(dst, msg)
	if err != nil {
		panic(err)
	}
	return out
}

// A message too long for a packet's 16-bit length is an error, not a
// panic, and leaves dst as it was.
func TestAppendFrameTooLong(t *testing.T) {
	dst := []byte("kept")
	for _, n := range []int{MaxMessage + 1, 1 << 16, 70000} {
		out, err := AppendFrame(dst, make([]byte, n))
		if !errors.Is(err, ErrFrameLength) || string(out) != "kept" {
			t.Errorf("AppendFrame(%d bytes) = %q, %v; want dst unchanged and ErrFrameLength", n, out, err)
		}
	}
	if _, err := AppendFrame(nil, make([]byte, MaxMessage)); err != nil {
		t.Errorf("AppendFrame(MaxMessage bytes) = %v, want it framed", err)
	}
}
