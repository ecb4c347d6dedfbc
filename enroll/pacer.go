package enroll

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"zerotouch/internal/pause"
)

// Pacer spaces an Uploader's requests to the DPS service API so that
// they stay within a share of its quota. Each request is one operation
// of the quota (DPS: "Operations: 1,000/min/service"), whatever it
// carries. The default, NewRatePacer, paces one process; a pacer shared
// through a database (records.PGQuota) paces every uploader of a
// factory together. Implementations must be safe for concurrent use.
type Pacer interface {
	// Wait blocks until one more request may be sent, or ctx ends (its
	// error then). Another error means the pacer cannot say, and the
	// request is not sent.
	Wait(ctx context.Context) error
	// Pause holds every request back for d from now: the service
	// answered 429 with Retry-After d.
	Pause(ctx context.Context, d time.Duration) error
}

// NewRatePacer returns a Pacer of this process alone: perMinute requests
// a minute, evenly spaced (a burst of one), held back while paused.
func NewRatePacer(perMinute float64) Pacer {
	return &ratePacer{lim: rate.NewLimiter(rate.Limit(perMinute/60), 1)}
}

// ratePacer is NewRatePacer's Pacer.
type ratePacer struct {
	lim   *rate.Limiter
	mu    sync.Mutex
	until time.Time
}

func (p *ratePacer) Wait(ctx context.Context) error {
	p.mu.Lock()
	until := p.until
	p.mu.Unlock()
	if d := time.Until(until); d > 0 && !pause.For(ctx, d) {
		return ctx.Err()
	}
	return p.lim.Wait(ctx)
}

func (p *ratePacer) Pause(_ context.Context, d time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := time.Now().Add(d); t.After(p.until) {
		p.until = t
	}
	return nil
}

// countingPacer is what an Uploader gives its Client: its Pacer, each
// request counted.
type countingPacer struct {
	Pacer
	count func()
}

func (p *countingPacer) Wait(ctx context.Context) error {
	if err := p.Pacer.Wait(ctx); err != nil {
		return err
	}
	p.count()
	return nil
}
