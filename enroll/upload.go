package enroll

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"zerotouch/internal/pause"
)

// State is where an enrollment stands in the upload queue.
type State string

// Queue states.
const (
	StatePending  State = "pending"   // waiting to go up
	StateInFlight State = "in_flight" // sent, or about to be; outcome unknown
	StateUploaded State = "uploaded"  // DPS holds it as queued
	StateFailed   State = "failed"    // DPS refused it; Outcome.Error says why
	StateConflict State = "conflict"  // DPS holds a different enrollment under its ID
)

// Outcome settles one queued enrollment.
type Outcome struct {
	RegistrationID string `json:"registrationId"`
	State          State  `json:"state"`           // StatePending (try again later), StateUploaded, StateFailed or StateConflict
	Error          string `json:"error,omitempty"` // the service's refusal, or the fields in conflict
	ETag           string `json:"etag,omitempty"`  // the service's etag, when uploaded
}

// Queue is what the Uploader drains: the station's records, or an upload
// state file. Every method must be durable when it returns (a crash right
// after loses nothing) and the queue must serve one Uploader at a time.
type Queue interface {
	// Recover puts enrollments an earlier run left in flight back to
	// pending and reports how many there were. The Uploader calls it
	// once, before its first Claim.
	Recover(ctx context.Context) (int, error)
	// Claim marks up to n pending enrollments in flight and returns
	// them; none means nothing is pending.
	Claim(ctx context.Context, n int) ([]Enrollment, error)
	// Settle records outcomes of claimed enrollments.
	Settle(ctx context.Context, outcomes []Outcome) error
}

// UploaderConfig configures an Uploader.
type UploaderConfig struct {
	Client *Client
	Queue  Queue
	// Quota is the DPS service quota in operations a minute (1,000 by
	// default, the documented limit); the Uploader sends requests at
	// Share of it (default 0.97) so that it is rarely throttled.
	Quota int
	Share float64
	// Pacer, when set, paces the requests instead of a pacer of this
	// Uploader's own at Quota × Share (NewRatePacer): one that uploaders
	// share (records.PGQuota) keeps them together within the quota.
	Pacer Pacer
	// Workers is how many requests may be in flight at once (default 4).
	Workers int
	// BatchSize is the number of enrollments in each bulk request,
	// 1 to MaxBulk (default MaxBulk).
	BatchSize int
	// Attempts is how many times a batch is sent while the answers are
	// transient (429, 5xx, none) before the Uploader stops and leaves
	// its enrollments pending (default 12).
	Attempts int
	Logger   *slog.Logger
	// LogBatches logs each settled batch at level Info (what a
	// long-lived uploader did); otherwise at Debug.
	LogBatches bool
	// Progress, when set, is called after each batch is settled. It
	// must not block.
	Progress func(Stats)
}

// Validate checks the configuration after defaults are applied.
func (c *UploaderConfig) Validate() error {
	switch {
	case c.Client == nil || c.Queue == nil:
		return errors.New("uploader: a client and a queue are required")
	case c.Quota < 0 || c.Share < 0 || c.Share > 1:
		return fmt.Errorf("uploader: quota %d a minute at share %.2f: want a quota above 0 and a share in (0, 1]", c.Quota, c.Share)
	case c.Workers < 0 || c.Workers > 64:
		return fmt.Errorf("uploader: %d workers: want 1 to 64", c.Workers)
	case c.BatchSize < 0 || c.BatchSize > MaxBulk:
		return fmt.Errorf("uploader: batch size %d: DPS takes 1 to %d enrollments a request", c.BatchSize, MaxBulk)
	case c.Attempts < 0:
		return fmt.Errorf("uploader: %d attempts", c.Attempts)
	}
	return nil
}

// Stats counts what an Uploader did.
type Stats struct {
	Recovered int // enrollments found in flight from an earlier run
	Uploaded  int // enrollments now held by DPS as queued
	Already   int // of Uploaded, those DPS already held (an earlier run's)
	Failed    int // refused by DPS
	Conflicts int // DPS holds something else under the ID
	Requests  int // HTTP requests sent
	Throttled int // of Requests, answered 429
	Transient int // of Requests, answered 5xx or not at all
	Elapsed   time.Duration
	LastError string
}

// ErrIncomplete means the Uploader stopped with enrollments still pending:
// DPS kept failing, refused the credentials, or the context ended. They
// go up on the next run. The error that stopped it is in the chain:
// Permanent reports whether the next run can fare better without a change
// of configuration.
var ErrIncomplete = errors.New("upload incomplete")

