//go:build !unix

package emulator

// openFileLimit is 0 where processes have no open-file limit to speak of
// (Windows' handle limit is in the millions).
func openFileLimit() int { return 0 }
