package records_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"zerotouch/enroll"
	"zerotouch/station/records"
)

func TestSaveOneRecordPerSerial(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	first := tpmRecord("SN-0001", 1)
	if res := save(t, s, first); res != (records.SaveResult{Created: true, Queued: true}) {
		t.Errorf("first Save = %+v, want created and queued", res)
	}
	if first.ID == 0 || first.CreatedAt.IsZero() || first.UploadState != enroll.StatePending {
		t.Errorf("Save did not fill in the stored record: %+v", first)
	}

	again := tpmRecord("SN-0001", 1)
	again.Slot, again.Operator, again.Firmware = "4", "ben", "1.3.0"
	if res := save(t, s, again); res != (records.SaveResult{Updated: true}) {
		t.Errorf("second Save = %+v, want updated, not queued (same enrollment)", res)
	}
	if again.ID != first.ID || !again.CreatedAt.Equal(first.CreatedAt) || !again.UpdatedAt.After(first.UpdatedAt) {
		t.Errorf("second Save made id %d created %v updated %v; want id %d created %v, updated later",
			again.ID, again.CreatedAt, again.UpdatedAt, first.ID, first.CreatedAt)
	}
	all, err := s.List(ctx, records.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 {
		t.Fatalf("List = %d records, want 1", len(all))
	}
	if diff := cmp.Diff(*again, all[0]); diff != "" {
		t.Errorf("stored record differs from what Save returned (-save +list):\n%s", diff)
	}
	if got := all[0]; got.Slot != "4" || got.Operator != "ben" || got.Firmware != "1.3.0" {
		t.Errorf("record not updated: slot %q operator %q firmware %q", got.Slot, got.Operator, got.Firmware)
	}
	if got, want := events(t, s, "SN-0001"), []string{records.EventCreated, records.EventUpdated}; !slices.Equal(got, want) {
		t.Errorf("audit = %q, want %q", got, want)
	}
}

func TestSaveRefusesClones(t *testing.T) {
	cert := x509Record(t, "SN-X1", "cam-0001")
	tests := []struct {
		name    string
		first   *records.Record
		second  *records.Record
		wantErr error
		event   string
	}{
		{"same EK, other serial", tpmRecord("SN-A", 1), tpmRecord("SN-B", 1), records.ErrClone, records.EventClone},
		{"same TPM registration ID, no EK given", tpmRecord("SN-A", 2), func() *records.Record {
			r := tpmRecord("SN-B", 2)
			r.EKPublic = nil
			return r
		}(), records.ErrClone, records.EventClone},
		{"same EK on a failed board", tpmRecord("SN-A", 3), func() *records.Record {
			r := tpmRecord("SN-B", 3)
			r.Result, r.Message, r.Enrollment = records.ResultFailed, "config hash mismatch", nil
			return r
		}(), records.ErrClone, records.EventClone},
		{"same EK in the x509-tpm mode", tpmRecord("SN-A", 4), func() *records.Record {
			r := x509Record(t, "SN-B", "cam-0400")
			r.Attestation, r.EKPublic = records.AttestationX509TPM, fakeEK(4)
			return r
		}(), records.ErrClone, records.EventClone},
		{"x509 registration ID twice", cert, x509Record(t, "SN-X2", "CAM-0001"), records.ErrDuplicateID, records.EventDuplicateID},
		{"group registration ID twice", groupRecord("SN-G1", "grp-1"), groupRecord("SN-G2", "grp-1"), records.ErrDuplicateID, records.EventDuplicateID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := newTestStore(t)
			save(t, s, tt.first)
			before, err := s.List(ctx, records.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := s.Save(ctx, tt.second)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Save(%s) = %+v, %v; want %v", tt.second.Serial, res, err, tt.wantErr)
			}
			var ce *records.CloneError
			if !errors.As(err, &ce) || ce.Serial != tt.second.Serial || ce.OtherSerial != tt.first.Serial ||
				ce.RegistrationID != strings.ToLower(tt.first.RegistrationID) {
				t.Errorf("Save error = %#v, want a CloneError naming %s, %s and %s", err, tt.second.Serial, tt.first.Serial, tt.first.RegistrationID)
			}
			after, err := s.List(ctx, records.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("a refused Save changed the records (-before +after):\n%s", diff)
			}
			if _, err := s.Get(ctx, tt.second.Serial); !errors.Is(err, records.ErrNotFound) {
				t.Errorf("Get(%s) = %v, want ErrNotFound: a refused board has no record", tt.second.Serial, err)
			}
			// The row shows under both boards.
			for _, key := range []string{tt.first.Serial, tt.second.Serial} {
				if ev := events(t, s, key); !slices.Contains(ev, tt.event) {
					t.Errorf("Audit(%s) = %q, want a %q row", key, ev, tt.event)
				}
			}
			want := map[enroll.State]int{}
			if tt.first.Enrollment != nil {
				want[enroll.StatePending] = 1
			}
			if c := counts(t, s); !cmp.Equal(c, want) {
				t.Errorf("Counts = %v, want %v: the first board's enrollment alone", c, want)
			}
		})
	}
}

