//go:build linux || darwin

package rawpty

import (
	"fmt"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// Open makes a pseudo-terminal pair and puts its terminal side in raw
// mode, as a USB CDC-ACM board's port is. The master comes back
// non-blocking, through the runtime's poller, so that closing it ends a
// Read in progress. The caller closes both.
func Open() (master, tty *os.File, err error) {
	master, tty, err = pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("open pseudo-terminal: %w", err)
	}
	t, err := unix.IoctlGetTermios(int(tty.Fd()), getTermios)
	if err == nil {
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
		err = unix.IoctlSetTermios(int(tty.Fd()), setTermios, t)
	}
	if err != nil {
		master.Close()
		tty.Close()
		return nil, nil, fmt.Errorf("set pseudo-terminal raw: %w", err)
	}
	// pty.Open leaves the master in blocking mode, where Close cannot
	// interrupt a pending Read. A non-blocking copy goes through the
	// runtime's poller instead.
	fd, err := unix.Dup(int(master.Fd()))
	if err == nil {
		err = unix.SetNonblock(fd, true)
		if err != nil {
			unix.Close(fd)
		}
	}
	name := master.Name()
	master.Close()
	if err != nil {
		tty.Close()
		return nil, nil, fmt.Errorf("set pseudo-terminal non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), name), tty, nil
}
