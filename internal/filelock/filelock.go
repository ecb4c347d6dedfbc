// Package filelock holds the one-writer lock of a store: an exclusive
// lock on a file, taken without waiting, that the system drops when the
// holder closes it or dies. flock(2) on Unix, LockFileEx on Windows;
// on both, two opens of the file conflict even within one process.
package filelock

import (
	"errors"
	"fmt"
	"os"

	"zerotouch/internal/ownerfile"
)

// ErrLocked means another holder has the lock.
var ErrLocked = errors.New("locked by another holder")

// Lock is an exclusive lock held on a file. It is not safe for
// concurrent use.
type Lock struct {
	f *os.File
}

// TryLock opens the file at path, creating it (readable by its owner
// alone) when missing, and takes its exclusive lock without waiting: an
// error wrapping ErrLocked when another holder, in this process or
// another, has it. The file's folder must exist. Close releases the lock.
func TryLock(path string) (*Lock, error) {
	f, err := ownerfile.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := tryLock(f); err != nil {
		f.Close()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("lock %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Close releases the lock and closes its file, which stays on disk.
// Closing twice returns an error.
func (l *Lock) Close() error {
	unlock(l.f)
	return l.f.Close()
}
