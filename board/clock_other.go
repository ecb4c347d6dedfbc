//go:build !linux

package board

import (
	"sync"
	"time"
)

// clock is the pacer's own timer. Elsewhere than Linux (no timerfd) it
// is a runtime timer, which wakes up to a millisecond late at each end of
// a request: the line runs a little slower than its baud rate there. One
// goroutine at a time sleeps on a clock; Close wakes it.
type clock struct {
	closed chan struct{}
	once   sync.Once
}

func newClock() (*clock, error) { return &clock{closed: make(chan struct{})}, nil }

// sleepUntil sleeps until t and reports false if the clock was closed.
func (c *clock) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-c.closed:
		return false
	}
}

// Close wakes a sleeper, which sees false.
func (c *clock) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}
