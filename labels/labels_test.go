package labels

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/makiuchi-d/gozxing"
	zxqrcode "github.com/makiuchi-d/gozxing/qrcode"
	"github.com/skip2/go-qrcode"
)

// nasty are field values that an escaping scheme gets wrong.
var nasty = []string{
	"ZT-000123",
	"a&b=c",
	"100%",
	"%41",
	"two words",
	" leading and trailing ",
	"ünïcødé 设备 🚀",
	"ZT1:sn=x&rid=y",
	"line\nbreak\r\ttab",
	"^XZ~JA_x_5E",
	"+plus+",
	"\x00\x01\x7f\xff\xfe",
	"a/b\\c..d",
	strings.Repeat("long-", 200),
}

func TestPayloadRoundTrip(t *testing.T) {
	for _, serial := range nasty {
		for _, rid := range nasty {
			l := Label{Serial: serial, RegistrationID: rid, DeviceID: "dev&1", Model: "M=1"}
			p := l.Payload()
			checkPayloadChars(t, p)
			gotSerial, gotRID, err := ParsePayload(p)
			if err != nil {
				t.Fatalf("ParsePayload(%q) error %v", p, err)
			}
			if gotSerial != serial || gotRID != rid {
				t.Errorf("ParsePayload(%q) = %q, %q, want %q, %q", p, gotSerial, gotRID, serial, rid)
			}
			// The scanner's Enter, and a terminal's CR, do not matter.
			if s, r, err := ParsePayload(p + "\r\n"); err != nil || s != serial || r != rid {
				t.Errorf("ParsePayload(%q) = %q, %q, %v, want %q, %q, nil", p+"\r\n", s, r, err, serial, rid)
			}
		}
	}
}

// checkPayloadChars fails unless p is one line of the characters a payload
// may have, with the prefix.
func checkPayloadChars(t *testing.T, p string) {
	t.Helper()
	if !strings.HasPrefix(p, "ZT1:") {
		t.Errorf("payload %q does not start with ZT1:", p)
	}
	for i := range len(p) {
		c := p[i]
		if !(alnum(c) || strings.IndexByte("-.%&=:", c) >= 0) {
			t.Errorf("payload %q has %q at %d", p, c, i)
			return
		}
	}
}

func TestPayloadFormat(t *testing.T) {
	for _, tt := range []struct {
		l    Label
		want string
	}{
		{Label{Serial: "ZT-000123", RegistrationID: "zt-000123.reg"}, "ZT1:sn=ZT-000123&rid=zt-000123.reg"},
		{Label{Serial: "ZT_1", RegistrationID: "reg 1&x"}, "ZT1:sn=ZT%5F1&rid=reg%201%26x"},
		{Label{Serial: "é", RegistrationID: "~^"}, "ZT1:sn=%C3%A9&rid=%7E%5E"},
		// DeviceID, Model and Time are not in the payload.
		{Label{Serial: "a", RegistrationID: "b", DeviceID: "c", Model: "d", Time: time.Unix(1, 0)}, "ZT1:sn=a&rid=b"},
	} {
		if got := tt.l.Payload(); got != tt.want {
			t.Errorf("%+v.Payload() = %q, want %q", tt.l, got, tt.want)
		}
	}
}

func TestParsePayloadAccepts(t *testing.T) {
	for _, tt := range []struct {
		in, serial, rid string
	}{
		{"ZT1:sn=ZT-000123&rid=reg", "ZT-000123", "reg"},
		{"  ZT1:sn=a&rid=b\r\n", "a", "b"},
		{"ZT1:rid=b&sn=a", "a", "b"},
		{"ZT1:sn=a%2f%2F&rid=%c3%a9", "a//", "é"},
		{"ZT1:sn=a&rid=b&did=future&v=", "a", "b"}, // unknown keys are for later labels
	} {
		serial, rid, err := ParsePayload(tt.in)
		if err != nil || serial != tt.serial || rid != tt.rid {
			t.Errorf("ParsePayload(%q) = %q, %q, %v, want %q, %q, nil", tt.in, serial, rid, err, tt.serial, tt.rid)
		}
	}
}

