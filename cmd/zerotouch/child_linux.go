package main

import (
	"os/exec"
	"syscall"
)

// childOfThisProcess makes cmd end with this process: the kernel sends
// it SIGTERM when its parent dies (Pdeathsig), and cancelling its context
// sends SIGTERM too, so that it closes its boards before it exits.
func childOfThisProcess(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
}
