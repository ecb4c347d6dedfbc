package station_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/flasher"
	"zerotouch/station"
)

// A board whose line goes dead mid-run shows as waiting, with the time it
// has waited, at least every 2 s, whether it comes back (slow) or not
// (dropped); events carry the schema version and the attempt.
func TestStuckBoardHeartbeat(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults board.Faults
		pass   bool
	}{
		{"slow", board.Faults{DropAfter: 300, DropFor: 2 * time.Second}, true},
		{"dropped", board.Faults{DropAfter: 300}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLine(t)
			l.extra = "timeout: 1s\n"
			b, err := board.Start(board.Config{Serial: "ZT-STUCK", Dir: t.TempDir(), TPM: board.TPMNone, Baud: 2_000_000, Faults: tc.faults})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			st := l.station(t, station.ModeSymmetricKey, b)
			_, err = st.Provision(context.Background(), station.SlotConfig{Name: "slot-1"}, b.Path())
			if tc.pass != (err == nil) {
				t.Fatalf("Provision = %v, want passed %v", err, tc.pass)
			}
			l.mu.Lock()
			events := append([]station.Event(nil), l.events...)
			l.mu.Unlock()
			waits, longest := 0, time.Duration(0)
			for i, e := range events {
				if e.Schema != station.EventSchema {
					t.Errorf("event %+v has schema %d, want %d", e, e.Schema, station.EventSchema)
				}
				if e.Serial != "" && e.Attempt != 1 {
					t.Errorf("event %+v: attempt %d, want 1", e, e.Attempt)
				}
				if i == 0 {
					continue
				}
				if gap := e.Time.Sub(events[i-1].Time); gap > longest {
					longest = gap
				}
				if e.Elapsed < events[i-1].Elapsed {
					t.Errorf("elapsed went back: %v after %v", e.Elapsed, events[i-1].Elapsed)
				}
				if e.Waiting != "" {
					waits++
				}
			}
			last := events[len(events)-1]
			if waits == 0 || last.Elapsed < 1.5 {
				t.Errorf("%d waiting events over %.1f s; want the stall reported", waits, last.Elapsed)
			}
			if longest > 2*time.Second {
				t.Errorf("the run went %v without an event; want one at least every 2 s", longest)
			}
			t.Logf("%d events, %d waiting, longest silence %v, run %.1f s", len(events), waits, longest, last.Elapsed)
		})
	}
}

// Progress rises through an image upload and a configuration write, in
// bytes done of the total.
func TestProgressRises(t *testing.T) {
	l := newLine(t)
	b := startBoard(t, "ZT-PROGRESS", board.TPMNone)
	v, _ := flasher.ParseImageVersion("1.2.0")
	img := flasher.BuildImage(v, bytes.Repeat([]byte("production firmware "), 2000))
	st := l.stationWith(t, station.ModeSymmetricKey, &station.FirmwareConfig{Image: "app.bin", Version: "1.2.0"}, img, b)
	if _, err := st.Provision(context.Background(), station.SlotConfig{Name: "slot-1"}, b.Path()); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	for _, step := range []string{station.StepFlash, station.StepWrite} {
		var done []int64
		var total int64
		for _, e := range l.events {
			if e.Step != step || e.Total == 0 || e.Waiting != "" { // a heartbeat repeats the count
				continue
			}
			if len(done) > 0 && e.Done <= done[len(done)-1] {
				t.Errorf("%s: done %d after %d: want it rising", step, e.Done, done[len(done)-1])
			}
			if e.Progress != float64(e.Done)/float64(e.Total) {
				t.Errorf("%s: progress %v for %d of %d", step, e.Progress, e.Done, e.Total)
			}
			done, total = append(done, e.Done), e.Total
		}
		if len(done) == 0 || done[len(done)-1] != total {
			t.Fatalf("%s: counted progress %v of %d: want it to reach the total", step, done, total)
		}
		if step == station.StepFlash && (total != int64(len(img)) || len(done) < 3) {
			t.Errorf("flash: %d progress events of %d bytes; want several, of the image's %d", len(done), total, len(img))
		}
		t.Logf("%s: %d progress events up to %d bytes", step, len(done), total)
	}
}
