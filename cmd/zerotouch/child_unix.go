//go:build unix && !linux

package main

import (
	"os/exec"
	"syscall"
)

// childOfThisProcess makes cancelling cmd's context send it SIGTERM, so
// that it closes its boards before it exits. Outside Linux no signal
// comes when this process dies without cancelling.
func childOfThisProcess(cmd *exec.Cmd) {
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
}
