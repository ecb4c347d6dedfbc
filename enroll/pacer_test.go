package enroll_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
)

// fakePacer is a Pacer whose methods a test sets; it counts the calls.
type fakePacer struct {
	wait func(ctx context.Context) error // nil: go at once

	mu     sync.Mutex
	waits  int
	pauses []time.Duration
}

func (p *fakePacer) Wait(ctx context.Context) error {
	p.mu.Lock()
	p.waits++
	p.mu.Unlock()
	if p.wait != nil {
		return p.wait(ctx)
	}
	return nil
}

func (p *fakePacer) Pause(_ context.Context, d time.Duration) error {
	p.mu.Lock()
	p.pauses = append(p.pauses, d)
	p.mu.Unlock()
	return nil
}

// An Uploader given a Pacer sends every request through it, its own
// limiter aside, and passes DPS's pauses on to it.
func TestUploadPacerGiven(t *testing.T) {
	ctx := context.Background()
	srv, client := newEmulator(t, emulator.Options{Quota: 600, Burst: 2})
	es := manyTPM(100)
	state := newState(t, es)
	pace := &fakePacer{}
	// Quota 1 a minute would take ten minutes with the Uploader's own
	// limiter: the Pacer given replaces it, and is unpaced, so DPS
	// throttles it.
	up, err := enroll.NewUploader(enroll.UploaderConfig{Client: newClient(t, srv, enroll.Config{}), Queue: state, Quota: 1, Pacer: pace})
	if err != nil {
		t.Fatal(err)
	}
	stats, err := up.Run(ctx)
	if err != nil || stats.Uploaded != len(es) {
		t.Fatalf("Run = %+v, %v; want %d uploaded", stats, err, len(es))
	}
	ems := srv.Emulator.Stats()
	if pace.waits != stats.Requests || int64(stats.Requests) != ems.Requests {
		t.Errorf("Pacer.Wait called %d times for %d requests (%d reached DPS), want once each", pace.waits, stats.Requests, ems.Requests)
	}
	if stats.Throttled == 0 || len(pace.pauses) == 0 {
		t.Errorf("%d requests throttled, %d pauses passed on; want some of both", stats.Throttled, len(pace.pauses))
	}
	for _, d := range pace.pauses {
		if d <= 0 {
			t.Errorf("Pause(%v), want DPS's Retry-After", d)
		}
	}
	checkExactlyOnce(t, srv, client, es)
}

// A Pacer that cannot say (its database is gone) stops the upload before
// anything is sent, everything pending.
func TestUploadPacerFails(t *testing.T) {
	ctx := context.Background()
	srv, _ := newEmulator(t, emulator.Options{})
	es := manyTPM(30)
	state := newState(t, es)
	gone := errors.New("the records database is gone")
	pace := &fakePacer{wait: func(context.Context) error { return gone }}
	up, err := enroll.NewUploader(enroll.UploaderConfig{Client: newClient(t, srv, enroll.Config{}), Queue: state, Pacer: pace})
	if err != nil {
		t.Fatal(err)
	}
	stats, err := up.Run(ctx)
	if !errors.Is(err, enroll.ErrIncomplete) || !errors.Is(err, gone) {
		t.Errorf("Run with a failing Pacer = %v, want ErrIncomplete wrapping its error", err)
	}
	if n := srv.Emulator.Stats().Requests; n != 0 || stats.Requests != 0 {
		t.Errorf("%d requests reached DPS (%d counted), want none", n, stats.Requests)
	}
	counts, err := state.Counts(ctx)
	if err != nil || counts[enroll.StatePending] != len(es) {
		t.Errorf("Counts = %v, %v; want all %d pending", counts, err, len(es))
	}
}

// NewRatePacer spaces requests at its rate and holds them back while
// paused.
func TestRatePacer(t *testing.T) {
	ctx := context.Background()
	p := enroll.NewRatePacer(6000) // one every 10 ms
	start := time.Now()
	for range 21 {
		if err := p.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := time.Since(start); got < 200*time.Millisecond {
		t.Errorf("21 Waits at 6000 a minute took %v, want at least 200 ms", got)
	}
	start = time.Now()
	if err := p.Pause(ctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got := time.Since(start); got < 300*time.Millisecond {
		t.Errorf("Wait after Pause(300ms) returned after %v", got)
	}
	p.Pause(ctx, time.Minute)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := p.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait during a minute's pause with a 20 ms context = %v, want DeadlineExceeded", err)
	}
}

// With LogBatches, each settled batch is logged at Info.
func TestUploadLogBatches(t *testing.T) {
	ctx := context.Background()
	srv, _ := newEmulator(t, emulator.Options{})
	es := manyTPM(25)
	state := newState(t, es)
	var log syncBuffer
	up, err := enroll.NewUploader(enroll.UploaderConfig{Client: newClient(t, srv, enroll.Config{}), Queue: state, Quota: 60000,
		LogBatches: true, Logger: newInfoLogger(&log)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "upload: batch settled"); n != 3 {
		t.Errorf("%d batches logged, want 3 (10, 10 and 5):\n%s", n, log.String())
	}
}

// syncBuffer is a bytes.Buffer for a logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newInfoLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
