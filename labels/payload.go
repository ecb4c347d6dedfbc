package labels

import (
	"fmt"
	"strings"
)

// The payload of a label's QR code is one line of printable ASCII, so that
// a barcode scanner acting as a keyboard types it exactly, then Enter:
//
//	ZT1:sn=<serial>&rid=<registration ID>
//
// "ZT1:" names the format and its version. Each value is percent-encoded
// byte by byte: every byte but A-Z, a-z, 0-9, '-' and '.' becomes %XX
// (upper-case hex), so values may hold any bytes, and the payload has no
// space, '^', '~' or '_' (which ZPL field data would have to escape).
// For example, serial "ZT-000123" and registration ID "reg 1&x" give
//
//	ZT1:sn=ZT-000123&rid=reg%201%26x
const (
	payloadPrefix = "ZT1:"
	keySerial     = "sn"
	keyRegID      = "rid"
)

// Payload returns the text of the label's QR code (see [ParsePayload] for
// the format). It never fails: it encodes any field values, even empty
// ones, though [ParsePayload] rejects a payload with an empty serial
// number or registration ID.
func (l Label) Payload() string {
	var b strings.Builder
	b.WriteString(payloadPrefix)
	b.WriteString(keySerial + "=")
	escape(&b, l.Serial)
	b.WriteString("&" + keyRegID + "=")
	escape(&b, l.RegistrationID)
	return b.String()
}

// ParsePayload returns the serial number and registration ID from the
// payload of a zerotouch label's QR code, as a barcode scanner types it:
//
//	ZT1:sn=<serial>&rid=<registration ID>
//
// with values percent-encoded (%XX, either case of hex) and every byte of a
// value other than A-Z, a-z, 0-9, '-' and '.' so encoded. White space around
// the payload (the scanner's Enter) is ignored. Keys may come in any order;
// keys other than sn and rid are ignored, so that a later label may carry
// more. It returns an error wrapping [ErrNotLabel] for anything else: a
// bare serial number, another barcode, a bad escape, a missing, empty or
// repeated sn or rid, another version of the format. The caller decides
// what non-label input means. Values round-trip: for a label l with a
// serial number and registration ID that are not blank,
// ParsePayload(l.Payload()) returns them unchanged.
func ParsePayload(s string) (serial, registrationID string, err error) {
	s = strings.Trim(s, " \t\r\n")
	rest, ok := strings.CutPrefix(s, payloadPrefix)
	if !ok {
		if isOtherVersion(s) {
			return "", "", fmt.Errorf("%w: unsupported version %q", ErrNotLabel, s[:strings.IndexByte(s, ':')])
		}
		return "", "", fmt.Errorf("%w: no %q prefix", ErrNotLabel, payloadPrefix)
	}
	var haveSerial, haveRegID bool
	for field := range strings.SplitSeq(rest, "&") {
		key, raw, ok := strings.Cut(field, "=")
		if !ok || !isKey(key) {
			return "", "", fmt.Errorf("%w: malformed field %q", ErrNotLabel, field)
		}
		value, err := unescape(raw)
		if err != nil {
			return "", "", fmt.Errorf("%w: field %s: %v", ErrNotLabel, key, err)
		}
		switch key {
		case keySerial:
			if haveSerial {
				return "", "", fmt.Errorf("%w: repeated field %s", ErrNotLabel, key)
			}
			serial, haveSerial = value, true
		case keyRegID:
			if haveRegID {
				return "", "", fmt.Errorf("%w: repeated field %s", ErrNotLabel, key)
			}
			registrationID, haveRegID = value, true
		}
	}
	switch {
	case !haveSerial || !haveRegID:
		return "", "", fmt.Errorf("%w: want fields %s and %s", ErrNotLabel, keySerial, keyRegID)
	case blank(serial):
		return "", "", fmt.Errorf("%w: empty serial number", ErrNotLabel)
	case blank(registrationID):
		return "", "", fmt.Errorf("%w: empty registration ID", ErrNotLabel)
	}
	return serial, registrationID, nil
}

// isOtherVersion reports whether s starts like a payload of another
// version of the format: "ZT", digits, ':'.
func isOtherVersion(s string) bool {
	rest, ok := strings.CutPrefix(s, "ZT")
	if !ok {
		return false
	}
	n := 0
	for n < len(rest) && n < 4 && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	return n > 0 && n < len(rest) && rest[n] == ':'
}

// isKey reports whether k is a well-formed key: 1 to 16 lower-case letters.
func isKey(k string) bool {
	if k == "" || len(k) > 16 {
		return false
	}
	for i := range len(k) {
		if k[i] < 'a' || k[i] > 'z' {
			return false
		}
	}
	return true
}

// unreserved reports whether c stands for itself in a payload's value.
func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.'
}

const upperHex = "0123456789ABCDEF"

// escape writes s to b with every byte but the unreserved ones as %XX.
func escape(b *strings.Builder, s string) {
	for i := range len(s) {
		c := s[i]
		if unreserved(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0xf])
	}
}

// unescape undoes escape, strictly: a byte that escape would have encoded
// is an error.
func unescape(s string) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case unreserved(c):
			b.WriteByte(c)
		case c == '%':
			if i+2 >= len(s) {
				return "", fmt.Errorf("truncated escape %q", s[i:])
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return "", fmt.Errorf("bad escape %q", s[i:i+3])
			}
			b.WriteByte(hi<<4 | lo)
			i += 2
		default:
			return "", fmt.Errorf("unexpected character %q", c)
		}
	}
	return b.String(), nil
}

// unhex returns the value of hex digit c.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
