//go:build !windows

package ownerfile

import (
	"fmt"
	"os"
	"strings"
)

// OpenFile is os.OpenFile. A file it creates gets perm less the umask;
// an existing file keeps its mode.
func OpenFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag, perm)
}

// MkdirAll is os.MkdirAll: the folders it makes get perm less the
// umask; existing ones keep their mode.
func MkdirAll(path string, perm os.FileMode) error {
	return os.MkdirAll(path, perm)
}

// Restrict makes an existing file or folder its owner's alone: mode 0600
// for a file, 0700 for a folder.
func Restrict(name string) error {
	st, err := os.Stat(name)
	if err != nil {
		return fmt.Errorf("restrict %s to its owner: %w", name, err)
	}
	perm := os.FileMode(0o600)
	if st.IsDir() {
		perm = 0o700
	}
	if err := os.Chmod(name, perm); err != nil {
		return fmt.Errorf("restrict %s to its owner: %w", name, err)
	}
	return nil
}

// Exposed returns an error wrapping ErrExposed, naming the file and its
// mode, when its group or others may read it; nil when only its owner
// may. A file that cannot be examined gives the os error.
func Exposed(name string) error {
	st, err := os.Stat(name)
	if err != nil {
		return err
	}
	if perm := st.Mode().Perm(); perm&0o044 != 0 {
		return fmt.Errorf("%s: mode %04o: %w", name, perm, ErrExposed)
	}
	return nil
}

// Remedy is the command an operator runs to make name its owner's alone.
func Remedy(name string) string {
	return "chmod 600 " + quote(name)
}

// quote puts name in single quotes when a shell would split or expand it.
func quote(name string) string {
	for _, r := range name {
		if !(r == '/' || r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return "'" + strings.ReplaceAll(name, "'", `'\''`) + "'"
		}
	}
	return name
}
