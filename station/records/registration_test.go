package records_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"zerotouch/station/records"
)

// TestSetRegistration records a board's registration with DPS: shown with
// its record, the device ID DPS gave filled in where none was, an audit
// row, kept when the board is saved again; an unknown board is
// ErrNotFound and an empty state refused.
func TestSetRegistration(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	save(t, s, groupRecord("SN-R1", "sn-r1"))
	if r := get(t, s, "SN-R1"); r.Registration != nil {
		t.Fatalf("registration before any: %+v", r.Registration)
	}
	at := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	reg := records.Registration{State: "assigned", AssignedHub: "hub-a.azure-devices.net", DeviceID: "sn-r1", At: at}
	if err := s.SetRegistration(ctx, "SN-R1", reg, "ana"); err != nil {
		t.Fatal(err)
	}
	r := get(t, s, "SN-R1")
	if r.Registration == nil || *r.Registration != reg || r.DeviceID != "sn-r1" {
		t.Fatalf("record: registration %+v, device %q; want %+v", r.Registration, r.DeviceID, reg)
	}
	audit, err := s.Audit(ctx, "SN-R1")
	if err != nil {
		t.Fatal(err)
	}
	last := audit[len(audit)-1]
	if last.Event != records.EventRegistration || !strings.Contains(last.Detail, "hub-a.azure-devices.net") || last.Operator != "ana" {
		t.Errorf("audit row %+v", last)
	}

	// Failed again: the registration stays (it may be what failed).
	failed := groupRecord("SN-R1", "sn-r1")
	failed.Result, failed.Message = records.ResultFailed, "the board could not register"
	save(t, s, failed)
	if r := get(t, s, "SN-R1"); r.Registration == nil || r.Registration.State != "assigned" {
		t.Errorf("after a failed run: %+v", r.Registration)
	}
	// Passed again: a new run, whose registration is not yet known.
	again := groupRecord("SN-R1", "sn-r1")
	save(t, s, again)
	if again.Registration != nil {
		t.Errorf("a board passed again comes back with its earlier registration %+v", again.Registration)
	}
	refused := records.Registration{State: "failed", Error: "401 Unauthorized", At: at.Add(time.Hour)}
	if err := s.SetRegistration(ctx, "SN-R1", refused, "ana"); err != nil {
		t.Fatal(err)
	}
	if r := get(t, s, "SN-R1"); r.Registration.State != "failed" || r.Registration.Error != "401 Unauthorized" || r.Registration.AssignedHub != "" {
		t.Errorf("after a refusal: %+v", r.Registration)
	}

	if err := s.SetRegistration(ctx, "SN-NONE", reg, ""); !errors.Is(err, records.ErrNotFound) {
		t.Errorf("unknown board: %v, want ErrNotFound", err)
	}
	if err := s.SetRegistration(ctx, "SN-R1", records.Registration{}, ""); err == nil {
		t.Error("a registration with no state was recorded")
	}
}