func TestParsePayloadRejects(t *testing.T) {
	for _, in := range []string{
		"",
		"\r\n",
		"ZT-000123", // a bare serial number: the caller's business
		"ZT1",
		"ZT1:",
		"zt1:sn=a&rid=b",
		"ZT2:sn=a&rid=b",
		"ZT10:sn=a&rid=b",
		" XZT1:sn=a&rid=b",
		"https://example.com/?sn=a&rid=b",
		"ZT1:sn=a",
		"ZT1:rid=b",
		"ZT1:sn=&rid=b",
		"ZT1:sn=a&rid=",
		"ZT1:sn=%20&rid=b",
		"ZT1:sn=a&rid=b&sn=c",
		"ZT1:sn=a&rid=b&rid=b",
		"ZT1:sn=a&rid=b&",
		"ZT1:&sn=a&rid=b",
		"ZT1:sn",
		"ZT1:sn=a=b&rid=c",
		"ZT1:SN=a&rid=b",
		"ZT1:s-n=a&sn=a&rid=b",
		"ZT1:sn=a b&rid=c",
		"ZT1:sn=a+b&rid=c",
		"ZT1:sn=ä&rid=b",
		"ZT1:sn=a_b&rid=c",
		"ZT1:sn=a%&rid=b",
		"ZT1:sn=a%4&rid=b",
		"ZT1:sn=a%zz&rid=b",
		"ZT1:sn=a&rid=b%",
		"ZT1:sn=a\n&rid=b",
		"\x00\xff",
	} {
		serial, rid, err := ParsePayload(in)
		if !errors.Is(err, ErrNotLabel) {
			t.Errorf("ParsePayload(%q) = %q, %q, %v, want %v", in, serial, rid, err, ErrNotLabel)
		}
		if err != nil && (serial != "" || rid != "") {
			t.Errorf("ParsePayload(%q) = %q, %q with error %v, want empty values", in, serial, rid, err)
		}
	}
}

func FuzzPayload(f *testing.F) {
	for _, s := range nasty {
		f.Add(s, "reg-"+s)
	}
	f.Add("", "rid")
	f.Add("sn", "")
	f.Add(" ", "\t")
	f.Add("ZT1:sn=a&rid=b", "%zz")
	f.Fuzz(func(t *testing.T, serial, rid string) {
		p := Label{Serial: serial, RegistrationID: rid}.Payload()
		checkPayloadChars(t, p)
		gotSerial, gotRID, err := ParsePayload(p)
		switch {
		case blank(serial) || blank(rid):
			if !errors.Is(err, ErrNotLabel) {
				t.Errorf("ParsePayload(%q) error %v, want %v", p, err, ErrNotLabel)
			}
		case err != nil || gotSerial != serial || gotRID != rid:
			t.Errorf("ParsePayload(%q) = %q, %q, %v, want %q, %q, nil", p, gotSerial, gotRID, err, serial, rid)
		}
		// Any input: no panic, and errors are ErrNotLabel.
		for _, in := range []string{serial, rid, "ZT1:" + serial, "ZT1:sn=" + serial + "&rid=" + rid} {
			if s, r, err := ParsePayload(in); err != nil && !errors.Is(err, ErrNotLabel) {
				t.Errorf("ParsePayload(%q) error %v, want %v", in, err, ErrNotLabel)
			} else if err == nil && (blank(s) || blank(r)) {
				t.Errorf("ParsePayload(%q) = %q, %q, nil: blank value", in, s, r)
			}
		}
	})
}

// decodeQR returns the text of the QR code in a PNG, read by a QR decoder
// as a camera's image would be.
func decodeQR(t *testing.T, data []byte) (string, image.Image) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decode PNG: %v", err)
	}
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatalf("binarize: %v", err)
	}
	res, err := zxqrcode.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("decode QR code: %v", err)
	}
	return res.GetText(), img
}

