package station_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"zerotouch/board"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/station"
	"zerotouch/station/records"
)

// TestEightSlots is acceptance 3 of the station: eight boards on eight
// slots run in parallel; one board's line drops in the middle of the
// configuration write. That slot fails with an operator message, the
// other seven pass; once the line is back, a re-run of that board passes
// and leaves one record for it.
func TestEightSlots(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	store, err := records.Open(ctx, filepath.Join(dir, "records.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })

	const n, bad = 8, 5 // the board on slot-6 drops its line
	boards := make([]*board.Board, n)
	var y strings.Builder
	y.WriteString("station: st-slots\nline: line-slots\nattestation: symmetric-key\nid_scope: 0ne0001A2B3\n")
	y.WriteString("symmetric_key:\n  group_id: line-slots-group\nbaud: 2000000\ntimeout: 300ms\nslots:\n")
	for i := range boards {
		boards[i] = startBoard(t, fmt.Sprintf("ZT-SLOT-%d", i+1), board.TPMNone)
		fmt.Fprintf(&y, "  - port: %s\n", boards[i].Path())
	}
	cfg, err := station.ParseConfig([]byte(y.String()))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := fwtemplates.Builtin("json")
	if err != nil {
		t.Fatal(err)
	}

	// The fault goes in as the bad board's write begins, so that the line
	// drops mid-write however many bytes the steps before it took: 64
	// bytes into the first write request, which holds more than that.
	drop, err := board.ParseFaults("drop-after=64,drop-for=1h")
	if err != nil {
		t.Fatal(err)
	}
	badSlot := cfg.Slots[bad]
	var (
		mu     sync.Mutex
		events []station.Event
		armed  = true
	)
	st, err := station.New(cfg, station.Deps{Store: store, Template: tmpl, GroupKey: groupKey, Events: func(e station.Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
		if armed && e.Slot == badSlot.Name && e.Step == station.StepWrite && e.Result == station.Running && e.Progress == 0 {
			boards[bad].SetFaults(drop)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	sum, err := st.Run(ctx, station.RunOptions{Once: true})
	t.Logf("eight slots: %+v in %v", sum, time.Since(start).Round(time.Millisecond))
	if err != nil || sum.Passed != n-1 || sum.Failed != 1 || len(sum.Empty) != 0 {
		t.Fatalf("Run = %+v, %v; want %d passed, 1 failed", sum, err, n-1)
	}
	mu.Lock()
	armed = false
	var failed []station.Event
	for _, e := range events {
		if e.Result == station.Failed {
			failed = append(failed, e)
		}
	}
	mu.Unlock()
	if len(failed) != 1 {
		t.Fatalf("%d failed events, want 1: %+v", len(failed), failed)
	}
	if e := failed[0]; e.Slot != badSlot.Name || e.Serial != boards[bad].Serial() ||
		(e.Step != station.StepWrite && e.Step != station.StepVerify) || !operatorMessage(e.Message) || e.Error == "" {
		t.Errorf("failed event = %+v; want slot %s, board %s, step write or verify, an operator message and a cause",
			e, badSlot.Name, boards[bad].Serial())
	} else {
		t.Logf("%s failed at %s: %q (cause: %s)", e.Slot, e.Step, e.Message, e.Error)
	}
	for i, b := range boards {
		if i == bad {
			if b.Provisioned() {
				t.Errorf("board %s, whose line dropped, is provisioned", b.Serial())
			}
			r, err := store.Get(ctx, b.Serial())
			if err != nil || r.Result != records.ResultFailed || !strings.Contains(r.Message, "Retry") {
				t.Errorf("board %s, whose line dropped: record %+v, %v; want it recorded failed with the operator's message", b.Serial(), r, err)
			}
			continue
		}
		checkProvisioned(t, store, b)
	}

	// The same fault on that slot's Provision, as Retry runs it, comes
	// back as a *BoardError that tells the operator what to do.
	boards[bad].SetFaults(board.Faults{})
	mu.Lock()
	armed = true
	mu.Unlock()
	_, err = st.Provision(ctx, badSlot, boards[bad].Path())
	mu.Lock()
	armed = false
	mu.Unlock()
	var be *station.BoardError
	if !errors.As(err, &be) || be.Slot != badSlot.Name || be.Serial != boards[bad].Serial() ||
		(be.Step != station.StepWrite && be.Step != station.StepVerify) || !operatorMessage(be.Message) {
		t.Fatalf("Provision with the line dropped mid-write = %v; want a *BoardError at write or verify with an operator message", err)
	}
	t.Logf("Provision with the line dropped mid-write: %#v", be.Message)

	// The board reseated: its line is back, and a re-run passes.
	boards[bad].SetFaults(board.Faults{})
	res, err := st.Provision(ctx, badSlot, boards[bad].Path())
	if err != nil {
		t.Fatalf("re-run of board %s: %v", boards[bad].Serial(), err)
	}
	if res.Record.Serial != boards[bad].Serial() {
		t.Errorf("re-run recorded board %q, want %q", res.Record.Serial, boards[bad].Serial())
	}
	checkProvisioned(t, store, boards[bad])
	list, err := store.List(ctx, records.Filter{Search: boards[bad].Serial()})
	if err != nil || len(list) != 1 {
		t.Errorf("records of %s: %d (%v), want 1", boards[bad].Serial(), len(list), err)
	}
	all, err := store.List(ctx, records.Filter{})
	if err != nil || len(all) != n {
		t.Errorf("%d records (%v), want %d", len(all), err, n)
	}
}

// operatorMessage reports whether msg tells an operator what to do about
// a board that stopped answering.
func operatorMessage(msg string) bool {
	return strings.Contains(msg, "Retry") || strings.Contains(msg, "reseat")
}

// checkProvisioned checks that b is provisioned and has one passed
// record whose configuration hash is that of the file on the board.
func checkProvisioned(t *testing.T, store *records.Store, b *board.Board) {
	t.Helper()
	if !b.Provisioned() {
		t.Errorf("board %s is not provisioned", b.Serial())
	}
	r, err := store.Get(context.Background(), b.Serial())
	if err != nil {
		t.Errorf("board %s: %v", b.Serial(), err)
		return
	}
	conf, err := b.ReadFile(station.DefaultConfigPath)
	if err != nil {
		t.Errorf("board %s: %v", b.Serial(), err)
		return
	}
	sum := sha256.Sum256(conf)
	if r.Result != records.ResultPassed || !bytes.Equal(r.ConfigSHA256, sum[:]) {
		t.Errorf("board %s: record %s with config hash %x; the board holds %x", b.Serial(), r.Result, r.ConfigSHA256, sum)
	}
}
