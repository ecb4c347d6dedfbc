// Package labels makes the label printed for each board that passed
// provisioning, for the factory operator to stick on the board: a QR code
// that a barcode scanner reads back as the board's serial number and
// registration ID, and the same two values as text a person can read.
//
// A label comes as a PNG (for any printer, or the screen) and as a ZPL II
// format for Zebra printers (203 dpi, 50 x 30 mm). [Write] puts both in a
// folder. A [Printer], made by [NewPrinter] from station.yaml's `labels:`
// section ([PrinterConfig]), prints labels to a folder, to a ZPL printer
// over raw TCP (port 9100) or to a CUPS queue through lp.
// [ParsePayload] reads what a scanner types back.
//
// The package knows no GUI toolkit and keeps no global state: every
// function, and every Printer, is safe for concurrent use.
package labels

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Label is what is printed for one board.
type Label struct {
	// Serial is the board's serial number. Required.
	Serial string
	// RegistrationID is the board's DPS registration ID. Required.
	RegistrationID string
	// DeviceID is the board's IoT Hub device ID, if known. Optional; it
	// is not printed.
	DeviceID string
	// Model is the board's model, printed under the registration ID if
	// not empty.
	Model string
	// Time is when the board was provisioned. Its date, in Time's
	// location, is printed if Time is not zero.
	Time time.Time
}

var (
	// ErrNotLabel is returned, wrapped, by [ParsePayload] for input that is
	// not the payload of a zerotouch label: a bare serial number, another
	// product's barcode, a damaged or unsupported payload.
	ErrNotLabel = errors.New("not a zerotouch label")

	// ErrInvalid is returned, wrapped, by [Label.PNG], [Label.ZPL] and
	// [Write] for a label that cannot be made: an empty serial number or
	// registration ID, values too long for a QR code on the label, an
	// image size out of range.
	ErrInvalid = errors.New("invalid label")
)

// blank reports whether s has nothing but white space.
func blank(s string) bool { return strings.TrimSpace(s) == "" }

// validate checks what every form of the label needs.
func (l Label) validate() error {
	if blank(l.Serial) {
		return fmt.Errorf("label: %w: empty serial number", ErrInvalid)
	}
	if blank(l.RegistrationID) {
		return fmt.Errorf("label for board %q: %w: empty registration ID", l.Serial, ErrInvalid)
	}
	return nil
}

// textLines are the texts printed beside or under the QR code, in order:
// the serial number, the registration ID, the model and the date, the last
// two only if set. Characters no printer font draws (control characters,
// invalid UTF-8) are shown as '?'.
func (l Label) textLines() (serial, rid, model, date string) {
	serial = displayText(l.Serial)
	rid = displayText(l.RegistrationID)
	model = displayText(l.Model)
	if !l.Time.IsZero() {
		date = l.Time.Format(time.DateOnly)
	}
	return serial, rid, model, date
}

// displayText replaces control characters and invalid UTF-8 in s by '?'.
func displayText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\uFFFD' {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// wrap cuts s into lines of at most width runes, at most maxLines of them;
// if s does not fit, the last line ends with "...".
func wrap(s string, width, maxLines int) []string {
	r := []rune(s)
	width, maxLines = max(width, 4), max(maxLines, 1)
	var lines []string
	for len(r) > 0 && len(lines) < maxLines {
		n := min(width, len(r))
		lines = append(lines, string(r[:n]))
		r = r[n:]
	}
	if len(r) > 0 {
		last := []rune(lines[len(lines)-1])
		lines[len(lines)-1] = string(last[:len(last)-3]) + "..."
	}
	return lines
}
