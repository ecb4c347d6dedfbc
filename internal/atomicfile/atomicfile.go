// Package atomicfile replaces files so that a crash or power cut leaves
// either the old content or the new, never a mix.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces name with data, with permissions perm: a temporary file
// in the same directory, synced, renamed over name, and the directory
// synced so that the rename lasts.
func Write(name string, data []byte, perm os.FileMode) error {
	return write(name, data, perm, true)
}

// WriteUnsynced is Write without the syncs: a killed process still leaves
// the old content or the new, but a host that loses power may keep
// neither. For files whose loss only a simulation would see.
func WriteUnsynced(name string, data []byte, perm os.FileMode) error {
	return write(name, data, perm, false)
}

func write(name string, data []byte, perm os.FileMode, sync bool) error {
	dir := filepath.Dir(name)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(perm)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil && sync {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), name)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if !sync {
		return nil
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
