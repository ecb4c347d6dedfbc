package main

import "os/exec"

// childOfThisProcess makes cancelling cmd's context end it. Windows has
// no SIGTERM to let it close its boards first: it is killed, and so are
// the TCP ports it served.
func childOfThisProcess(cmd *exec.Cmd) {
	cmd.Cancel = func() error { return cmd.Process.Kill() }
}
