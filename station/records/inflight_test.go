package records_test

import (
	"context"
	"path/filepath"
	"testing"

	"zerotouch/enroll"
	"zerotouch/station/records"
)

// TestChangedWhileInFlight: a board saved with a changed enrollment while
// its old one is in flight (with a live uploader, or with a station that
// died before the outcome came) has the new one claimed to replace
// whatever DPS holds, unless the old one's outcome says DPS holds an
// enrollment not known to be ours. Found by the station's SIGKILL test:
// the old one reached DPS, the station died, the board was provisioned
// again, and the new one, created, met the old one as a conflict.
func TestChangedWhileInFlight(t *testing.T) {
	for _, tt := range []struct {
		name     string
		crash    bool          // the station dies with the old one in flight
		outcome  *enroll.State // the old one's outcome, when it comes
		wantETag string
	}{
		{"station died", true, nil, "*"},
		{"uploader stopped mid-request", false, ptr(enroll.StatePending), "*"},
		{"old one failed", false, ptr(enroll.StateFailed), "*"},
		{"old one uploaded", false, ptr(enroll.StateUploaded), `"e1"`},
		{"old one met a conflict", false, ptr(enroll.StateConflict), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "zerotouch.db")
			s, err := records.Open(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { s.Close() }()
			id := tpmRegID(fakeEK(1))
			save(t, s, tpmRecord("SN-F", 1))
			if e := claimAll(t, s, 1)[0]; e.ETag != "" {
				t.Fatalf("first claim has ETag %q, want none (create)", e.ETag)
			}
			if tt.crash {
				s.Close()
				if s, err = records.Open(ctx, path); err != nil {
					t.Fatal(err)
				}
			}
			changed := tpmRecord("SN-F", 1)
			changed.Enrollment.ProvisioningStatus = "disabled"
			if res := save(t, s, changed); !res.Queued {
				t.Fatalf("Save of a changed enrollment = %+v, want queued", res)
			}
			if tt.outcome != nil {
				if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: id, State: *tt.outcome, ETag: `"e1"`}}); err != nil {
					t.Fatal(err)
				}
			} else if _, err := s.Recover(ctx); err != nil {
				t.Fatal(err)
			}
			e := claimAll(t, s, 1)[0]
			if e.ProvisioningStatus != "disabled" || e.ETag != tt.wantETag {
				t.Errorf("claim = status %q, ETag %q; want the changed enrollment with ETag %q", e.ProvisioningStatus, e.ETag, tt.wantETag)
			}
		})
	}

	// An unchanged enrollment in flight at a crash is created again: the
	// uploader reads DPS back on a conflict instead of writing it twice.
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "zerotouch.db")
	s, err := records.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	save(t, s, tpmRecord("SN-G", 2))
	claimAll(t, s, 1)
	s.Close()
	if s, err = records.Open(ctx, path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	save(t, s, tpmRecord("SN-G", 2))
	if _, err := s.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	if e := claimAll(t, s, 1)[0]; e.ETag != "" {
		t.Errorf("claim of an unchanged enrollment recovered after a crash has ETag %q, want none (create)", e.ETag)
	}
}

func ptr[T any](v T) *T { return &v }

// TestChangedAfterRecover: the station died with an enrollment in flight,
// the next upload run recovered it (pending again, its flight's outcome
// lost), and only then was the board saved with a changed enrollment. The
// old one may be in DPS, so the new one is claimed to replace whatever DPS
// holds, on both adapters; created, it would meet the old one there as a
// conflict. Found by the station's SIGKILL test.
func TestChangedAfterRecover(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		ctx := context.Background()
		s := a.open(t)
		csave(t, s, tpmRecord("SN-R", 1))
		if e := claimAll(t, s, 1)[0]; e.ETag != "" {
			t.Fatalf("first claim has ETag %q, want none (create)", e.ETag)
		}
		// The uploader's process is gone; the next run takes over.
		a.expire(t)
		if _, err := s.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		changed := tpmRecord("SN-R", 1)
		changed.Enrollment.ProvisioningStatus = "disabled"
		if res := csave(t, s, changed); !res.Queued {
			t.Fatalf("Save of a changed enrollment = %+v, want queued", res)
		}
		e := claimAll(t, s, 1)[0]
		if e.ProvisioningStatus != "disabled" || e.ETag != "*" {
			t.Errorf("claim = status %q, ETag %q; want the changed enrollment with ETag \"*\" (replace)", e.ProvisioningStatus, e.ETag)
		}
		if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: e.RegistrationID, State: enroll.StateUploaded, ETag: `"e2"`}}); err != nil {
			t.Fatal(err)
		}

		// Unchanged after a recovered flight: created again, as before
		// (the uploader reads DPS back on a conflict).
		csave(t, s, tpmRecord("SN-U", 2))
		claimAll(t, s, 1)
		a.expire(t)
		if _, err := s.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		csave(t, s, tpmRecord("SN-U", 2))
		if e := claimAll(t, s, 1)[0]; e.RegistrationID != tpmRegID(fakeEK(2)) || e.ETag != "" {
			t.Errorf("claim = %s with ETag %q, want SN-U's unchanged enrollment with none (create)", e.RegistrationID, e.ETag)
		}
	})
}
