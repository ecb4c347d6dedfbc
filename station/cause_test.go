package station_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"zerotouch/board"
	"zerotouch/station"
)

// lockedBuffer is a log the slots may write at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// For each fault of the virtual board once it has said who it is, the
// failure's cause (the engineer's) reaches the event, the record, the
// audit and the log, while the operator's words stay the event's message
// and the record's.
func TestFailureCauseKept(t *testing.T) {
	for _, tc := range []struct{ name, faults, extra string }{
		{"drop", "drop-after=600,drop-for=1h", ""},
		{"corrupt", "corrupt-write=1", ""},
		{"rc", "rc=fs.file:10", ""},
		{"delay", "delay=280ms", "board_timeout: 1s\n"},
		// The station resumes after a reset mid-transfer: the board passes,
		// and a record that passed carries no cause.
		{"reset mid-transfer", "reset-after=600", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			l := newLine(t)
			var log lockedBuffer
			l.log = slog.New(slog.NewTextHandler(&log, nil))
			l.extra = "timeout: 300ms\n" + tc.extra
			f, err := board.ParseFaults(tc.faults)
			if err != nil {
				t.Fatal(err)
			}
			b, err := board.Start(board.Config{Serial: "ZT-CAUSE", Dir: t.TempDir(), TPM: board.TPMNone, Baud: 2_000_000, Faults: f})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			st := l.station(t, station.ModeSymmetricKey, b)
			_, err = st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, b.Path())
			if strings.HasPrefix(tc.name, "reset") {
				rec, gerr := l.store.Get(ctx, "ZT-CAUSE")
				if err != nil || gerr != nil || rec.Cause != "" || rec.FailedStep != "" {
					t.Fatalf("after a reset mid-transfer: %v; record %+v, %v; want it passed, with no cause", err, rec, gerr)
				}
				return
			}
			var be *station.BoardError
			if !errors.As(err, &be) {
				t.Fatalf("Provision = %v, want a board failure", err)
			}
			last := l.events[len(l.events)-1]
			if last.Result != station.Failed || last.Error == "" || last.Message != be.Message || strings.Contains(last.Message, last.Error) {
				t.Fatalf("failed event %+v: want the operator's words as its message and the cause apart", last)
			}
			rec, err := l.store.Get(ctx, "ZT-CAUSE")
			if err != nil {
				t.Fatal(err)
			}
			if rec.Message != last.Message || rec.Cause != last.Error || rec.FailedStep != last.Step || rec.FailedStep == "" {
				t.Errorf("record: message %q, cause %q, step %q; want %q, %q, %q", rec.Message, rec.Cause, rec.FailedStep, last.Message, last.Error, last.Step)
			}
			audit, err := l.store.Audit(ctx, "ZT-CAUSE")
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, a := range audit {
				if strings.Contains(a.Detail, last.Error) && strings.Contains(a.Detail, "step: "+last.Step) {
					found = true
				}
			}
			if !found {
				t.Errorf("no audit row carries the cause %q: %+v", last.Error, audit)
			}
			if out := log.String(); !strings.Contains(out, "board failed") || !strings.Contains(out, "ZT-CAUSE") ||
				!strings.Contains(out, "step="+last.Step) || !strings.Contains(out, strings.SplitN(last.Error, ":", 2)[0]) {
				t.Errorf("the log does not carry the failure's cause:\n%s", out)
			}
			t.Logf("%s at %s: %s / %s", tc.name, last.Step, last.Message, last.Error)
		})
	}
}