func TestPNG(t *testing.T) {
	when := time.Date(2025, 3, 4, 15, 4, 5, 0, time.UTC)
	for _, tt := range []struct {
		l    Label
		size int
	}{
		{Label{Serial: "ZT-000123", RegistrationID: "zt-000123", Time: when}, MinPNGSize},
		{Label{Serial: "ZT-000123", RegistrationID: "zt-000123"}, 200},
		{Label{Serial: "ZT-000123", RegistrationID: "3qsx7kgh6q5ge5jcbvdwnyapv3cqhfzlmlxe5bihjjhuntvkacaq", Model: "Widget 2", Time: when}, PNGSize},
		{Label{Serial: "a&b=c %", RegistrationID: "ünïcødé ^~_ \x00 🚀", Model: "M\nX"}, 300},
		{Label{Serial: strings.Repeat("S", 150), RegistrationID: strings.Repeat("r", 400)}, 1000},
		{Label{Serial: "ZT-000123", RegistrationID: "zt-000123"}, MaxPNGSize},
	} {
		t.Run(strconv.Itoa(tt.size), func(t *testing.T) {
			data, err := tt.l.PNG(tt.size)
			if err != nil {
				t.Fatalf("PNG(%d) error %v", tt.size, err)
			}
			text, img := decodeQR(t, data)
			if want := tt.l.Payload(); text != want {
				t.Errorf("QR code of PNG(%d) = %q, want %q", tt.size, text, want)
			}
			serial, rid, err := ParsePayload(text)
			if err != nil || serial != tt.l.Serial || rid != tt.l.RegistrationID {
				t.Errorf("ParsePayload(QR code) = %q, %q, %v, want %q, %q, nil", serial, rid, err, tt.l.Serial, tt.l.RegistrationID)
			}
			b := img.Bounds()
			if b.Dx() != tt.size || b.Dy() <= tt.size || b.Dy() > 2*tt.size {
				t.Errorf("PNG(%d) is %dx%d, want %d wide and between %d and %d high", tt.size, b.Dx(), b.Dy(), tt.size, tt.size+1, 2*tt.size)
			}
			// The text is under the QR code: ink in the top and the bottom
			// halves of the text area.
			mid := (tt.size + b.Dy()) / 2
			if n := ink(img, tt.size, mid); n == 0 {
				t.Errorf("PNG(%d): no text between rows %d and %d", tt.size, tt.size, mid)
			}
			if n := ink(img, mid, b.Dy()); n == 0 {
				t.Errorf("PNG(%d): no text between rows %d and %d", tt.size, mid, b.Dy())
			}
		})
	}
}

// ink counts the dark pixels of img in rows y0 to y1.
func ink(img image.Image, y0, y1 int) int {
	n := 0
	for y := y0; y < y1; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			if r, _, _, _ := img.At(x, y).RGBA(); r < 0x8000 {
				n++
			}
		}
	}
	return n
}

func TestPNGErrors(t *testing.T) {
	ok := Label{Serial: "ZT-1", RegistrationID: "r"}
	for _, tt := range []struct {
		l    Label
		size int
	}{
		{Label{RegistrationID: "r"}, 200},
		{Label{Serial: " \t", RegistrationID: "r"}, 200},
		{Label{Serial: "ZT-1"}, 200},
		{ok, 0},
		{ok, -5},
		{ok, MinPNGSize - 1},
		{ok, MaxPNGSize + 1},
		{Label{Serial: "ZT-1", RegistrationID: strings.Repeat("r", 3000)}, MaxPNGSize}, // no QR code holds it
		{Label{Serial: "ZT-1", RegistrationID: strings.Repeat("r", 300)}, MinPNGSize},  // modules under 2 px
	} {
		if _, err := tt.l.PNG(tt.size); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q/%q PNG(%d) error %v, want %v", tt.l.Serial, tt.l.RegistrationID, tt.size, err, ErrInvalid)
		}
	}
}