func TestSaveQueuesOnlyChanges(t *testing.T) {
	type step struct {
		name      string
		change    func(r *records.Record) // applied to a fresh tpmRecord("SN-Q", 1)
		settle    enroll.State            // the upload state the earlier pass ended in
		wantQueue bool
		wantState enroll.State
	}
	tests := []step{
		{"unchanged after upload", nil, enroll.StateUploaded, false, enroll.StateUploaded},
		{"unchanged while pending", nil, enroll.StatePending, false, enroll.StatePending},
		{"other slot and operator only", func(r *records.Record) { r.Slot, r.Operator = "7", "cy" }, enroll.StateUploaded, false, enroll.StateUploaded},
		{"read-only fields differ", func(r *records.Record) {
			now := time.Now()
			r.Enrollment.ETag, r.Enrollment.CreatedDateTimeUTC = `"abc"`, &now
			r.Enrollment.RegistrationState = &enroll.RegistrationState{Status: "assigned"}
		}, enroll.StateUploaded, false, enroll.StateUploaded},
		{"device ID changed", func(r *records.Record) { r.DeviceID, r.Enrollment.DeviceID = "dev-new", "dev-new" }, enroll.StateUploaded, true, enroll.StatePending},
		{"provisioning status changed", func(r *records.Record) { r.Enrollment.ProvisioningStatus = "disabled" }, enroll.StateUploaded, true, enroll.StatePending},
		{"unchanged after a refusal", nil, enroll.StateFailed, true, enroll.StatePending},
		{"unchanged after a conflict", nil, enroll.StateConflict, true, enroll.StatePending},
		{"now nothing to enroll", func(r *records.Record) { r.Enrollment = nil }, enroll.StateUploaded, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := newTestStore(t)
			save(t, s, tpmRecord("SN-Q", 1))
			if tt.settle != enroll.StatePending {
				claimAll(t, s, 1)
				if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: tpmRegID(fakeEK(1)), State: tt.settle, Error: "dps said so"}}); err != nil {
					t.Fatal(err)
				}
			}
			r := tpmRecord("SN-Q", 1)
			if tt.change != nil {
				tt.change(r)
			}
			res := save(t, s, r)
			if res.Queued != tt.wantQueue || !res.Updated || res.Created {
				t.Errorf("Save = %+v, want updated, queued %v", res, tt.wantQueue)
			}
			got := get(t, s, "SN-Q")
			if got.UploadState != tt.wantState {
				t.Errorf("upload state = %q, want %q", got.UploadState, tt.wantState)
			}
			if tt.wantState == "" && got.Enrollment != nil {
				t.Errorf("enrollment = %+v, want none", got.Enrollment)
			}
			if tt.wantState == enroll.StatePending && got.UploadError != "" {
				t.Errorf("upload error %q kept on a queued enrollment", got.UploadError)
			}
			if got.Enrollment != nil && (got.Enrollment.ETag != "" || got.Enrollment.RegistrationState != nil) {
				t.Errorf("stored enrollment keeps read-only fields: %+v", got.Enrollment)
			}
		})
	}
}

