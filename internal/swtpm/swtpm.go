// Package swtpm runs swtpm, the software TPM, as a process serving TPM 2.0
// commands on loopback: the tests' stand-in for a board's real TPM, one
// that tpm2-tools can reach too.
package swtpm

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

// ErrNotInstalled means the swtpm binary is not on PATH.
var ErrNotInstalled = errors.New("swtpm is not installed (the README's install step installs it)")

// Process is a running swtpm.
type Process struct {
	// Addr is the command port's address; the control port is the next
	// port, as tpm2-tools' swtpm TCTI expects.
	Addr string
	// Socket is the command socket's path, for a swtpm from StartUnix.
	Socket string
	cmd    *exec.Cmd
	out    *lockedBuffer
}

// Start runs swtpm with its state in dir on two consecutive free loopback
// ports and waits until it listens. With startup, swtpm starts its TPM
// itself (TPM2_Startup(CLEAR)); without, the TPM waits for a client to
// send TPM2_Startup, as a real one does after power-on. The caller closes
// it.
func Start(dir string, startup bool) (*Process, error) {
	port, err := freePortPair()
	if err != nil {
		return nil, err
	}
	flags := "not-need-init"
	if startup {
		flags += ",startup-clear"
	}
	p := &Process{Addr: fmt.Sprintf("127.0.0.1:%d", port)}
	return p.launch(dir, flags,
		fmt.Sprintf("type=tcp,bindaddr=127.0.0.1,port=%d", port),
		fmt.Sprintf("type=tcp,bindaddr=127.0.0.1,port=%d", port+1),
		func() error {
			c, err := net.Dial("tcp", p.Addr)
			if err == nil {
				c.Close()
			}
			return err
		})
}

// StartUnix runs swtpm, started (TPM2_Startup(CLEAR)), with its state in
// dir and its command channel on the Unix socket dir/swtpm.sock: the way
// go-tpm's OpenTPM and libraries over it (smallstep's tpmkms) reach a
// TPM emulator by path.
func StartUnix(dir string) (*Process, error) {
	p := &Process{Socket: filepath.Join(dir, "swtpm.sock")}
	return p.launch(dir, "not-need-init,startup-clear",
		"type=unixio,path="+p.Socket,
		"type=unixio,path="+filepath.Join(dir, "swtpm.ctrl"),
		func() error {
			fi, err := os.Stat(p.Socket)
			if err == nil && fi.Mode()&os.ModeSocket == 0 {
				err = fmt.Errorf("%s is not a socket", p.Socket)
			}
			return err
		})
}

// launch starts swtpm with the given server and control channels and
// waits up to 10 s for ready to succeed.
func (p *Process) launch(dir, flags, server, ctrl string, ready func() error) (*Process, error) {
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		return nil, ErrNotInstalled
	}
	p.out = &lockedBuffer{}
	p.cmd = exec.Command(bin, "socket", "--tpm2", "--server", server, "--ctrl", ctrl,
		"--tpmstate", "dir="+dir, "--flags", flags)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := ready()
		if err == nil {
			return p, nil
		}
		if time.Now().After(deadline) {
			p.Close()
			return nil, fmt.Errorf("swtpm not ready (%s): %w\n%s", server, err, p.out.String())
		}
	}
}

// Close stops swtpm and waits for it.
func (p *Process) Close() error {
	p.cmd.Process.Kill()
	p.cmd.Wait()
	return nil
}

// freePortPair finds a free loopback port whose successor is free too.
func freePortPair() (int, error) {
	for range 50 {
		a, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := a.Addr().(*net.TCPAddr).Port
		b, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		a.Close()
		if err == nil {
			b.Close()
			return port, nil
		}
	}
	return 0, errors.New("no two consecutive free ports on loopback")
}

// lockedBuffer collects swtpm's output for an error message.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