// Uploader drains a Queue into DPS with bulk create operations. Items the
// service says already exist are read back: identical means uploaded (an
// earlier, interrupted run sent them), different is a conflict left for a
// person. Create never overwrites, so sending a batch again after a crash
// or a lost answer cannot enroll anything twice.
//
// An enrollment the queue hands out with an ETag (any value; "*" when the
// etag is not known) replaces the one DPS holds for a board that was
// provisioned again (a new certificate): it goes with mode update, which
// writes the same content however often it is sent.
type Uploader struct {
	cfg   UploaderConfig
	log   *slog.Logger
	pace  Pacer
	mu    sync.Mutex
	stats Stats
	tries map[string]int // by lower-case registration ID: settled back to pending this run
	stop  context.CancelCauseFunc
	// attempts is this Run's UploaderConfig.Attempts or RunOptions.Attempts.
	attempts int
}

// NewUploader applies defaults and checks cfg. The Uploader paces the
// client it is given: give it a client of its own.
func NewUploader(cfg UploaderConfig) (*Uploader, error) {
	if cfg.Quota == 0 {
		cfg.Quota = 1000
	}
	if cfg.Share == 0 {
		cfg.Share = 0.97
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = MaxBulk
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = 12
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	u := &Uploader{cfg: cfg, log: cfg.Logger, tries: map[string]int{}}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	u.pace = cfg.Pacer
	if u.pace == nil {
		u.pace = NewRatePacer(float64(cfg.Quota) * cfg.Share)
	}
	cfg.Client.pacer = &countingPacer{Pacer: u.pace, count: u.countRequest}
	return u, nil
}

// RunOptions bound one Run.
type RunOptions struct {
	// Attempts, when above 0, replaces UploaderConfig.Attempts for this
	// Run: a last drain before a station stops sends each batch this many
	// times at most while the answers are transient.
	Attempts int
}

// Run uploads until the queue has nothing pending, and returns what it
// did (this Run's counts). One Run at a time. It returns an error wrapping
// ErrIncomplete when it had to stop with enrollments left (they stay
// pending or in flight in the queue), or the queue's error.
//
// It stops at the first error that no retry can mend (Permanent: the
// server's certificate is not trusted, its name does not resolve, or it
// refused the credentials), and after UploaderConfig.Attempts transient
// answers for one batch; the error wraps the service's (errors.Is with
// ErrUntrusted, ErrUnauthorized, ...). The context's end stops it too:
// batches in flight are put back to pending, and the next Run re-checks
// any that DPS took.
func (u *Uploader) Run(ctx context.Context) (Stats, error) {
	return u.RunWith(ctx, RunOptions{})
}

// RunWith is Run with o's bounds.
func (u *Uploader) RunWith(ctx context.Context, o RunOptions) (Stats, error) {
	if o.Attempts < 0 {
		return Stats{}, fmt.Errorf("uploader: %d attempts", o.Attempts)
	}
	start := time.Now()
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	u.mu.Lock()
	u.stats, u.tries = Stats{}, map[string]int{} // each Run counts its own
	u.attempts = u.cfg.Attempts
	if o.Attempts > 0 {
		u.attempts = o.Attempts
	}
	u.mu.Unlock()
	u.stop = stop
	n, err := u.cfg.Queue.Recover(ctx)
	if err != nil {
		return u.snapshot(start), fmt.Errorf("recover the upload queue: %w", err)
	}
	if n > 0 {
		u.log.Info("upload: re-checking enrollments an interrupted run left in flight", "count", n)
		u.update(func(s *Stats) { s.Recovered = n })
	}

	// The dispatcher alone counts outstanding batches, and a worker
	// settles its batch before it reports done: so a Claim that finds
	// nothing while none is outstanding means nothing is left.
	done := make(chan struct{})
	outstanding := 0
	for ctx.Err() == nil {
		if outstanding == u.cfg.Workers {
			select {
			case <-done:
				outstanding--
			case <-ctx.Done():
			}
			continue
		}
		batch, err := u.cfg.Queue.Claim(ctx, u.cfg.BatchSize)
		if err != nil {
			stop(fmt.Errorf("claim from the upload queue: %w", err))
			break
		}
		if len(batch) == 0 {
			if outstanding == 0 {
				break // nothing pending, nothing in flight
			}
			select {
			case <-done: // a batch settled: it may have put items back
				outstanding--
			case <-ctx.Done():
			}
			continue
		}
		outstanding++
		go func() {
			u.sendBatch(ctx, batch)
			done <- struct{}{}
		}()
	}
	for ; outstanding > 0; outstanding-- {
		<-done
	}
	s := u.snapshot(start)
	if cause := context.Cause(ctx); cause != nil {
		if errors.Is(cause, context.Canceled) || errors.Is(cause, context.DeadlineExceeded) {
			return s, fmt.Errorf("%w: %w", ErrIncomplete, cause)
		}
		return s, cause
	}
	return s, nil
}

// sendBatch sends a claimed batch: new enrollments with mode create,
// replacements (those claimed with an ETag) with mode update.
func (u *Uploader) sendBatch(ctx context.Context, batch []Enrollment) {
	var create, replace []Enrollment
	for _, e := range batch {
		if e.ETag != "" {
			e.ETag = ""
			replace = append(replace, e)
		} else {
			create = append(create, e)
		}
	}
	if len(create) > 0 {
		u.send(ctx, ModeCreate, create)
	}
	if len(replace) > 0 {
		u.send(ctx, ModeUpdate, replace)
	}
}

// send sends one batch until DPS answers it, then settles every item.
func (u *Uploader) send(ctx context.Context, mode string, batch []Enrollment) {
	var res *BulkResult
	var err error
	for attempt := 1; ; attempt++ {
		res, err = u.cfg.Client.Bulk(ctx, mode, batch)
		if err == nil {
			break
		}
		u.noteError(err)
		if ctx.Err() != nil {
			u.release(batch, "")
			return
		}
		switch {
		case Permanent(err):
			// Nothing will go up with this configuration: stop the run
			// at once instead of sending the rest to meet the same fate.
			u.release(batch, err.Error())
			u.stop(fmt.Errorf("%w: %w", ErrIncomplete, err))
			return
		case Transient(err):
			if attempt >= u.attempts {
				u.release(batch, err.Error())
				u.stop(fmt.Errorf("%w: DPS did not take a batch in %d attempts, last: %w", ErrIncomplete, attempt, err))
				return
			}
			wait := Backoff(attempt)
			var se *ServiceError
			if errors.As(err, &se) && se.RetryAfter > 0 {
				wait = se.RetryAfter
				if err := u.pace.Pause(ctx, wait); err != nil && ctx.Err() == nil {
					u.log.Warn("upload: the pause DPS asked for could not be passed on to the other uploaders", "wait", wait, "err", err)
				}
			}
			u.log.Debug("upload: batch will be sent again", "attempt", attempt, "wait", wait, "err", err)
			if !pause.For(ctx, wait) {
				u.release(batch, "")
				return
			}
		case len(batch) > 1 && (errors.Is(err, ErrBadRequest) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrInvalid)):
			// Something in the batch the client's checks missed, or a
			// batch too large as a whole: send the items one by one.
			u.log.Warn("upload: DPS refused a batch; sending its enrollments one by one", "err", err)
			for i := range batch {
				u.send(ctx, mode, batch[i:i+1])
			}
			return
		case errors.Is(err, ErrBadRequest), errors.Is(err, ErrTooLarge), errors.Is(err, ErrInvalid):
			u.settle(ctx, []Outcome{{RegistrationID: batch[0].RegistrationID, State: StateFailed, Error: err.Error()}}, batch)
			return
		default: // 404 on the path...: nothing will go up
			u.release(batch, err.Error())
			u.stop(fmt.Errorf("%w: %w", ErrIncomplete, err))
			return
		}
	}

	inBatch := map[string]bool{}
	for i := range batch {
		inBatch[strings.ToLower(batch[i].RegistrationID)] = true
	}
	failed := map[string]BulkError{}
	for _, e := range res.Errors {
		if id := strings.ToLower(e.RegistrationID); e.Failed() && inBatch[id] {
			failed[id] = e
		}
	}
	// An answer that says the batch failed without naming an item of it
	// says nothing about any item: read each one back.
	unclear := !res.IsSuccessful && len(failed) == 0
	outs := make([]Outcome, 0, len(batch))
	for i := range batch {
		e := &batch[i]
		be, bad := failed[strings.ToLower(e.RegistrationID)]
		switch {
		case unclear:
			outs = append(outs, u.reconcile(ctx, e))
		case !bad:
			outs = append(outs, Outcome{RegistrationID: e.RegistrationID, State: StateUploaded})
		case be.Status() == 409:
			outs = append(outs, u.reconcile(ctx, e))
		case be.Status() == 429 || be.Status() >= 500:
			outs = append(outs, Outcome{RegistrationID: e.RegistrationID, State: StatePending,
				Error: fmt.Sprintf("DPS answered %s (errorCode %d)", be.ErrorStatus, be.ErrorCode)})
		default:
			outs = append(outs, Outcome{RegistrationID: e.RegistrationID, State: StateFailed,
				Error: fmt.Sprintf("DPS refused it: %s (errorCode %d)", be.ErrorStatus, be.ErrorCode)})
		}
	}
	u.settle(ctx, outs, batch)
	// Items put back to pending come round again: count their tries and
	// hold this worker back before it does, so that an answer that keeps
	// coming does not spin.
	if tries := u.retry(outs); tries > 0 {
		pause.For(ctx, Backoff(tries))
	}
}

