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
	"zerotouch/station/records"
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

// Summary counts the boards of a Run. A board counts once, by its
// serial number, with the result of its last run: a board that failed,
// was retried and passed is one board passed. A run that failed before
// the board said who it was counts as one board failed until the slot's
// next run, which takes its place (the same board, reseated or retried);
// with Once, a port where nothing answered at all is an Empty slot.
type Summary struct {
	Passed  int         `json:"passed"`
	Failed  int         `json:"failed"`
	Empty   []EmptySlot `json:"emptySlots,omitempty"` // with Once: slots with no board the station could run
	Elapsed float64     `json:"seconds"`
}

// EmptySlot is a slot that, with Once, had no board the station could
// run, and why.
type EmptySlot struct {
	Slot    string `json:"slot"`
	Port    string `json:"port"`
	Reason  string `json:"reason"`  // EmptyNoPort, EmptySilent or EmptyPortError
	Message string `json:"message"` // for the operator
	Error   string `json:"error,omitempty"`
}

// tally counts boards for a Summary.
type tally struct {
	mu      sync.Mutex
	last    map[string]bool // by serial: whether its last run passed
	unknown map[string]bool // by slot: its last run failed before the board said who it was
}

func (t *tally) add(slot, serial string, err error) (boards int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last == nil {
		t.last, t.unknown = map[string]bool{}, map[string]bool{}
	}
	if serial == "" {
		t.unknown[slot] = true
	} else {
		delete(t.unknown, slot)
		t.last[serial] = err == nil
	}
	return len(t.last) + len(t.unknown)
}

func (t *tally) counts() (passed, failed int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ok := range t.last {
		if ok {
			passed++
		} else {
			failed++
		}
	}
	return passed, failed + len(t.unknown)
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
	var t tally
	count := func(slot, serial string, err error) {
		if n := t.add(slot, serial, err); opts.Count > 0 && n >= opts.Count {
			cancel()
		}
	}
	empties := make([]*EmptySlot, len(s.cfg.Slots))
	var wg sync.WaitGroup
	for i, slot := range s.cfg.Slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			empties[i] = s.superviseSlot(ctx, slot, opts, count)
		}()
	}
	wg.Wait()
	var sum Summary
	sum.Passed, sum.Failed = t.counts()
	for _, e := range empties {
		if e != nil {
			sum.Empty = append(sum.Empty, *e)
		}
	}
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
// otherwise ErrNotWaiting (or ErrNoSlot). A board that failed as a
// possible clone is retried only once the supervisor unlocked the
// station (Unlock); until then ErrSupervisor. Safe for concurrent use.
func (s *Station) Retry(slot string) error { return s.command(slot, cmdRetry) }

// Skip sets the failed board on the slot named slot aside: the slot
// reports it (an Event with Result Skipped) and takes the next board once
// this one is off the fixture. Its record stays failed. Errors as Retry.
func (s *Station) Skip(slot string) error { return s.command(slot, cmdSkip) }

func (s *Station) command(slot, cmd string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.waiting[slot]
	if ok && cmd == cmdRetry && s.clones[slot] && !s.supervised {
		return fmt.Errorf("slot %s: the board failed as a possible clone: %w (Unlock)", slot, ErrSupervisor)
	}
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
// function closes it again. Retry of a board that failed as a possible
// clone needs the supervisor's Unlock.
func (s *Station) awaitCommand(slot string, clone bool) (<-chan string, func()) {
	ch := make(chan string, 1)
	s.mu.Lock()
	if s.waiting == nil {
		s.waiting, s.clones = map[string]chan string{}, map[string]bool{}
	}
	s.waiting[slot], s.clones[slot] = ch, clone
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		if s.waiting[slot] == ch {
			delete(s.waiting, slot)
			delete(s.clones, slot)
		}
		s.mu.Unlock()
	}
}

