// Package atomicfile replaces files so that a crash or power cut leaves
// either the old content or the new, never a mix. A file written with a
// private permission (no bits for group or others, such as 0600) is its
// owner's alone on every system, Windows included (see ownerfile), from
// the moment its temporary file is made.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"zerotouch/internal/ownerfile"
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

// WriteFrom is Write for content that arrives as a stream: fill writes
// it, into the temporary file. When fill fails, name is left as it was
// and fill's error is returned.
func WriteFrom(name string, perm os.FileMode, fill func(w io.Writer) error) error {
	return writeFrom(name, perm, true, fill)
}

func write(name string, data []byte, perm os.FileMode, sync bool) error {
	return writeFrom(name, perm, sync, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

func writeFrom(name string, perm os.FileMode, sync bool, fill func(w io.Writer) error) error {
	dir := filepath.Dir(name)
	tmp, err := createTemp(dir, filepath.Base(name), perm|0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(perm)
	if err == nil {
		if err = fill(tmp); err != nil {
			tmp.Close()
			return err
		}
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

// createTemp makes a new file in dir named after base, as os.CreateTemp
// does, with perm as ownerfile.OpenFile gives it.
func createTemp(dir, base string, perm os.FileMode) (*os.File, error) {
	for range 100 {
		name := filepath.Join(dir, "."+base+"."+strconv.FormatUint(rand.Uint64(), 36))
		f, err := ownerfile.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, &fs.PathError{Op: "createtemp", Path: filepath.Join(dir, "."+base+".*"), Err: fs.ErrExist}
}