// zplField is one ^FD...^FS field of a ZPL format, as a printer reads it.
type zplField struct {
	Kind string // the barcode or font command of the field, e.g. "BQN,2,5"
	X, Y int    // from ^FO
	Data string // the field data, hex escapes of ^FH decoded
}

// parseZPL reads a ZPL format as a printer does: it returns the commands
// outside field data, by name ("XA", "FO", ...), and the fields. It fails
// the test if field data could be read as a command: every ^FD must run
// to ^FS, with no '~', and come after ^FH_, whose escapes it decodes.
func parseZPL(t *testing.T, s string) (cmds []string, fields []zplField) {
	t.Helper()
	var cur zplField
	fh := false
	for i := 0; i < len(s); {
		switch s[i] {
		case '\n':
			i++
			continue
		case '^':
		default:
			t.Fatalf("ZPL: unexpected %q at %d, want a command in\n%s", s[i], i, s)
		}
		if i+3 > len(s) {
			t.Fatalf("ZPL: truncated command at %d", i)
		}
		name := s[i+1 : i+3]
		cmds = append(cmds, name)
		if name == "FD" {
			end := strings.IndexByte(s[i+1:], '^')
			if end < 0 {
				t.Fatalf("ZPL: field at %d never ends", i)
			}
			raw := s[i+3 : i+1+end]
			i += 1 + end
			if !strings.HasPrefix(s[i:], "^FS") {
				t.Fatalf("ZPL: field data %q ends with %q, want ^FS", raw, s[i:min(i+3, len(s))])
			}
			if strings.ContainsAny(raw, "~\n") {
				t.Errorf("ZPL: field data %q has a control prefix or a line break", raw)
			}
			if !fh {
				t.Errorf("ZPL: field data %q without ^FH", raw)
			}
			cur.Data = decodeFH(t, raw)
			fields = append(fields, cur)
			cur, fh = zplField{}, false
			continue
		}
		end := strings.IndexAny(s[i+1:], "^\n")
		if end < 0 {
			end = len(s) - i - 1
		}
		params := s[i+3 : i+1+end]
		switch {
		case name == "FH":
			if params != "_" {
				t.Errorf("ZPL: ^FH%s, want ^FH_", params)
			}
			fh = true
		case name == "FO":
			if _, err := fmt.Sscanf(params, "%d,%d", &cur.X, &cur.Y); err != nil {
				t.Errorf("ZPL: ^FO%s: %v", params, err)
			}
		case name[0] == 'A' || name[0] == 'B':
			cur.Kind = name + params
		}
		i += 1 + end
	}
	return cmds, fields
}

// decodeFH decodes the _XX escapes of field data after ^FH_.
func decodeFH(t *testing.T, raw string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] != '_' {
			b.WriteByte(raw[i])
			continue
		}
		if i+2 >= len(raw) {
			t.Fatalf("ZPL: truncated escape in %q", raw)
		}
		n, err := strconv.ParseUint(raw[i+1:i+3], 16, 8)
		if err != nil {
			t.Fatalf("ZPL: bad escape in %q: %v", raw, err)
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String()
}

