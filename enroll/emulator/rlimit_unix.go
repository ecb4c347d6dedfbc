//go:build unix

package emulator

import (
	"math"
	"syscall"
)

// openFileLimit is the process's open-file limit (RLIMIT_NOFILE), or 0
// when there is none to speak of.
func openFileLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || uint64(rl.Cur) > math.MaxInt32 {
		return 0
	}
	return int(rl.Cur)
}
