package station_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/station"
	"zerotouch/station/records"
)

// Retry runs a failed board again at once and Skip sets it aside, while
// Run runs; neither is accepted when no failed board waits.
func TestRetrySkip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l := newLine(t)
	slot := filepath.Join(t.TempDir(), "fixture-1")
	first := startBoard(t, "ZT-RETRY-1", board.TPMNone)
	second := startBoard(t, "ZT-RETRY-2", board.TPMNone)
	first.SetFaults(board.Faults{CorruptWrite: 1})
	second.SetFaults(board.Faults{CorruptWrite: 1})
	if err := os.Symlink(first.Path(), slot); err != nil {
		t.Fatal(err)
	}

	st := l.stationAt(t, station.ModeSymmetricKey, slot)
	if err := st.Retry("slot-1"); !errors.Is(err, station.ErrNotWaiting) {
		t.Errorf("Retry before Run = %v, want ErrNotWaiting", err)
	}
	if err := st.Skip("slot-9"); !errors.Is(err, station.ErrNoSlot) {
		t.Errorf("Skip of an unknown slot = %v, want ErrNoSlot", err)
	}
	final := func() []string { // the Result of each board's last event, in order
		l.mu.Lock()
		defer l.mu.Unlock()
		var results []string
		for _, e := range l.events {
			if e.Result != station.Running && e.Result != station.Empty { // a slot between boards reports itself empty
				results = append(results, e.Result)
			}
		}
		return results
	}
	waitResults := func(n int) []string {
		t.Helper()
		for ctx.Err() == nil {
			if r := final(); len(r) >= n {
				return r
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %d results; have %v", n, final())
		return nil
	}

	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		if _, err := st.Run(ctx, station.RunOptions{Poll: 20 * time.Millisecond}); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// The first board fails (its flash corrupts the write) and waits.
	if r := waitResults(1); r[0] != station.Failed {
		t.Fatalf("first result %v, want failed", r)
	}
	if err := st.Retry("slot-1"); err != nil {
		t.Fatalf("Retry of the failed board: %v", err)
	}
	if err := st.Retry("slot-1"); !errors.Is(err, station.ErrNotWaiting) {
		t.Errorf("a second Retry for the same failure = %v, want ErrNotWaiting", err)
	}
	if r := waitResults(2); r[1] != station.Passed || !first.Provisioned() {
		t.Fatalf("after Retry: results %v, provisioned %v; want the board passed", r, first.Provisioned())
	}
	if err := st.Retry("slot-1"); !errors.Is(err, station.ErrNotWaiting) {
		t.Errorf("Retry after a pass = %v, want ErrNotWaiting", err)
	}

	// The second board fails; Skip sets it aside, and it stays unprovisioned.
	os.Remove(slot)
	time.Sleep(100 * time.Millisecond)
	if err := os.Symlink(second.Path(), slot); err != nil {
		t.Fatal(err)
	}
	if r := waitResults(3); r[2] != station.Failed {
		t.Fatalf("second board: results %v, want failed", r)
	}
	if err := st.Skip("slot-1"); err != nil {
		t.Fatalf("Skip: %v", err)
	}
	if r := waitResults(4); r[3] != station.Skipped {
		t.Fatalf("after Skip: results %v, want skipped", r)
	}
	if err := st.Retry("slot-1"); !errors.Is(err, station.ErrNotWaiting) {
		t.Errorf("Retry after Skip = %v, want ErrNotWaiting", err)
	}
	time.Sleep(150 * time.Millisecond) // the skipped board is not run again while it stays
	if r := final(); len(r) != 4 || second.Provisioned() {
		t.Errorf("results %v, second provisioned %v; want the skipped board left alone", r, second.Provisioned())
	}
	cancel()
	<-runDone
	for b, want := range map[*board.Board]string{first: records.ResultPassed, second: records.ResultFailed} {
		if r, err := l.store.Get(context.Background(), b.Serial()); err != nil || r.Result != want {
			t.Errorf("record of %s: %+v, %v; want %s", b.Serial(), r, err, want)
		}
	}
	audit, err := l.store.Audit(context.Background(), second.Serial())
	setAside := 0
	for _, a := range audit {
		if a.Event == records.EventSetAside && strings.Contains(a.Detail, "slot-1") {
			setAside++
		}
	}
	if err != nil || setAside != 1 {
		t.Errorf("audit of the skipped board %+v, %v: want one set-aside row naming the slot", audit, err)
	}
}
