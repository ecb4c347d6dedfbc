package enroll

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestStateFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "up.db")
	s, err := OpenStateFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStateFile(ctx, path); !errors.Is(err, ErrBusy) {
		t.Errorf("second OpenStateFile = %v, want ErrBusy", err)
	}
	es := []Enrollment{tpmEnrollment("a"), tpmEnrollment("b"), tpmEnrollment("c")}
	if r, err := s.Add(ctx, es); err != nil || r.New != 3 {
		t.Fatalf("Add = %+v, %v", r, err)
	}
	got, err := s.Claim(ctx, 2)
	if err != nil || len(got) != 2 || got[0].RegistrationID != "a" || got[1].RegistrationID != "b" {
		t.Fatalf("Claim(2) = %v, %v; want a, b in order", got, err)
	}
	if err := s.Settle(ctx, []Outcome{{RegistrationID: "A", State: StateUploaded, ETag: "e"}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A crash leaves b in flight; the next run gets it back.
	s, err = OpenStateFile(ctx, path)
	if err != nil {
		t.Fatalf("reopen after close: %v", err)
	}
	defer s.Close()
	if n, err := s.Recover(ctx); err != nil || n != 1 {
		t.Errorf("Recover = %d, %v; want 1", n, err)
	}
	got, _ = s.Claim(ctx, 10)
	if len(got) != 2 || got[0].RegistrationID != "b" || got[1].RegistrationID != "c" {
		t.Errorf("Claim after Recover = %v, want b, c", got)
	}
	s.Settle(ctx, []Outcome{{RegistrationID: "b", State: StateFailed, Error: "refused"}, {RegistrationID: "c", State: StateUploaded}})

	// The same file again: uploaded ones stay, the failed one is retried,
	// a changed one goes back to pending.
	changed := tpmEnrollment("c")
	changed.DeviceID = "dev-c"
	r, err := s.Add(ctx, []Enrollment{tpmEnrollment("a"), tpmEnrollment("b"), changed})
	if err != nil || r.Unchanged != 1 || r.Retried != 1 || r.Changed != 1 {
		t.Errorf("Add again = %+v, %v; want 1 unchanged, 1 retried, 1 changed", r, err)
	}
	counts, _ := s.Counts(ctx)
	if counts[StateUploaded] != 1 || counts[StatePending] != 2 {
		t.Errorf("Counts = %v", counts)
	}
	s.Settle(ctx, []Outcome{{RegistrationID: "b", State: StateConflict, Error: "differs in attestation"}})
	outs, err := s.Outcomes(ctx, StateConflict)
	if err != nil || len(outs) != 1 || outs[0].RegistrationID != "b" || outs[0].Error != "differs in attestation" {
		t.Errorf("Outcomes(conflict) = %+v, %v", outs, err)
	}
}