// checkZPLFrame checks what every label's format has, and returns the
// magnification of its QR code.
func checkZPLFrame(t *testing.T, zpl string, cmds []string, fields []zplField) int {
	t.Helper()
	if len(cmds) < 2 || cmds[0] != "XA" || cmds[len(cmds)-1] != "XZ" {
		t.Errorf("ZPL commands %v, want ^XA first and ^XZ last", cmds)
	}
	for _, c := range []string{"XA", "XZ", "CI"} {
		if n := strings.Count(strings.Join(cmds, " "), c); n != 1 {
			t.Errorf("ZPL has %d ^%s, want 1", n, c)
		}
	}
	if !strings.Contains(zpl, "^XA\n^CI28\n") {
		t.Errorf("ZPL does not start with ^XA ^CI28:\n%s", zpl)
	}
	if strings.Contains(zpl, "~") {
		t.Errorf("ZPL has a '~':\n%s", zpl)
	}
	if len(fields) == 0 || !strings.HasPrefix(fields[0].Kind, "BQN,2,") {
		t.Fatalf("ZPL fields %+v, want a ^BQN,2 QR code first", fields)
	}
	mag, err := strconv.Atoi(strings.TrimPrefix(fields[0].Kind, "BQN,2,"))
	if err != nil || mag < 2 || mag > 10 {
		t.Errorf("QR code %s: magnification %d (%v), want 2 to 10", fields[0].Kind, mag, err)
	}
	for _, f := range fields {
		if f.X < 0 || f.X >= zplWidth-zplMargin || f.Y < 0 || f.Y >= zplHeight-zplMargin {
			t.Errorf("ZPL field %+v outside the 400 x 240 label", f)
		}
	}
	return mag
}

func TestZPL(t *testing.T) {
	l := Label{Serial: "ZT-000123", RegistrationID: "zt-000123.reg", Model: "Widget 2", Time: time.Date(2025, 3, 4, 15, 4, 5, 0, time.UTC)}
	zpl, err := l.ZPL()
	if err != nil {
		t.Fatalf("ZPL() error %v", err)
	}
	cmds, fields := parseZPL(t, zpl)
	mag := checkZPLFrame(t, zpl, cmds, fields)
	modules := 17 + 4*qrVersion(len(l.Payload()))
	if (modules+8)*mag > zplHeight {
		t.Errorf("QR code of %d modules at %d dots with its quiet zone is higher than the label", modules, mag)
	}
	kinds := func(fs []zplField) []string {
		var k []string
		for _, f := range fs {
			k = append(k, f.Kind+" "+f.Data)
		}
		return k
	}
	want := []string{
		fields[0].Kind + " MA," + l.Payload(),
		"A0N,28,22 ZT-000123",
		"A0N,18,16 zt-000123.reg",
		"A0N,18,16 Widget 2",
		"A0N,18,16 2025-03-04",
	}
	if diff := cmp.Diff(want, kinds(fields)); diff != "" {
		t.Errorf("ZPL fields (-want +got):\n%s\n%s", diff, zpl)
	}
	if !strings.Contains(zpl, "^FO"+strconv.Itoa(4*mag)+","+strconv.Itoa(4*mag)+"^BQN,2,"+strconv.Itoa(mag)+"^FH_^FDMA,ZT1:") {
		t.Errorf("ZPL QR code field not in the expected form:\n%s", zpl)
	}
}

func TestZPLEscapes(t *testing.T) {
	l := Label{
		Serial:         "A^XZ~JR_b\x00",
		RegistrationID: "r^FS^XA~_5E",
		Model:          "ünï\ncødé",
	}
	zpl, err := l.ZPL()
	if err != nil {
		t.Fatalf("ZPL() error %v", err)
	}
	cmds, fields := parseZPL(t, zpl)
	checkZPLFrame(t, zpl, cmds, fields)
	var got []string
	for _, f := range fields {
		got = append(got, f.Data)
	}
	want := []string{"MA," + l.Payload(), "A^XZ~JR_b?", "r^FS^XA~_5E", "ünï?cødé"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ZPL field data (-want +got):\n%s\n%s", diff, zpl)
	}
	for _, esc := range []string{"A_5EXZ_7EJR_5Fb?", "r_5EFS_5EXA_7E_5F5E", "ünï?cødé"} {
		if !strings.Contains(zpl, "^FD"+esc+"^FS") {
			t.Errorf("ZPL has no field ^FD%s^FS:\n%s", esc, zpl)
		}
	}
}

