package rawpty

import (
	"fmt"
	"os"
)

// Open fails: Windows has no pseudo-terminals. The error wraps ErrNoPTY.
func Open() (master, tty *os.File, err error) {
	return nil, nil, fmt.Errorf("%w on Windows: use board --listen tcp://", ErrNoPTY)
}
