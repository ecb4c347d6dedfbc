//go:build !linux && !darwin && !windows

package rawpty

import (
	"fmt"
	"os"
	"runtime"
)

// Open fails: zerotouch makes pseudo-terminals on Linux and macOS only.
// The error wraps ErrNoPTY.
func Open() (master, tty *os.File, err error) {
	return nil, nil, fmt.Errorf("%w on %s: use board --listen tcp://", ErrNoPTY, runtime.GOOS)
}
