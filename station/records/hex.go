package records

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// HexBytes is a hash or other short binary value that JSON carries as
// lower-case hex, as the text output shows it ("configSha256":
// "9f86d0..."), rather than encoding/json's base64 of a []byte. A []byte
// assigns to it, and fmt's %x prints it as hex (it has no String method,
// which %x would encode again).
type HexBytes []byte

// MarshalJSON encodes h as a lower-case hex string; an empty h as "".
func (h HexBytes) MarshalJSON() ([]byte, error) {
	return json.Marshal(hex.EncodeToString(h))
}

// UnmarshalJSON decodes a hex string (either case); null leaves h as it
// is. Anything else is an error.
func (h *HexBytes) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("hex bytes: want a string of hex digits: %w", err)
	}
	v, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("hex bytes %q: %w", s, err)
	}
	if len(v) == 0 {
		v = nil
	}
	*h = v
	return nil
}

// Scan reads a BLOB column (NULL as nil), copying the driver's bytes.
func (h *HexBytes) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*h = nil
	case []byte:
		*h = append(HexBytes(nil), v...)
	case string:
		*h = HexBytes(v)
	default:
		return fmt.Errorf("hex bytes: cannot read a %T", src)
	}
	return nil
}