func TestSaveFailedBoards(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)

	// A board that fails on its first run queues nothing, even with an
	// enrollment in hand.
	r := tpmRecord("SN-F1", 1)
	r.Result, r.Message = records.ResultFailed, "Board on slot 1 stopped answering: reseat it and press Retry"
	if res := save(t, s, r); res.Queued || !res.Created {
		t.Errorf("Save(failed) = %+v, want created, not queued", res)
	}
	if got := get(t, s, "SN-F1"); got.Enrollment != nil || got.UploadState != "" || got.Message != r.Message {
		t.Errorf("failed board stored with enrollment %v state %q message %q", got.Enrollment, got.UploadState, got.Message)
	}

	// A board that fails before its identity is read: no registration ID.
	early := &records.Record{Serial: "SN-F2", Attestation: records.AttestationTPM, Result: records.ResultFailed, Message: "no answer"}
	save(t, s, early)
	if c := counts(t, s); len(c) != 0 {
		t.Errorf("Counts = %v after failed boards only, want nothing queued", c)
	}

	// A board that passed and was uploaded, then fails a re-run before
	// its identity is read, keeps its identity and its upload.
	save(t, s, tpmRecord("SN-F3", 3))
	claimAll(t, s, 1)
	if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: tpmRegID(fakeEK(3)), State: enroll.StateUploaded, ETag: `"e1"`}}); err != nil {
		t.Fatal(err)
	}
	rerun := &records.Record{Serial: "SN-F3", Attestation: records.AttestationTPM, Result: records.ResultFailed, Message: "flash failed", Slot: "5"}
	if res := save(t, s, rerun); res.Queued || !res.Updated {
		t.Errorf("Save(failed re-run) = %+v, want updated, not queued", res)
	}
	got := get(t, s, tpmRegID(fakeEK(3)))
	if got.Serial != "SN-F3" || got.Result != records.ResultFailed || got.Slot != "5" || len(got.EKPublic) == 0 ||
		got.UploadState != enroll.StateUploaded || got.ETag != `"e1"` || got.Enrollment == nil {
		t.Errorf("after a failed re-run: %+v; want failed, slot 5, EK and uploaded enrollment kept", got)
	}

	// A failed re-run that finds another identity drops the enrollment
	// of the old one.
	changed := tpmRecord("SN-F3", 33)
	changed.Result, changed.Message = records.ResultFailed, "write failed"
	save(t, s, changed)
	if got := get(t, s, "SN-F3"); got.Enrollment != nil || got.UploadState != "" || got.RegistrationID != tpmRegID(fakeEK(33)) {
		t.Errorf("after a failed run with a new EK: regid %s enrollment %v state %q; want the new ID and no enrollment",
			got.RegistrationID, got.Enrollment, got.UploadState)
	}
}

func TestSaveInvalid(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *records.Record)
	}{
		{"no serial", func(r *records.Record) { r.Serial = " " }},
		{"unknown attestation", func(r *records.Record) { r.Attestation = "x509" }},
		{"unknown result", func(r *records.Record) { r.Result = "ok" }},
		{"passed without a registration ID", func(r *records.Record) { r.RegistrationID = "" }},
		{"bad registration ID", func(r *records.Record) { r.RegistrationID = "a b" }},
		{"enrollment for another ID", func(r *records.Record) { r.Enrollment.RegistrationID = "other" }},
		{"enrollment not valid", func(r *records.Record) { r.Enrollment.Attestation.TPM.EndorsementKey = "!!" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestStore(t)
			r := tpmRecord("SN-I", 1)
			tt.change(r)
			if _, err := s.Save(context.Background(), r); !errors.Is(err, records.ErrInvalid) {
				t.Errorf("Save = %v, want ErrInvalid", err)
			}
			if all, _ := s.List(context.Background(), records.Filter{}); len(all) != 0 {
				t.Errorf("a refused record was stored: %+v", all)
			}
		})
	}
}

func TestAuditIsAppendOnly(t *testing.T) {
	s, path := newTestStore(t)
	save(t, s, tpmRecord("SN-AO", 1))
	db := rawDB(t, path)
	for _, q := range []string{
		`UPDATE audit SET detail = 'nothing happened'`,
		`DELETE FROM audit`,
		`DELETE FROM records`, // records with audit rows cannot go either
	} {
		if _, err := db.Exec(q); err == nil {
			t.Errorf("%s: succeeded, want it refused", q)
		} else if !strings.Contains(err.Error(), "append-only") && !strings.Contains(err.Error(), "FOREIGN KEY") {
			t.Errorf("%s: %v, want the append-only trigger or the foreign key to refuse it", q, err)
		}
	}
	if got := events(t, s, "SN-AO"); len(got) != 1 {
		t.Errorf("audit = %q after the refused changes, want its one row", got)
	}
}

