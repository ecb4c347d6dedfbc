package station_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"zerotouch/board"
	"zerotouch/flasher"
	"zerotouch/station"
	"zerotouch/station/records"
)

// A board whose flash stores other bytes than it was sent, while it
// answers every write as done, is caught by the verify step: it fails
// there with an operator message, is not committed, and is recorded
// failed. Once its flash behaves, a re-run passes and leaves one record.
func TestVerifyCatchesBadFlash(t *testing.T) {
	ctx := context.Background()
	l := newLine(t)
	b := startBoard(t, "ZT-BADFLASH", board.TPMNone)
	b.SetFaults(board.Faults{CorruptWrite: 1})
	st := l.station(t, station.ModeSymmetricKey, b)
	slot := station.SlotConfig{Name: "slot-1"}

	_, err := st.Provision(ctx, slot, b.Path())
	var be *station.BoardError
	if !errors.As(err, &be) || be.Step != station.StepVerify || !errors.Is(err, flasher.ErrVerify) ||
		!strings.Contains(be.Message, "not what was written") || be.Serial != b.Serial() {
		t.Fatalf("Provision with a bad flash = %v; want a *BoardError at %s wrapping flasher.ErrVerify", err, station.StepVerify)
	}
	t.Logf("operator message: %q; cause: %v", be.Message, be.Err)
	if b.Provisioned() {
		t.Errorf("the board with the bad flash was committed")
	}
	r, err := l.store.Get(ctx, b.Serial())
	if err != nil || r.Result != records.ResultFailed || r.Message != be.Message {
		t.Errorf("record = %+v, %v; want failed with the operator message", r, err)
	}

	if _, err := st.Provision(ctx, slot, b.Path()); err != nil {
		t.Fatalf("re-run: %v", err)
	}
	checkProvisioned(t, l.store, b)
	if list, err := l.store.List(ctx, records.Filter{Search: b.Serial()}); err != nil || len(list) != 1 {
		t.Errorf("records of %s: %d (%v), want 1", b.Serial(), len(list), err)
	}
}
