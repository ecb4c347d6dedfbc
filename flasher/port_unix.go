//go:build unix

package flasher

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// Port is an open serial port. It satisfies Link. Close unblocks a Read in
// progress.
//
// go.bug.st/serial sets the line up (rate, 8N1, raw mode, exclusive
// access); the bytes go through a second descriptor of the same terminal,
// opened just before, which Go's runtime poller waits on. Its reads park
// the goroutine rather than hold a thread in a blocking select, which is
// what lets one station drive many slots on few cores.
type Port struct {
	p    serial.Port
	f    *os.File
	path string
}

// OpenPort opens the serial port at path at baud, 8N1, in raw mode.
func OpenPort(path string, baud int) (*Port, error) {
	// O_NONBLOCK: the open must not wait for carrier detect on a real
	// UART; the runtime keeps the descriptor non-blocking.
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w: %v", ErrNoPort, err)
		}
		return nil, fmt.Errorf("open %s at %d baud: %w", path, baud, err)
	}
	p, err := serial.Open(path, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s at %d baud: %w", path, baud, portErr(err))
	}
	// Drop whatever the board printed before we opened the port.
	_ = p.ResetInputBuffer()
	return &Port{p: p, f: f, path: path}, nil
}

// Read reads from the port, blocking until data arrives or the port is
// closed or fails. A terminal that hangs up (a USB adapter pulled) reads
// as io.EOF.
func (p *Port) Read(b []byte) (int, error) {
	n, err := p.f.Read(b)
	if err != nil {
		return n, portErr(err)
	}
	return n, nil
}

// Write writes to the port.
func (p *Port) Write(b []byte) (int, error) {
	n, err := p.f.Write(b)
	if err != nil {
		return n, portErr(err)
	}
	return n, nil
}

// Close closes the port.
func (p *Port) Close() error {
	err := p.f.Close()
	if perr := p.p.Close(); err == nil {
		err = perr
	}
	return err
}

// portPresent reports why the device at path cannot be a port: it does
// not exist.
func portPresent(path string) error {
	_, err := os.Stat(path)
	return err
}
