package station_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/station"
)

// A board that appears on a slot while the station runs starts its run;
// when it goes and another board comes, that one runs too.
func TestHotPlug(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l := newLine(t)
	slot := filepath.Join(t.TempDir(), "fixture-1") // a symlink, as udev makes
	first := startBoard(t, "ZT-HOT-1", board.TPMNone)
	second := startBoard(t, "ZT-HOT-2", board.TPMNone)
	st := l.stationAt(t, station.ModeSymmetricKey, slot)

	done := make(chan station.Summary)
	go func() {
		sum, err := st.Run(ctx, station.RunOptions{Count: 2, Poll: 20 * time.Millisecond})
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		done <- sum
	}()
	time.Sleep(100 * time.Millisecond) // the slot is empty: nothing happens
	if err := os.Symlink(first.Path(), slot); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, first.Provisioned)
	os.Remove(slot) // the board comes off the fixture
	time.Sleep(100 * time.Millisecond)
	if err := os.Symlink(second.Path(), slot); err != nil {
		t.Fatal(err)
	}
	sum := <-done
	if sum.Passed != 2 || !second.Provisioned() {
		t.Errorf("Run = %+v, second provisioned %v; want both boards passed", sum, second.Provisioned())
	}
}

func waitFor(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("timed out")
		case <-time.After(10 * time.Millisecond):
		}
	}
}
