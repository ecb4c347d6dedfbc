//go:build !unix

package flasher

import (
	"fmt"
	"strings"

	"go.bug.st/serial"
)

// Port is an open serial port. It satisfies Link. Close unblocks a Read in
// progress.
//
// go.bug.st/serial sets the line up (rate, 8N1, exclusive access) and
// carries the bytes: on Windows its reads wait on overlapped I/O, which
// Close cancels.
type Port struct {
	p    serial.Port
	path string
}

// OpenPort opens the serial port at path (COM7, or \\.\COM12) at baud,
// 8N1. A port the system does not have is an error wrapping ErrNoPort.
func OpenPort(path string, baud int) (*Port, error) {
	p, err := serial.Open(path, &serial.Mode{BaudRate: baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		return nil, fmt.Errorf("open %s at %d baud: %w", path, baud, portErr(err))
	}
	// Drop whatever the board printed before we opened the port.
	_ = p.ResetInputBuffer()
	return &Port{p: p, path: path}, nil
}

// Read reads from the port, blocking until data arrives or the port is
// closed or fails.
func (p *Port) Read(b []byte) (int, error) {
	for {
		n, err := p.p.Read(b)
		if err != nil {
			return n, portErr(err)
		}
		if n > 0 || len(b) == 0 {
			return n, nil
		}
		// go.bug.st/serial reads 0, nil when a read timeout passes; the
		// port has none set, but a driver may still return early.
	}
}

// Write writes to the port.
func (p *Port) Write(b []byte) (int, error) {
	n, err := p.p.Write(b)
	if err != nil {
		return n, portErr(err)
	}
	return n, nil
}

// Close closes the port.
func (p *Port) Close() error {
	return p.p.Close()
}

// portPresent reports why path is not among the system's serial ports
// (COM7 and \\.\COM7 are the same port).
func portPresent(path string) error {
	names, err := serial.GetPortsList()
	if err != nil {
		return fmt.Errorf("list serial ports: %w", err)
	}
	want := strings.TrimPrefix(path, `\\.\`)
	for _, n := range names {
		if strings.EqualFold(strings.TrimPrefix(n, `\\.\`), want) {
			return nil
		}
	}
	return fmt.Errorf("the system has no serial port %s", path)
}
