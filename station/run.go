package station

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"zerotouch/flasher"
	"zerotouch/internal/pause"
)

// RunOptions say when Run stops.
type RunOptions struct {
	// Once provisions the board present on each slot, once, and returns;
	// an empty slot is skipped.
	Once bool
	// Count stops after this many boards have run (passed or failed);
	// 0 means no limit.
	Count int
	// Poll is how often an empty or finished slot is looked at for a new
	// board; default 500 ms.
	Poll time.Duration
}

// Summary counts the boards of a Run.
type Summary struct {
	Passed  int      `json:"passed"`
	Failed  int      `json:"failed"`
	Empty   []string `json:"emptySlots,omitempty"` // with Once: slots with no board
	Elapsed float64  `json:"seconds"`
}

// Run runs every slot in parallel until ctx ends, or as opts say. A board
// appearing on a slot starts its run; a board that fails, or is pulled
// mid-run, fails its slot's run and leaves the others alone. After a run
// the slot waits for the board to go (its port to vanish, or another
// board's serial to answer) before it starts again.
func (s *Station) Run(ctx context.Context, opts RunOptions) (Summary, error) {
	if opts.Poll <= 0 {
		opts.Poll = 500 * time.Millisecond
	}
	start := time.Now()
	s.warnInProgress(ctx)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var sum Summary
	count := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			sum.Failed++
		} else {
			sum.Passed++
		}
		if opts.Count > 0 && sum.Passed+sum.Failed >= opts.Count {
			cancel()
		}
	}
	var wg sync.WaitGroup
	for _, slot := range s.cfg.Slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if empty := s.superviseSlot(ctx, slot, opts, count); empty {
				mu.Lock()
				sum.Empty = append(sum.Empty, slot.Name)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sum.Elapsed = time.Since(start).Seconds()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return sum, err
	}
	return sum, nil
}

// warnInProgress logs the boards whose runs never ended (the station
// stopped mid-run): each must be provisioned again before it ships, and
// is, when it is put back on a fixture.
func (s *Station) warnInProgress(ctx context.Context) {
	list, err := s.deps.Store.InProgress(ctx)
	if err != nil || len(list) == 0 {
		return
	}
	serials := make([]string, 0, len(list))
	for _, r := range list {
		serials = append(serials, r.Serial)
	}
	s.log.Warn(fmt.Sprintf("%d boards were being provisioned when the station last stopped: put each back on a fixture to provision it again", len(list)),
		"serials", serials)
}

// Operator commands for a slot whose board failed, in Run: see Retry and
// Skip.
const (
	cmdRetry = "retry"
	cmdSkip  = "skip"
)

// Errors of Retry and Skip.
var (
	// ErrNoSlot means no slot of the station has that name.
	ErrNoSlot = errors.New("no such slot")
	// ErrNotWaiting means the slot has no failed board waiting: Run is
	// not running, or the slot is busy, empty or its board passed.
	ErrNotWaiting = errors.New("the slot has no failed board waiting for Retry or Skip")
)

// Retry runs the failed board on the slot named slot again, now, without
// waiting for it to be taken off: what an operator does after reseating
// it. Only while Run runs, between the board's failure and its removal;
// otherwise ErrNotWaiting (or ErrNoSlot). Safe for concurrent use.
func (s *Station) Retry(slot string) error { return s.command(slot, cmdRetry) }

// Skip sets the failed board on the slot named slot aside: the slot
// reports it (an Event with Result Skipped) and takes the next board once
// this one is off the fixture. Its record stays failed. Errors as Retry.
func (s *Station) Skip(slot string) error { return s.command(slot, cmdSkip) }

func (s *Station) command(slot, cmd string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.waiting[slot]
	if !ok {
		for _, sc := range s.cfg.Slots {
			if sc.Name == slot {
				return fmt.Errorf("slot %s: %w", slot, ErrNotWaiting)
			}
		}
		return fmt.Errorf("slot %q: %w", slot, ErrNoSlot)
	}
	delete(s.waiting, slot) // one command per failure
	ch <- cmd               // buffered: the slot takes it at its next look
	return nil
}

