package filelock

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// The lock covers the file's first byte, whether or not the file has
// one: a range past the end may be locked.
const lockLen = 1

func tryLock(f *os.File) error {
	err := windows.LockFileEx(windows.Handle(f.Fd()),
		windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, lockLen, 0, new(windows.Overlapped))
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return ErrLocked
	}
	return err
}

// unlock releases the lock at once: closing the handle releases it too,
// but Windows may do that later.
func unlock(f *os.File) {
	_ = windows.UnlockFileEx(windows.Handle(f.Fd()), 0, lockLen, 0, new(windows.Overlapped))
}