// retry counts the tries of items settled back to pending and stops the
// run when one has had its Attempts. It returns the most tries of any.
func (u *Uploader) retry(outs []Outcome) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	most := 0
	for _, o := range outs {
		if o.State != StatePending {
			continue
		}
		id := strings.ToLower(o.RegistrationID)
		u.tries[id]++
		n := u.tries[id]
		most = max(most, n)
		if n >= u.attempts {
			u.stop(fmt.Errorf("%w: %s still not settled after %d tries: %s", ErrIncomplete, o.RegistrationID, n, o.Error))
		}
	}
	return most
}

// reconcile reads back an enrollment DPS says exists.
func (u *Uploader) reconcile(ctx context.Context, want *Enrollment) Outcome {
	got, err := u.cfg.Client.Get(ctx, want.RegistrationID)
	switch {
	case errors.Is(err, ErrNotFound):
		// Deleted since: try again.
		return Outcome{RegistrationID: want.RegistrationID, State: StatePending}
	case err != nil:
		u.noteError(err)
		if !Transient(err) && ctx.Err() == nil {
			// 401, 403: the policy may create but not read enrollments.
			u.stop(fmt.Errorf("%w: DPS says %s exists but it cannot be read back to compare (the policy needs EnrollmentRead): %w",
				ErrIncomplete, want.RegistrationID, err))
		}
		return Outcome{RegistrationID: want.RegistrationID, State: StatePending, Error: err.Error()}
	}
	if d := Differences(want, got); len(d) > 0 {
		return Outcome{RegistrationID: want.RegistrationID, State: StateConflict,
			Error: "DPS already holds a different enrollment under this registration ID (differs in " + strings.Join(d, ", ") + "); resolve it in DPS, then upload again"}
	}
	return Outcome{RegistrationID: want.RegistrationID, State: StateUploaded, ETag: got.ETag, Error: "already"}
}

