package board

import (
	"sync"
	"time"
)

// pacer holds one direction of the line to its byte rate: a
// pseudo-terminal is otherwise as fast as memory. It keeps a clock of when
// the line is next free. An idle line does not bank time; but bytes that
// were already waiting continue the stream from where the clock stands, so
// that a sleep that overruns does not slow the line down.
type pacer struct {
	mu      sync.Mutex
	perByte time.Duration
	free    time.Time // when the last byte scheduled has crossed
	clock   *clock    // the loop that uses the pacer sleeps on it
}

// maxCatchUp bounds how far behind a continuing stream may fall and still
// catch up: past it, the line was idle after all.
const maxCatchUp = 20 * time.Millisecond

func newPacer(baud int) (*pacer, error) {
	c, err := newClock()
	if err != nil {
		return nil, err
	}
	return &pacer{perByte: time.Duration(10 * int64(time.Second) / int64(baud)), clock: c}, nil
}

// reserve schedules n bytes on the line, to start no earlier than
// notBefore (zero: now), and returns when the last of them has crossed.
// continued says the bytes were waiting to go when the previous ones had
// crossed.
func (p *pacer) reserve(n int, continued bool, notBefore time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if notBefore.After(now) {
		now = notBefore
	}
	if behind := now.Sub(p.free); behind > 0 && (!continued || behind > maxCatchUp) {
		p.free = now
	}
	p.free = p.free.Add(time.Duration(n) * p.perByte)
	return p.free
}

// sleepUntil sleeps until t, or returns false early if stop closes.
func sleepUntil(t time.Time, stop <-chan struct{}) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-stop:
		return false
	}
}

// chunkFor is how many bytes to hand to the terminal at once when sending:
// about a millisecond of line time, so the station sees bytes arrive at the
// line's rate rather than in bursts.
func (p *pacer) chunkFor() int {
	n := int(time.Millisecond / p.perByte)
	return max(n, 1)
}
