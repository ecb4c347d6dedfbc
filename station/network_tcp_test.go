package station_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/flasher"
	"zerotouch/internal/ser2nettest"
	"zerotouch/station"
)

// A slot whose port is a virtual board served on TCP provisions it.
func TestTCPBoardSlot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l := newLine(t)
	b, err := board.Start(board.Config{Serial: "ZT-TCP-1", Dir: t.TempDir(), TPM: board.TPMNone, Baud: 2_000_000, Listen: "tcp://127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	st := l.stationAt(t, station.ModeSymmetricKey, b.Path())
	sum, err := st.Run(ctx, station.RunOptions{Once: true})
	if err != nil || sum.Passed != 1 || !b.Provisioned() {
		t.Fatalf("Run on %s = %+v, %v; provisioned %v; want the board passed", b.Path(), sum, err, b.Provisioned())
	}
}

// ser2net (Debian's) between the station and a virtual board's
// pseudo-terminal, raw and over RFC 2217: the station provisions the
// board through the network port; the connection cut in the middle of
// the write step is ErrDisconnected with the step's operator message;
// once ser2net is back, Retry passes.
func TestSer2netSlot(t *testing.T) {
	for _, scheme := range []string{flasher.SchemeTCP, flasher.SchemeRFC2217} {
		t.Run(scheme, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			l := newLine(t)
			first := startBoard(t, "ZT-S2N-1", board.TPMNone)
			s := ser2nettest.Start(t, first.Path(), 2_000_000, scheme == flasher.SchemeRFC2217)
			st := l.stationAt(t, station.ModeSymmetricKey, s.URL(scheme))
			sum, err := st.Run(ctx, station.RunOptions{Once: true})
			if err != nil || sum.Passed != 1 || !first.Provisioned() {
				t.Fatalf("Run through ser2net = %+v, %v; provisioned %v; want the board passed", sum, err, first.Provisioned())
			}

			// The next board goes deaf 100 bytes into the write step, so
			// the station waits for its answer; ser2net dies meanwhile.
			second := startBoard(t, "ZT-S2N-2", board.TPMNone)
			s.Stop()
			s.SetDevice(second.Path())
			s.Start()
			l.mu.Lock()
			l.events = nil
			l.mu.Unlock()
			armed := make(chan struct{})
			var arm sync.Once
			l.onEvent = func(e station.Event) {
				l.event(e)
				if e.Step == station.StepWrite && e.Result == station.Running {
					arm.Do(func() {
						second.SetFaults(board.Faults{DropAfter: 100})
						close(armed)
					})
				}
			}
			st = l.stationAt(t, station.ModeSymmetricKey, s.URL(scheme))
			runDone := make(chan error, 1)
			go func() {
				_, err := st.Run(ctx, station.RunOptions{Poll: 20 * time.Millisecond})
				runDone <- err
			}()
			select {
			case <-armed:
			case <-ctx.Done():
				t.Fatal("the write step did not begin")
			}
			for second.Received() < 100 {
				select {
				case <-ctx.Done():
					t.Fatal("the board did not receive the write")
				case <-time.After(5 * time.Millisecond):
				}
			}
			s.Stop()
			failed := waitEvent(t, ctx, l, func(e station.Event) bool { return e.Result == station.Failed })
			const want = "writing the configuration to the board failed: reseat the board and press Retry"
			if failed.Step != station.StepWrite || failed.Message != want || !strings.Contains(failed.Error, flasher.ErrDisconnected.Error()) {
				t.Errorf("the cut connection failed step %q with %q (cause %q); want step write, %q, and the cause %q",
					failed.Step, failed.Message, failed.Error, want, flasher.ErrDisconnected)
			}
			if second.Provisioned() {
				t.Fatal("the board whose write was cut is provisioned")
			}

			s.Start()
			second.SetFaults(board.Faults{})
			if err := st.Retry("slot-1"); err != nil {
				t.Fatalf("Retry: %v", err)
			}
			passed := waitEvent(t, ctx, l, func(e station.Event) bool { return e.Result == station.Passed })
			if passed.Serial != "ZT-S2N-2" || passed.Attempt != 2 || !second.Provisioned() {
				t.Errorf("after Retry: %+v, provisioned %v; want ZT-S2N-2 passed at its second attempt", passed, second.Provisioned())
			}
			cancel()
			if err := <-runDone; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
}

// waitEvent waits for the first event of l that match accepts.
func waitEvent(t *testing.T, ctx context.Context, l *line, match func(station.Event) bool) station.Event {
	t.Helper()
	for {
		l.mu.Lock()
		for _, e := range l.events {
			if match(e) {
				l.mu.Unlock()
				return e
			}
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			t.Fatal("timed out waiting for an event")
		case <-time.After(10 * time.Millisecond):
		}
	}
}