func (u *Uploader) settle(ctx context.Context, outs []Outcome, batch []Enrollment) {
	already := 0
	for i := range outs {
		if outs[i].Error == "already" {
			outs[i].Error = ""
			already++
		}
	}
	// Settle even when ctx has ended: the answer is in hand.
	sctx := context.WithoutCancel(ctx)
	if err := u.cfg.Queue.Settle(sctx, outs); err != nil {
		u.stop(fmt.Errorf("record upload results: %w", err))
		return
	}
	var uploaded, failed, conflicts, pending int
	for _, o := range outs {
		switch o.State {
		case StateUploaded:
			uploaded++
		case StateFailed:
			failed++
		case StateConflict:
			conflicts++
		default:
			pending++
		}
	}
	level := slog.LevelDebug
	if u.cfg.LogBatches {
		level = slog.LevelInfo
	}
	u.log.Log(ctx, level, "upload: batch settled", "enrollments", len(outs), "uploaded", uploaded, "already", already,
		"failed", failed, "conflicts", conflicts, "pending", pending)
	u.update(func(s *Stats) {
		s.Already += already
		for _, o := range outs {
			switch o.State {
			case StateUploaded:
				s.Uploaded++
			case StateFailed:
				s.Failed++
				s.LastError = o.Error
			case StateConflict:
				s.Conflicts++
				s.LastError = o.Error
			}
		}
	})
}

// release puts a batch back to pending.
func (u *Uploader) release(batch []Enrollment, why string) {
	outs := make([]Outcome, len(batch))
	for i := range batch {
		outs[i] = Outcome{RegistrationID: batch[i].RegistrationID, State: StatePending, Error: why}
	}
	if err := u.cfg.Queue.Settle(context.Background(), outs); err != nil {
		u.log.Error("upload: could not put a batch back to pending; the next run re-checks it", "err", err)
	}
	if u.cfg.Progress != nil {
		u.cfg.Progress(u.snapshot(time.Time{}))
	}
}

func (u *Uploader) noteError(err error) {
	u.update(func(s *Stats) {
		s.LastError = err.Error()
		switch {
		case errors.Is(err, ErrThrottled):
			s.Throttled++
		case Transient(err):
			s.Transient++
		}
	})
}

func (u *Uploader) countRequest() { u.update(func(s *Stats) { s.Requests++ }) }

func (u *Uploader) update(f func(*Stats)) {
	u.mu.Lock()
	f(&u.stats)
	s := u.stats
	u.mu.Unlock()
	if u.cfg.Progress != nil {
		u.cfg.Progress(s)
	}
}

func (u *Uploader) snapshot(start time.Time) Stats {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.stats
	if !start.IsZero() {
		s.Elapsed = time.Since(start)
	}
	return s
}
