// Package rawpty opens pseudo-terminals that behave like a board's USB
// serial port: raw, 8 bits, no echo, no line discipline. Linux and macOS
// have them; on other systems (Windows) Open fails with an error wrapping
// ErrNoPTY, and virtual boards are served over TCP instead.
package rawpty

import "errors"

// ErrNoPTY means the system has no pseudo-terminals.
var ErrNoPTY = errors.New("no pseudo-terminals")
