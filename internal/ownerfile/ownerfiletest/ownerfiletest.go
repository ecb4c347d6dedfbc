// Package ownerfiletest makes files that others may read, for tests of
// code that must not leave secrets in them.
package ownerfiletest

import (
	"os"
	"path/filepath"
)

// ExposedDir makes a folder in parent, named name, whose files by
// default others may read, and returns its path.
func ExposedDir(parent, name string) (string, error) {
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	return dir, Expose(dir)
}