func TestGet(t *testing.T) {
	s, _ := newTestStore(t)
	tpm := tpmRecord("SN-Get-1", 1)
	save(t, s, tpm)
	save(t, s, x509Record(t, "SN-Get-2", "Cam-0002"))
	tests := []struct {
		key        string
		wantSerial string
		wantErr    error
	}{
		{"SN-Get-1", "SN-Get-1", nil},
		{"sn-get-1", "SN-Get-1", nil},
		{strings.ToUpper(tpm.RegistrationID), "SN-Get-1", nil},
		{"cam-0002", "SN-Get-2", nil},
		{"CAM-0002", "SN-Get-2", nil},
		{"SN-Get-3", "", records.ErrNotFound},
		{"", "", records.ErrNotFound},
	}
	for _, tt := range tests {
		r, err := s.Get(context.Background(), tt.key)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("Get(%q) = %v, want %v", tt.key, err, tt.wantErr)
			continue
		}
		if err == nil && r.Serial != tt.wantSerial {
			t.Errorf("Get(%q) = board %s, want %s", tt.key, r.Serial, tt.wantSerial)
		}
	}
	if r := get(t, s, "SN-Get-2"); r.RegistrationID != "cam-0002" || r.Enrollment.RegistrationID != "Cam-0002" {
		t.Errorf("registration ID stored as %q (enrollment %q), want lower case in the record, as given in the enrollment",
			r.RegistrationID, r.Enrollment.RegistrationID)
	}
}

