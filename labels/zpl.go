package labels

import (
	"fmt"
	"strings"
)

// The ZPL label: 50 x 30 mm at 203 dpi (8 dots per mm).
const (
	zplWidth  = 400 // dots
	zplHeight = 240 // dots
	zplMargin = 10  // dots, right and bottom

	// Fonts: ^A0 (scalable), height and width in dots, and the width of a
	// character assumed for wrapping (a little over the widest digits and
	// capitals of font 0 at that width).
	serialFont  = "^A0N,28,22"
	serialLineH = 30
	serialCharW = 14
	textFont    = "^A0N,18,16"
	textLineH   = 20
	textCharW   = 10
)

// byteCapacityM is the number of 8-bit bytes a QR code of each version
// (index 1 to 40) holds at error correction level M (ISO/IEC 18004:2015,
// table 7). The printer's automatic mode (^FDMA) never needs a larger
// symbol than byte mode does.
var byteCapacityM = [41]int{0,
	14, 26, 42, 62, 84, 106, 122, 152, 180, 213,
	251, 287, 331, 362, 412, 450, 504, 560, 624, 666,
	711, 779, 857, 911, 997, 1059, 1125, 1190, 1264, 1370,
	1452, 1538, 1628, 1722, 1809, 1911, 1989, 2099, 2213, 2331,
}

// qrVersion returns the smallest QR code version that holds n bytes at
// level M in byte mode, or 0 if none does.
func qrVersion(n int) int {
	for v := 1; v < len(byteCapacityM); v++ {
		if n <= byteCapacityM[v] {
			return v
		}
	}
	return 0
}

// ZPL returns the label as a ZPL II format for a Zebra printer at 203 dpi
// with 50 x 30 mm labels (400 x 240 dots): UTF-8 text (^CI28); on the left,
// the QR code of [Label.Payload] (^BQN, model 2, error correction M,
// automatic mode: ^FDMA,), as large as fits with its quiet zone; on the
// right, in font 0, the serial number, the registration ID, the model and
// the date, wrapped (and cut short with "..." if very long; the QR code
// always holds the whole values). Every field's data is preceded by ^FH,
// with '^', '~', '_' and control characters written as _XX hex, so no value
// can end the field or inject a command.
//
// It returns an error wrapping [ErrInvalid] if the serial number or
// registration ID is blank, or the payload too long for a legible QR code
// on the label.
func (l Label) ZPL() (string, error) {
	if err := l.validate(); err != nil {
		return "", err
	}
	payload := l.Payload()
	v := qrVersion(len(payload))
	modules := 17 + 4*v
	mag := min(10, zplHeight/(modules+8)) // 4 modules of quiet zone each side
	if v == 0 || mag < 2 {
		return "", fmt.Errorf("label for board %q: %w: payload of %d bytes too long for a QR code on a 50 x 30 mm label", l.Serial, ErrInvalid, len(payload))
	}
	quiet := 4 * mag
	textX := quiet + modules*mag + quiet
	textW := zplWidth - zplMargin - textX

	var b strings.Builder
	b.WriteString("^XA\n^CI28\n^PW400\n^LL240\n^LH0,0\n")
	field(&b, quiet, quiet, fmt.Sprintf("^BQN,2,%d", mag), "MA,"+payload)

	serial, rid, model, date := l.textLines()
	var tail []string // model and date, one line each at the bottom
	if model != "" {
		tail = append(tail, wrap(model, textW/textCharW, 1)...)
	}
	if date != "" {
		tail = append(tail, date)
	}
	y := zplMargin
	for _, line := range wrap(serial, textW/serialCharW, 2) {
		field(&b, textX, y, serialFont, line)
		y += serialLineH
	}
	y += textLineH / 2
	ridLines := (zplHeight - zplMargin - y - len(tail)*textLineH) / textLineH
	for _, line := range wrap(rid, textW/textCharW, ridLines) {
		field(&b, textX, y, textFont, line)
		y += textLineH
	}
	y = zplHeight - zplMargin - len(tail)*textLineH
	for _, line := range tail {
		field(&b, textX, y, textFont, line)
		y += textLineH
	}
	b.WriteString("^XZ\n")
	return b.String(), nil
}

// field writes a field at (x, y) of the given kind (font or barcode
// command) with data escaped for ^FH.
func field(b *strings.Builder, x, y int, kind, data string) {
	fmt.Fprintf(b, "^FO%d,%d%s^FH_^FD", x, y, kind)
	for i := range len(data) {
		c := data[i]
		if c == '^' || c == '~' || c == '_' || c < 0x20 || c == 0x7f {
			b.WriteByte('_')
			b.WriteByte(upperHex[c>>4])
			b.WriteByte(upperHex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	b.WriteString("^FS\n")
}
