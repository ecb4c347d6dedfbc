package station

import (
	"context"
	"errors"
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
			if empty := s.runSlot(ctx, slot, opts, count); empty {
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

// runSlot runs boards on one slot; with Once it reports whether the slot
// was empty.
func (s *Station) runSlot(ctx context.Context, slot SlotConfig, opts RunOptions, count func(error)) (empty bool) {
	m, _ := flasher.ParseMatch(slot.Port) // checked by Validate
	for ctx.Err() == nil {
		path, err := m.Resolve()
		if err != nil {
			if opts.Once {
				return true
			}
			pause.For(ctx, opts.Poll)
			continue
		}
		res, err := s.Provision(ctx, slot, path)
		if ctx.Err() != nil && err != nil {
			return false // stopped, not failed
		}
		count(err)
		if opts.Once {
			return false
		}
		serial := ""
		if res != nil {
			serial = res.Record.Serial
		} else {
			var be *BoardError
			if errors.As(err, &be) {
				serial = be.Serial
			}
		}
		s.waitGone(ctx, m, path, serial, opts.Poll)
	}
	return false
}

// waitGone returns when the board that ran on path has gone: the port
// vanished or moved, or a board with another serial answers on it.
func (s *Station) waitGone(ctx context.Context, m flasher.Match, path, serial string, poll time.Duration) {
	for i := 1; pause.For(ctx, poll); i++ {
		p, err := m.Resolve()
		if err != nil || p != path {
			return
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
			return
		}
	}
}
