package board

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clock is the pacer's own timer: a Linux timerfd, which the runtime's
// poller waits on. Runtime timers wait in whole milliseconds and wake up
// to a millisecond late; a timerfd wakes the poller within a tenth of
// one. Late wake-ups at each end of each request would otherwise be
// charged to the station as line time. One goroutine at a time sleeps on
// a clock; Close wakes it.
type clock struct {
	f  *os.File
	rc syscall.RawConn
}

func newClock() (*clock, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("line clock: %w", err)
	}
	f := os.NewFile(uintptr(fd), "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("line clock: %w", err)
	}
	return &clock{f: f, rc: rc}, nil
}

// sleepUntil sleeps until t and reports false if the clock was closed.
func (c *clock) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	var serr error
	if err := c.rc.Control(func(fd uintptr) { serr = unix.TimerfdSettime(int(fd), 0, &spec, nil) }); err != nil || serr != nil {
		return false
	}
	var expirations [8]byte
	_, err := c.f.Read(expirations[:])
	return err == nil
}

// Close wakes a sleeper, which sees false, and frees the timer.
func (c *clock) Close() error { return c.f.Close() }