// awaitCommand makes the slot open to Retry and Skip until the returned
// function closes it again.
func (s *Station) awaitCommand(slot string) (<-chan string, func()) {
	ch := make(chan string, 1)
	s.mu.Lock()
	if s.waiting == nil {
		s.waiting = map[string]chan string{}
	}
	s.waiting[slot] = ch
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		if s.waiting[slot] == ch {
			delete(s.waiting, slot)
		}
		s.mu.Unlock()
	}
}

// superviseSlot runs the slot and, should it end in a fault of the
// station's own (a panic outside a board's run, which Provision guards
// itself), logs it, tells the operator and starts the slot again: one
// slot's fault never ends the process or the other slots.
func (s *Station) superviseSlot(ctx context.Context, slot SlotConfig, opts RunOptions, count func(error)) (empty bool) {
	for {
		empty, p, stack := s.protectedSlot(ctx, slot, opts, count)
		if p == nil {
			return empty
		}
		s.log.Error("a slot ended in an internal error; it starts again", "slot", slot.Name, "panic", fmt.Sprint(p), "stack", stack)
		s.deps.Events(Event{Time: s.deps.Now(), Slot: slot.Name, Result: Failed,
			Message: "the station hit an internal error on this slot and started it again: if it happens again, call the line engineer",
			Error:   fmt.Sprintf("%v: %v", ErrInternal, p)})
		if opts.Once || !pause.For(ctx, time.Second) {
			return false
		}
	}
}

func (s *Station) protectedSlot(ctx context.Context, slot SlotConfig, opts RunOptions, count func(error)) (empty bool, p any, stack string) {
	defer func() {
		if p = recover(); p != nil {
			stack = string(debug.Stack())
		}
	}()
	return s.runSlot(ctx, slot, opts, count), nil, ""
}

// runSlot runs boards on one slot; with Once it reports whether the slot
// was empty.
func (s *Station) runSlot(ctx context.Context, slot SlotConfig, opts RunOptions, count func(error)) (empty bool) {
	m, _ := flasher.ParseMatch(slot.Port) // checked by Validate
	retry := false
	var path string
	for ctx.Err() == nil {
		if !retry {
			var err error
			if path, err = m.Resolve(); err != nil {
				if opts.Once {
					return true
				}
				pause.For(ctx, opts.Poll)
				continue
			}
		}
		retry = false
		res, err := s.Provision(ctx, slot, path)
		if ctx.Err() != nil && err != nil {
			return false // stopped, not failed
		}
		count(err)
		if opts.Once {
			return false
		}
		serial := ""
		var cmds <-chan string
		done := func() {}
		if res != nil {
			serial = res.Record.Serial
		} else {
			var be *BoardError
			if errors.As(err, &be) {
				serial = be.Serial
			}
			cmds, done = s.awaitCommand(slot.Name)
		}
		cmd := s.waitGone(ctx, m, path, serial, opts.Poll, cmds)
		done()
		switch cmd {
		case cmdRetry:
			retry = true
		case cmdSkip:
			s.deps.Events(Event{Time: s.deps.Now(), Slot: slot.Name, Port: path, Serial: serial, Result: Skipped,
				Message: "board set aside: take it off the fixture; the slot takes the next board"})
			s.waitGone(ctx, m, path, serial, opts.Poll, nil)
		}
	}
	return false
}

// waitGone returns "" when the board that ran on path has gone (the port
// vanished or moved, or a board with another serial answers on it) or ctx
// ended, or the operator's command when one comes on cmds first.
func (s *Station) waitGone(ctx context.Context, m flasher.Match, path, serial string, poll time.Duration, cmds <-chan string) string {
	for i := 1; ; i++ {
		select {
		case cmd := <-cmds:
			return cmd
		case <-ctx.Done():
			return ""
		case <-time.After(poll):
		}
		p, err := m.Resolve()
		if err != nil || p != path {
			return ""
		}
		if serial == "" || i%4 != 0 {
			continue
		}
		c, err := flasher.Open(ctx, path, flasher.Options{Name: "probe", Baud: s.cfg.Baud, Timeout: s.cfg.Timeout, SkipParams: true, Retries: -1})
		if err != nil {
			continue
		}
		id, err := c.Identity(ctx)
		c.Close()
		if err == nil && id.Serial != serial {
			return ""
		}
	}
}
