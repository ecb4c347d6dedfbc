// Package flasher is the station's side of the board link: serial ports
// (go.bug.st/serial, discovered by USB VID/PID, serial number or by-id
// name), MCUmgr's Simple Management Protocol (SMP) over them, and a client
// for each command group a board answers: OS (echo, reset, parameters,
// info), image (state, upload), file system (upload, download, sha256) and
// zerotouch's provisioning group (identity, TPM passthrough, keygen,
// commit).
//
// The codec (frame.go, smp.go) follows the SMP Protocol Specification and
// the SMP serial transport of Zephyr's MCUmgr, and is shared with package
// board, the virtual board, so both sides speak the same bytes.
//
// Errors name the board (its port) and the command; conditions callers
// branch on are sentinels (ErrTimeout, ErrDisconnected, ErrVerify...) and
// errors the board answers are *Error values that match ErrNotFound,
// ErrMismatch and the like with errors.Is.
package flasher