func TestZPLLongValues(t *testing.T) {
	l := Label{Serial: strings.Repeat("S", 60), RegistrationID: strings.Repeat("0123456789", 20), Model: strings.Repeat("m", 50), Time: time.Unix(0, 0).UTC()}
	zpl, err := l.ZPL()
	if err != nil {
		t.Fatalf("ZPL() error %v", err)
	}
	cmds, fields := parseZPL(t, zpl)
	checkZPLFrame(t, zpl, cmds, fields)
	var serial, rid strings.Builder
	for _, f := range fields[1:] {
		switch f.Kind {
		case "A0N,28,22":
			serial.WriteString(f.Data)
		case "A0N,18,16":
			rid.WriteString(f.Data)
		}
	}
	if s := serial.String(); !strings.HasSuffix(s, "...") || !strings.HasPrefix(l.Serial, strings.TrimSuffix(s, "...")) {
		t.Errorf("serial lines %q, want a prefix of the serial and ...", s)
	}
	if r := rid.String(); !strings.HasPrefix(r, "0123456789") || !strings.HasSuffix(r, "1970-01-01") {
		t.Errorf("text lines %q, want the registration ID, model and date", r)
	}
	// Fields do not overlap.
	for i := 2; i < len(fields); i++ {
		if fields[i].Y <= fields[i-1].Y {
			t.Errorf("ZPL field %+v not under %+v", fields[i], fields[i-1])
		}
	}
}

func TestZPLErrors(t *testing.T) {
	for _, l := range []Label{
		{RegistrationID: "r"},
		{Serial: "s", RegistrationID: "\n"},
		{Serial: "s", RegistrationID: strings.Repeat("r", 1000)}, // modules too small to print
	} {
		if _, err := l.ZPL(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q/%q ZPL() error %v, want %v", l.Serial, l.RegistrationID, err, ErrInvalid)
		}
	}
}

// TestQRCapacity checks the table of the QR code's capacity against the
// encoder.
func TestQRCapacity(t *testing.T) {
	for v := 1; v <= 40; v++ {
		n := byteCapacityM[v]
		if _, err := qrcode.NewWithForcedVersion(strings.Repeat("a", n), v, qrcode.Medium); err != nil {
			t.Errorf("version %d does not hold %d bytes: %v", v, n, err)
		}
		if _, err := qrcode.NewWithForcedVersion(strings.Repeat("a", n+1), v, qrcode.Medium); err == nil {
			t.Errorf("version %d holds %d bytes, want at most %d", v, n+1, n)
		}
		if got := qrVersion(n); got != v {
			t.Errorf("qrVersion(%d) = %d, want %d", n, got, v)
		}
	}
	if got := qrVersion(2332); got != 0 {
		t.Errorf("qrVersion(2332) = %d, want 0", got)
	}
}

