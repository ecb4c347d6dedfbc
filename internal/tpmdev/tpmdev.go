// Package tpmdev opens a TPM 2.0 by a short name: the go-tpm-tools
// simulator, a TPM speaking raw commands over TCP (swtpm), or a device.
// The virtual board puts one behind its passthrough; the tpm command of
// zerotouch talks to one directly.
package tpmdev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
)

// TPM names, as Open takes them:
//
//	sim            the go-tpm-tools simulator, in this process
//	tcp:HOST:PORT  a TPM speaking raw commands over TCP (swtpm's server
//	               socket, started with --flags not-need-init,startup-clear)
//	/dev/tpmrm0    a TPM device (any absolute path; Linux)
//	tbs            the system's TPM through TPM Base Services (Windows)
//	none           no TPM
//
// macOS has no TPM: there, only sim, tcp: and none open.
const (
	Sim  = "sim"
	None = "none"
	TBS  = "tbs"
)

// ErrNoDevice means the system has no TPM device of the kind named (a
// device path on Windows or macOS, tbs outside Windows).
var ErrNoDevice = errors.New("no such TPM on this system")

// ErrSimulatorBusy means another user in this process holds the TPM
// simulator: it is one per process (go-tpm-tools keeps it in C globals).
var ErrSimulatorBusy = errors.New("the TPM simulator is in use by another board in this process; run one board per process or use swtpm (tcp:HOST:PORT)")

// ErrNoSimulator means this build has no TPM simulator: go-tpm-tools'
// simulator is C (Microsoft's reference TPM over OpenSSL's libcrypto),
// so builds without cgo, and those with the notpmsim tag (the Windows
// window build: Debian has no OpenSSL for mingw-w64), leave it out.
var ErrNoSimulator = errors.New("this zerotouch is built without the TPM simulator: use swtpm (tcp:HOST:PORT)")

// Resetter is a TPM that can be power-cycled, as a board's reboot does to
// its TPM: transient objects and sessions go, persistent ones stay.
type Resetter interface {
	Reset() error
}

// Check reports whether spec names a TPM Open knows, without opening it.
func Check(spec string) error {
	switch {
	case spec == "" || spec == None || spec == Sim || spec == TBS, strings.HasPrefix(spec, "/"):
		return nil
	case strings.HasPrefix(spec, "tcp:"):
		if _, _, err := net.SplitHostPort(strings.TrimPrefix(spec, "tcp:")); err != nil {
			return fmt.Errorf("TPM %q: %w", spec, err)
		}
		return nil
	}
	return fmt.Errorf("TPM %q: want sim, none, tcp:HOST:PORT, tbs or a device path", spec)
}

// Open opens the TPM named by spec; none (or "") gives nil and no error.
// sim is ErrSimulatorBusy while another user in this process has it, and
// ErrNoSimulator in a build without it.
// seed makes the simulator's hierarchy seeds, and so its EK, a function
// of the caller's choice (a board uses its serial number); the other TPMs
// ignore it. The caller closes the TPM.
func Open(spec string, seed int64) (transport.TPMCloser, error) {
	if err := Check(spec); err != nil {
		return nil, err
	}
	switch {
	case spec == "" || spec == None:
		return nil, nil
	case spec == Sim:
		return openSim(seed)
	case strings.HasPrefix(spec, "tcp:"):
		addr := strings.TrimPrefix(spec, "tcp:")
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("connect to TPM at %s: %w", addr, err)
		}
		return &streamTPM{rw: conn, name: spec}, nil
	default:
		t, err := openSystem(spec)
		if err != nil {
			return nil, fmt.Errorf("open TPM %s: %w", spec, err)
		}
		return t, nil
	}
}

// streamTPM sends raw TPM 2.0 commands over a byte stream and reads each
// response by the size in its header (TPM 2.0 Part 1, 18.7). After an I/O
// error the stream is out of step: it is closed, and later commands fail.
type streamTPM struct {
	mu     sync.Mutex
	rw     io.ReadWriteCloser
	name   string
	broken error
}

const headerLen = 10

func (s *streamTPM) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken != nil {
		return nil, fmt.Errorf("TPM %s: connection lost earlier: %w", s.name, s.broken)
	}
	rsp, err := s.exchange(cmd)
	if err != nil {
		s.broken = err
		s.rw.Close()
	}
	return rsp, err
}

func (s *streamTPM) exchange(cmd []byte) ([]byte, error) {
	if c, ok := s.rw.(net.Conn); ok {
		_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	}
	if _, err := s.rw.Write(cmd); err != nil {
		return nil, fmt.Errorf("send to TPM %s: %w", s.name, err)
	}
	hdr := make([]byte, headerLen)
	if _, err := io.ReadFull(s.rw, hdr); err != nil {
		return nil, fmt.Errorf("read from TPM %s: %w", s.name, err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < headerLen || size > 1<<16 {
		return nil, fmt.Errorf("read from TPM %s: response size %d", s.name, size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.rw, rsp[headerLen:]); err != nil {
		return nil, fmt.Errorf("read from TPM %s: %w", s.name, err)
	}
	return rsp, nil
}

func (s *streamTPM) Close() error { return s.rw.Close() }
