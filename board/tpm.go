package board

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// TPM backends, as named by Config.TPM:
//
//	sim            the go-tpm-tools simulator, in this process
//	tcp:HOST:PORT  a TPM speaking raw commands over TCP (swtpm's server
//	               socket, started with --flags not-need-init,startup-clear)
//	/dev/tpmrm0    a TPM device
//	none           no TPM
const (
	TPMSim  = "sim"
	TPMNone = "none"
)

// ErrSimulatorBusy means another board in this process holds the TPM
// simulator: it is one per process (go-tpm-tools keeps it in C globals).
var ErrSimulatorBusy = errors.New("the TPM simulator is in use by another board in this process; run one board per process or use swtpm (tcp:HOST:PORT)")

// simInUse guards the process-wide simulator, so that a second board fails
// at once instead of blocking in simulator.Get.
var simInUse atomic.Bool

// openTPM opens the TPM backend named by spec. seed makes the simulator's
// hierarchy seeds (and so its EK) a function of the board's serial number.
func openTPM(spec, serial string) (transport.TPMCloser, error) {
	switch {
	case spec == "" || spec == TPMNone:
		return nil, nil
	case spec == TPMSim:
		if !simInUse.CompareAndSwap(false, true) {
			return nil, ErrSimulatorBusy
		}
		sum := sha256.Sum256([]byte("zerotouch virtual board " + serial))
		sim, err := simulator.GetWithFixedSeedInsecure(int64(binary.BigEndian.Uint64(sum[:8])))
		if err != nil {
			simInUse.Store(false)
			return nil, fmt.Errorf("start TPM simulator: %w", err)
		}
		return &simTPM{TPMCloser: transport.FromReadWriteCloser(sim)}, nil
	case strings.HasPrefix(spec, "tcp:"):
		addr := strings.TrimPrefix(spec, "tcp:")
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return nil, fmt.Errorf("connect to TPM at %s: %w", addr, err)
		}
		return &streamTPM{rw: conn, name: spec}, nil
	case strings.HasPrefix(spec, "/"):
		t, err := linuxtpm.Open(spec)
		if err != nil {
			return nil, fmt.Errorf("open TPM %s: %w", spec, err)
		}
		return t, nil
	}
	return nil, fmt.Errorf("TPM %q: want sim, none, tcp:HOST:PORT or a device path", spec)
}

// simTPM releases the process's simulator when closed.
type simTPM struct {
	transport.TPMCloser
	once sync.Once
}

func (s *simTPM) Close() error {
	var err error
	s.once.Do(func() {
		err = s.TPMCloser.Close()
		simInUse.Store(false)
	})
	return err
}

// streamTPM sends raw TPM 2.0 commands over a byte stream and reads each
// response by the size in its header (TPM 2.0 Part 1, 18.7).
type streamTPM struct {
	mu   sync.Mutex
	rw   io.ReadWriteCloser
	name string
}

const tpmHeaderLen = 10

func (s *streamTPM) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.rw.(net.Conn); ok {
		_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	}
	if _, err := s.rw.Write(cmd); err != nil {
		return nil, fmt.Errorf("send to TPM %s: %w", s.name, err)
	}
	hdr := make([]byte, tpmHeaderLen)
	if _, err := io.ReadFull(s.rw, hdr); err != nil {
		return nil, fmt.Errorf("read from TPM %s: %w", s.name, err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < tpmHeaderLen || size > 1<<16 {
		return nil, fmt.Errorf("read from TPM %s: response size %d", s.name, size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.rw, rsp[tpmHeaderLen:]); err != nil {
		return nil, fmt.Errorf("read from TPM %s: %w", s.name, err)
	}
	return rsp, nil
}

func (s *streamTPM) Close() error { return s.rw.Close() }
