//go:build !linux

package ser2nettest

import "os/exec"

// dieWithTest leaves cmd to the test's cleanups: only Linux kills a child
// with its parent.
func dieWithTest(cmd *exec.Cmd) {}
