package station_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"zerotouch/internal/swtpm"
	"zerotouch/station"
	"zerotouch/station/records"
)

// A TPM whose EK is already recorded under another serial fails its
// board as a possible clone, and the first board's record stays as it was.
func TestCloneFlagged(t *testing.T) {
	p, err := swtpm.Start(t.TempDir(), true)
	if errors.Is(err, swtpm.ErrNotInstalled) && os.Getenv("CI") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	l := newLine(t)

	// Two boards, one after the other, on the same TPM: the second
	// reports another serial but the first's endorsement key.
	original := startBoard(t, "ZT-ORIGINAL", "tcp:"+p.Addr)
	st := l.station(t, station.ModeTPM, original)
	if _, err := st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, original.Path()); err != nil {
		t.Fatalf("original: %v", err)
	}
	before, _ := l.store.Get(ctx, "ZT-ORIGINAL")
	original.Close()

	clone := startBoard(t, "ZT-CLONE", "tcp:"+p.Addr)
	_, err = st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, clone.Path())
	var be *station.BoardError
	if !errors.As(err, &be) || !errors.Is(err, records.ErrClone) || !strings.Contains(be.Message, "clone") {
		t.Fatalf("clone: %v, want a BoardError wrapping ErrClone with an operator message", err)
	}
	l.mu.Lock()
	last := l.events[len(l.events)-1]
	l.mu.Unlock()
	if last.Result != station.Failed || !last.Clone || last.Serial != "ZT-CLONE" {
		t.Errorf("last event %+v; want the clone's failure, marked Clone", last)
	}
	after, _ := l.store.Get(ctx, "ZT-ORIGINAL")
	if after.UpdatedAt != before.UpdatedAt || after.RegistrationID != before.RegistrationID {
		t.Errorf("the original's record changed: %+v -> %+v", before, after)
	}
	// The clone's own record says it failed, and holds none of the
	// identity it presented.
	if r, err := l.store.Get(ctx, "ZT-CLONE"); err != nil || r.Result != records.ResultFailed ||
		!strings.Contains(r.Message, "clone") || len(r.EKPublic) != 0 || r.RegistrationID != "" || r.Enrollment != nil {
		t.Errorf("the clone's record = %+v, %v; want failed as a possible clone, without the original's identity", r, err)
	}
	audit, _ := l.store.Audit(ctx, "ZT-ORIGINAL")
	flagged := false
	for _, a := range audit {
		if strings.Contains(a.Event, "clone") {
			flagged = true
		}
	}
	if !flagged {
		t.Errorf("no clone entry in the audit log: %+v", audit)
	}
}