// superviseSlot runs the slot and, should it end in a fault of the
// station's own (a panic outside a board's run, which Provision guards
// itself), logs it, tells the operator and starts the slot again: one
// slot's fault never ends the process or the other slots.
func (s *Station) superviseSlot(ctx context.Context, slot SlotConfig, opts RunOptions, count func(slot, serial string, err error)) *EmptySlot {
	for {
		empty, p, stack := s.protectedSlot(ctx, slot, opts, count)
		if p == nil {
			return empty
		}
		s.log.Error("a slot ended in an internal error; it starts again", "slot", slot.Name, "panic", fmt.Sprint(p), "stack", stack)
		s.deps.Events(Event{Schema: EventSchema, Time: s.deps.Now(), Slot: slot.Name, Result: Failed,
			Message: "the station hit an internal error on this slot and started it again: if it happens again, call the line engineer",
			Error:   fmt.Sprintf("%v: %v", ErrInternal, p)})
		if opts.Once || !pause.For(ctx, time.Second) {
			return nil
		}
	}
}

func (s *Station) protectedSlot(ctx context.Context, slot SlotConfig, opts RunOptions, count func(slot, serial string, err error)) (empty *EmptySlot, p any, stack string) {
	defer func() {
		if p = recover(); p != nil {
			stack = string(debug.Stack())
		}
	}()
	return s.runSlot(ctx, slot, opts, count), nil, ""
}

