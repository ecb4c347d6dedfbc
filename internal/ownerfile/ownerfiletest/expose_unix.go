//go:build !windows

package ownerfiletest

import "os"

// Expose lets everyone read name, and list it if it is a folder: mode
// 0644 or 0755.
func Expose(name string) error {
	st, err := os.Stat(name)
	if err != nil {
		return err
	}
	perm := os.FileMode(0o644)
	if st.IsDir() {
		perm = 0o755
	}
	return os.Chmod(name, perm)
}