func TestList(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	for i, serial := range []string{"SN-L1", "SN-L2", "SN-L3", "XY_L4"} {
		save(t, s, tpmRecord(serial, i))
	}
	failed := tpmRecord("SN-L5", 5)
	failed.Result = records.ResultFailed
	save(t, s, failed)
	claimAll(t, s, 2) // SN-L1, SN-L2 in flight
	tests := []struct {
		f    records.Filter
		want []string
	}{
		{records.Filter{}, []string{"SN-L5", "XY_L4", "SN-L3", "SN-L2", "SN-L1"}},
		{records.Filter{Limit: 2}, []string{"SN-L5", "XY_L4"}},
		// Search: a serial number's substring (3 characters or more) in
		// any case, % and _ taken as they are; a prefix when shorter; a
		// registration ID's prefix, not its inside.
		{records.Filter{Search: "sn-l"}, []string{"SN-L5", "SN-L3", "SN-L2", "SN-L1"}},
		{records.Filter{Search: "-l3"}, []string{"SN-L3"}},
		{records.Filter{Search: "y_l"}, []string{"XY_L4"}},
		{records.Filter{Search: "n_l"}, nil},
		{records.Filter{Search: "%l%"}, nil},
		{records.Filter{Search: "xy"}, []string{"XY_L4"}},
		{records.Filter{Search: "x"}, []string{"XY_L4"}},
		{records.Filter{Search: "L4"}, nil},
		{records.Filter{Search: "_"}, nil},
		{records.Filter{Search: strings.ToUpper(tpmRegID(fakeEK(2))[:9])}, []string{"SN-L3"}},
		{records.Filter{Search: tpmRegID(fakeEK(2))[:2]}, []string{"SN-L3"}},
		{records.Filter{Search: tpmRegID(fakeEK(2))[3:12]}, nil},
		{records.Filter{Search: "sn-l", Result: records.ResultPassed, UploadState: enroll.StateInFlight}, []string{"SN-L2", "SN-L1"}},
		{records.Filter{Result: records.ResultFailed}, []string{"SN-L5"}},
		{records.Filter{UploadState: enroll.StateInFlight}, []string{"SN-L2", "SN-L1"}},
		{records.Filter{UploadState: enroll.StatePending, Result: records.ResultPassed}, []string{"XY_L4", "SN-L3"}},
	}
	// A search that matches few records looks them up in the indexes;
	// one that matches many first tests the newest records (a window of
	// them), then looks them up when the window does not hold the page.
	// Every way gives the same records, listed or paged.
	for _, way := range []struct{ denseAt, window int }{{5000, 20000}, {1, 20000}, {1, 2}} {
		records.SetDenseAt(s, way.denseAt)
		records.SetScanWindow(s, way.window)
		for _, tt := range tests {
			rs, err := s.List(ctx, tt.f)
			if err != nil {
				t.Errorf("List(%+v): %v", tt.f, err)
				continue
			}
			var got []string
			for _, r := range rs {
				got = append(got, r.Serial)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("%+v: List(%+v) = %q, want %q", way, tt.f, got, tt.want)
			}
			if tt.f.Limit > 0 {
				continue
			}
			got = nil
			for cursor := ""; ; {
				p, err := s.Page(ctx, tt.f, cursor, 2)
				if err != nil {
					t.Fatalf("Page(%+v, %q): %v", tt.f, cursor, err)
				}
				for _, r := range p.Records {
					got = append(got, r.Serial)
				}
				if cursor = p.Next; cursor == "" {
					break
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("%+v: pages of 2 of %+v = %q, want %q", way, tt.f, got, tt.want)
			}
		}
	}
	for _, f := range []records.Filter{{Result: "ok"}, {UploadState: "done"}, {Limit: -1}} {
		if _, err := s.List(ctx, f); !errors.Is(err, records.ErrInvalid) {
			t.Errorf("List(%+v) = %v, want ErrInvalid", f, err)
		}
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	s, path := newTestStore(t)
	save(t, s, tpmRecord("SN-R1", 1))
	save(t, s, x509Record(t, "SN-R2", "cam-r2"))
	save(t, s, groupRecord("SN-R3", "grp-r3"))
	claimAll(t, s, 1)
	before, err := s.List(ctx, records.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	audit := events(t, s, "SN-R1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := records.Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s2.Close()
	after, err := s2.List(ctx, records.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("records changed across a reopen (-before +after):\n%s", diff)
	}
	if got := events(t, s2, "SN-R1"); !slices.Equal(got, audit) {
		t.Errorf("audit after reopen = %q, want %q", got, audit)
	}
	if c := counts(t, s2); c[enroll.StateInFlight] != 1 || c[enroll.StatePending] != 1 {
		t.Errorf("Counts after reopen = %v, want 1 in flight, 1 pending", c)
	}
}

func TestOpenBusy(t *testing.T) {
	ctx := context.Background()
	s, path := newTestStore(t)
	save(t, s, tpmRecord("SN-B1", 1))
	if s2, err := records.Open(ctx, path); !errors.Is(err, records.ErrBusy) {
		if err == nil {
			s2.Close()
		}
		t.Fatalf("second Open = %v, want ErrBusy", err)
	}
	// Readers are welcome alongside.
	ro, err := records.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatalf("OpenReadOnly beside a writer: %v", err)
	}
	defer ro.Close()
	if r := get(t, ro, "SN-B1"); r.Serial != "SN-B1" {
		t.Errorf("read-only Get = %+v", r)
	}
	if _, err := ro.Save(ctx, tpmRecord("SN-B2", 2)); !errors.Is(err, records.ErrReadOnly) {
		t.Errorf("read-only Save = %v, want ErrReadOnly", err)
	}
	if _, err := ro.Claim(ctx, 1); !errors.Is(err, records.ErrReadOnly) {
		t.Errorf("read-only Claim = %v, want ErrReadOnly", err)
	}
	s.Close()
	s3, err := records.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open after Close = %v", err)
	}
	s3.Close()
}

func TestOpenReadOnlyCreatesNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "missing.db")
	if _, err := records.OpenReadOnly(ctx, path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenReadOnly(missing) = %v, want fs.ErrNotExist", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("OpenReadOnly of a missing file left %v", ents)
	}
	other := filepath.Join(dir, "other.db")
	os.WriteFile(other, []byte("not a database, not at all, but long enough to look at"), 0o600)
	if _, err := records.OpenReadOnly(ctx, other); err == nil {
		t.Errorf("OpenReadOnly(not a database) succeeded")
	}

	// A closed store (no -wal or -shm left) opens read-only too.
	s, path := newTestStore(t)
	save(t, s, tpmRecord("SN-RO", 1))
	s.Close()
	ro, err := records.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatalf("OpenReadOnly(closed store): %v", err)
	}
	defer ro.Close()
	if rs, err := ro.List(ctx, records.Filter{}); err != nil || len(rs) != 1 {
		t.Errorf("List = %d records, %v; want 1", len(rs), err)
	}
}