// runSlot runs boards on one slot; with Once it reports the slot empty
// when it had no board the station could run.
func (s *Station) runSlot(ctx context.Context, slot SlotConfig, opts RunOptions, count func(slot, serial string, err error)) *EmptySlot {
	m, _ := flasher.ParseMatch(slot.Port) // checked by Validate
	retry := false
	var path string
	lastReason, seen := "", false
	for ctx.Err() == nil {
		if !retry {
			var err error
			if path, err = m.Resolve(); err != nil {
				e := s.emptyNoPort(slot, m, err, seen)
				if e.Reason != lastReason { // each change, once
					lastReason = e.Reason
					s.reportEmpty(e)
				}
				if opts.Once {
					return e
				}
				pause.For(ctx, opts.Poll)
				continue
			}
			lastReason, seen = "", true
		}
		if !retry {
			s.forgetHanded(slot.Name) // another board: a serial number of its own
		}
		retry = false
		res, err := s.Provision(ctx, slot, path)
		if ctx.Err() != nil && err != nil {
			return nil // stopped, not failed
		}
		if opts.Once {
			if e := emptyAnswer(slot, path, err); e != nil {
				s.reportEmpty(e)
				return e
			}
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
		count(slot.Name, serial, err)
		if opts.Once {
			return nil
		}
		var cmds <-chan string
		done := func() {}
		if res == nil {
			cmds, done = s.awaitCommand(slot.Name, errors.Is(err, records.ErrClone))
		}
		var sum []byte // a stock board is known by its configuration
		if res != nil {
			sum = res.Record.ConfigSHA256
		}
		cmd := s.waitGone(ctx, m, path, serial, sum, opts.Poll, cmds)
		done()
		switch cmd {
		case cmdRetry:
			retry = true
		case cmdSkip:
			if serial != "" {
				s.mu.Lock()
				operator := s.operator
				s.mu.Unlock()
				if err := s.deps.Store.SetAside(ctx, serial, slot.Name, operator); err != nil {
					s.log.Warn("the board set aside could not be put in the audit", "slot", slot.Name, "serial", serial, "err", err)
				}
			}
			s.log.Info("board set aside", "slot", slot.Name, "serial", serial)
			s.deps.Events(Event{Schema: EventSchema, Time: s.deps.Now(), Slot: slot.Name, Port: path, Serial: serial, Result: Skipped,
				Message: "board set aside: take it off the fixture; the slot takes the next board"})
			s.waitGone(ctx, m, path, serial, nil, opts.Poll, nil)
		}
	}
	return nil
}

// emptyNoPort describes a slot whose port cannot be found; seen: it was
// there earlier in this run (a board with its own USB port was taken
// off).
func (s *Station) emptyNoPort(slot SlotConfig, m flasher.Match, err error, seen bool) *EmptySlot {
	e := &EmptySlot{Slot: slot.Name, Port: slot.Port, Reason: EmptyNoPort, Error: err.Error()}
	switch {
	case !errors.Is(err, flasher.ErrNoPort):
		e.Reason = EmptyPortError
		e.Message = "the slot's port rule is ambiguous or the ports cannot be listed (see the cause): call the line engineer"
	case seen:
		e.Message = "no board on the slot: put the next board on the fixture"
	case m.VID == "" && m.PID == "" && m.Serial == "":
		e.Message = fmt.Sprintf("no port %s on this station: plug the fixture in, or check the slot's port in the configuration (is it mistyped?)", m.Path)
	default:
		e.Message = fmt.Sprintf("no USB serial port matches %s: plug the fixture in, or check the slot's port rule in the configuration", slot.Port)
	}
	return e
}

// emptyAnswer describes, with Once, a slot whose port was there but where
// nothing answered: no board, or one that is dead. Nil when a board
// answered, even with nonsense: that is a board that failed.
func emptyAnswer(slot SlotConfig, path string, err error) *EmptySlot {
	if err != nil && flasher.IsNetPort(path) && errors.Is(err, flasher.ErrNoPort) {
		// A port on the network that nothing listens on: the port
		// server is off or unreachable, or the slot names it wrongly.
		return &EmptySlot{Slot: slot.Name, Port: path, Reason: EmptyNoPort, Error: err.Error(),
			Message: fmt.Sprintf("nothing listens at %s: switch the port server (ser2net, the device server) on, or check the slot's port in the configuration", path)}
	}
	var be *BoardError
	if err == nil || !errors.As(err, &be) || !be.silent {
		return nil
	}
	return &EmptySlot{Slot: slot.Name, Port: path, Reason: EmptySilent, Error: err.Error(),
		Message: "the port is there but no board answers on it: seat the board, check the fixture's cable and the baud rate"}
}

// reportEmpty tells the operator (an event) and the log why a slot is
// empty.
func (s *Station) reportEmpty(e *EmptySlot) {
	s.log.Info("slot empty", "slot", e.Slot, "port", e.Port, "reason", e.Reason, "err", e.Error)
	s.deps.Events(Event{Schema: EventSchema, Time: s.deps.Now(), Slot: e.Slot, Port: e.Port, Result: Empty,
		Reason: e.Reason, Message: e.Message, Error: e.Error})
}

// waitGone returns "" when the board that ran on path has gone (the port
// vanished or moved, or a board with another serial answers on it) or ctx
// ended, or the operator's command when one comes on cmds first.
//
// A stock board cannot say its serial number: the board that passed is
// known by the configuration it was given (configSum, its sha256), and a
// board on the port that holds another, or none, is another board.
// Without configSum (a stock board that failed) only the port tells.
func (s *Station) waitGone(ctx context.Context, m flasher.Match, path, serial string, configSum []byte, poll time.Duration, cmds <-chan string) string {
	stock := s.cfg.Board.Profile == ProfileStock
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
		if serial == "" || i%4 != 0 || stock && configSum == nil {
			continue
		}
		c, err := flasher.Open(ctx, path, flasher.Options{Name: "probe", Baud: s.cfg.Baud, Timeout: s.cfg.Timeout, SkipParams: true, Retries: -1})
		if err != nil {
			continue
		}
		if stock {
			if another(ctx, c, s.cfg.Template.Path, configSum) {
				c.Close()
				return ""
			}
			c.Close()
			continue
		}
		id, err := c.Identity(ctx)
		c.Close()
		if err == nil && id.Serial != serial {
			return ""
		}
	}
}
