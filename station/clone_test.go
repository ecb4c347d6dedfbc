package station_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

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
	hash, err := bcrypt.GenerateFromPassword([]byte("supervisor secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	l.extra = "gui:\n  supervisor_password_hash: " + string(hash) + "\n"

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
	if !strings.Contains(be.Message, "(board ZT-ORIGINAL at station ") {
		t.Errorf("clone's message %q does not name the board and station that hold its identity", be.Message)
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

	// Put back on a fixture, the suspected clone is refused before the
	// station changes anything, until the supervisor unlocks the station.
	before, _ = l.store.Get(ctx, "ZT-CLONE")
	_, err = st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, clone.Path())
	if !errors.Is(err, station.ErrSupervisor) || !errors.Is(err, records.ErrClone) {
		t.Fatalf("the suspected clone again, locked: %v; want ErrSupervisor", err)
	}
	if r, _ := l.store.Get(ctx, "ZT-CLONE"); r.UpdatedAt != before.UpdatedAt || r.Result != records.ResultFailed {
		t.Errorf("a refused suspect's record changed: %+v -> %+v", before, r)
	}
	if step := lastStep(l); step != station.StepConnect {
		t.Errorf("the refused suspect got as far as %s", step)
	}
	if err := st.Unlock([]byte("not it")); !errors.Is(err, station.ErrWrongPassword) || st.Unlocked() {
		t.Errorf("Unlock with a wrong password = %v, unlocked %v", err, st.Unlocked())
	}
	if err := st.Unlock([]byte("supervisor secret")); err != nil || !st.Unlocked() {
		t.Fatalf("Unlock = %v", err)
	}
	_, err = st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, clone.Path())
	if errors.Is(err, station.ErrSupervisor) || !errors.Is(err, records.ErrClone) {
		t.Errorf("the suspect, unlocked: %v; want it run and refused again at the record as a clone", err)
	}
	st.Lock()
	if _, err := st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, clone.Path()); !errors.Is(err, station.ErrSupervisor) {
		t.Errorf("locked again: %v; want ErrSupervisor", err)
	}
	if err := st.Unlock(nil); !errors.Is(err, station.ErrWrongPassword) {
		t.Errorf("Unlock with no password = %v", err)
	}
}

// lastStep is the step of the line's last event.
func lastStep(l *line) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.events[len(l.events)-1].Step
}