func TestWrite(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "labels", "today") // created by Write
	for _, tt := range []struct {
		serial string
		want   string // file name without extension; "" for any safe name
	}{
		{"ZT-000123", "ZT-000123"},
		{"zt_1.rev2", "zt_1.rev2"},
		{"../x", ""},
		{"..", ""},
		{".", ""},
		{".hidden", ""},
		{"a/b", ""},
		{"a\\b", ""},
		{"/etc/passwd", ""},
		{"\x00", ""},
		{"x\ny", ""},
		{"ünï", ""},
		{"CON", ""},
		{"lpt1.txt", ""},
		{"trailing.", ""},
		{strings.Repeat("A", 65), ""},
		{strings.Repeat("../", 40), ""},
	} {
		l := Label{Serial: tt.serial, RegistrationID: "reg-" + tt.serial}
		pngPath, zplPath, err := Write(dir, l)
		if err != nil {
			t.Fatalf("Write(%q) error %v", tt.serial, err)
		}
		name := strings.TrimSuffix(filepath.Base(pngPath), ".png")
		if filepath.Dir(pngPath) != dir || filepath.Dir(zplPath) != dir || zplPath != filepath.Join(dir, name+".zpl") {
			t.Errorf("Write(%q) = %q, %q, want <name>.png and <name>.zpl in %s", tt.serial, pngPath, zplPath, dir)
		}
		if tt.want != "" && name != tt.want {
			t.Errorf("Write(%q) name %q, want %q", tt.serial, name, tt.want)
		}
		if len(name) > 70 || name == "" || name[0] == '.' || strings.ContainsAny(name, "/\\\x00\n") || strings.Contains(name, "..") {
			t.Errorf("Write(%q) name %q, want a short plain name", tt.serial, name)
		}
		wantPNG, _ := l.PNG(PNGSize)
		wantZPL, _ := l.ZPL()
		for path, want := range map[string][]byte{pngPath: wantPNG, zplPath: []byte(wantZPL)} {
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Write(%q): %s does not hold the label", tt.serial, path)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("Write(%q): %s mode %v (%v), want 0644", tt.serial, path, fi.Mode().Perm(), err)
			}
		}
	}
	// Each serial has its own two files, and nothing went anywhere else.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2*17 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("%s holds %d files, want 34: %q", dir, len(entries), names)
	}
	var all []string
	filepath.WalkDir(parent, func(path string, d os.DirEntry, err error) error {
		if !d.IsDir() && filepath.Dir(path) != dir {
			all = append(all, path)
		}
		return nil
	})
	if len(all) > 0 {
		t.Errorf("files outside %s: %q", dir, all)
	}
	// A second write of a label replaces it.
	l := Label{Serial: "ZT-000123", RegistrationID: "other"}
	pngPath, _, err := Write(dir, l)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := decodeQR(t, must(os.ReadFile(pngPath)))
	if text != l.Payload() {
		t.Errorf("rewritten label's QR code %q, want %q", text, l.Payload())
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := Write(filepath.Join(file, "labels"), Label{Serial: "ZT-1", RegistrationID: "r"})
	if err == nil || !strings.HasPrefix(err.Error(), `label for board "ZT-1": create `) {
		t.Errorf("Write into a file error %v, want label for board \"ZT-1\": create ...", err)
	}
	_, _, err = Write(filepath.Join(dir, "new"), Label{Serial: "ZT-1"})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("Write(no registration ID) error %v, want %v", err, ErrInvalid)
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Write(no registration ID) created its folder (%v)", err)
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		_, _, err = Write(ro, Label{Serial: "ZT-1", RegistrationID: "r"})
		if !errors.Is(err, os.ErrPermission) || !strings.Contains(err.Error(), `label for board "ZT-1": write `+filepath.Join(ro, "ZT-1.png")) {
			t.Errorf("Write into a read-only folder error %v, want permission denied naming the file", err)
		}
	}
}

func TestWrap(t *testing.T) {
	for _, tt := range []struct {
		s               string
		width, maxLines int
		want            []string
	}{
		{"", 5, 2, nil},
		{"abc", 5, 2, []string{"abc"}},
		{"abcdefghij", 5, 2, []string{"abcde", "fghij"}},
		{"abcdefghijk", 5, 2, []string{"abcde", "fg..."}},
		{"ünïcødé", 4, 2, []string{"ünïc", "ødé"}},
	} {
		if got := wrap(tt.s, tt.width, tt.maxLines); !cmp.Equal(got, tt.want) {
			t.Errorf("wrap(%q, %d, %d) = %q, want %q", tt.s, tt.width, tt.maxLines, got, tt.want)
		}
	}
}

func ExampleLabel_Payload() {
	l := Label{Serial: "ZT-000123", RegistrationID: "reg 1&x"}
	fmt.Println(l.Payload())
	serial, rid, err := ParsePayload(l.Payload() + "\n")
	fmt.Printf("%q %q %v\n", serial, rid, err)
	_, _, err = ParsePayload("ZT-000123")
	fmt.Println(errors.Is(err, ErrNotLabel))
	// Output:
	// ZT1:sn=ZT-000123&rid=reg%201%26x
	// "ZT-000123" "reg 1&x" <nil>
	// true
}
