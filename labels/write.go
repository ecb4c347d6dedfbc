package labels

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"zerotouch/internal/atomicfile"
)

// PNGSize is the width in pixels of the PNG that [Write] writes: 50 mm at
// 203 dpi, as the ZPL label.
const PNGSize = 400

// Write writes the label into dir as <name>.png ([Label.PNG] at [PNGSize])
// and <name>.zpl ([Label.ZPL]), each replaced atomically with mode 0644,
// and returns their paths. dir is created (0755) if missing. <name> is the
// serial number if it is a plain file name (letters, digits, '-', '_' and
// '.', at most 64 bytes, starting with a letter or digit, not a Windows
// device name such as CON); otherwise it is the serial number with every
// other character replaced, shortened, followed by '-' and a hash of the
// serial number, so that it always names a file inside dir and different
// serial numbers give different names.
//
// Errors name the board and what failed, and wrap [ErrInvalid] for a label
// that cannot be made or the error of the file system. If the PNG was
// written but the ZPL could not be, the PNG stays. Write is safe for
// concurrent use; two writes of the same board's label leave one whole
// label.
func Write(dir string, l Label) (pngPath, zplPath string, err error) {
	pngData, err := l.PNG(PNGSize) // its errors name the board
	if err != nil {
		return "", "", err
	}
	zpl, err := l.ZPL()
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("label for board %q: create %s: %w", l.Serial, dir, err)
	}
	name := fileName(l.Serial)
	pngPath = filepath.Join(dir, name+".png")
	zplPath = filepath.Join(dir, name+".zpl")
	// atomicfile's errors say "write <path>: ...".
	if err := atomicfile.Write(pngPath, pngData, 0o644); err != nil {
		return "", "", fmt.Errorf("label for board %q: %w", l.Serial, err)
	}
	if err := atomicfile.Write(zplPath, []byte(zpl), 0o644); err != nil {
		return "", "", fmt.Errorf("label for board %q: %w", l.Serial, err)
	}
	return pngPath, zplPath, nil
}

// fileName returns the base name, without extension, of the label files
// of the board with this serial number (see [Write]).
func fileName(serial string) string {
	if plainName(serial) {
		return serial
	}
	var b strings.Builder
	for i := 0; i < len(serial) && b.Len() < 32; i++ {
		c := serial[i]
		if fileNameByte(c) && c != '.' {
			b.WriteByte(c)
		} else if s := b.String(); s != "" && !strings.HasSuffix(s, "_") {
			b.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(serial))
	hash := hex.EncodeToString(sum[:6])
	prefix := strings.Trim(b.String(), "_-")
	if prefix == "" {
		return "label-" + hash
	}
	return prefix + "-" + hash
}

// plainName reports whether s can name a file as it is, on any system.
func plainName(s string) bool {
	if s == "" || len(s) > 64 || !alnum(s[0]) || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	for i := range len(s) {
		if !fileNameByte(s[i]) {
			return false
		}
	}
	base, _, _ := strings.Cut(strings.ToUpper(s), ".")
	switch base {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return false
	}
	if len(base) == 4 && (strings.HasPrefix(base, "COM") || strings.HasPrefix(base, "LPT")) && base[3] >= '0' && base[3] <= '9' {
		return false
	}
	return true
}

func alnum(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}

func fileNameByte(c byte) bool { return alnum(c) || c == '-' || c == '_' || c == '.' }
