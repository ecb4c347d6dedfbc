package records_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"zerotouch/enroll"
	"zerotouch/station/records"
)

// A board seen for the first time gets a record in progress; a passed
// board's record moves to in progress with its identity and enrollment
// kept and held; a second Begin (a run that never ended) keeps the
// earlier result; only Save ends the run.
func TestBegin(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)

	fresh := &records.Record{Serial: "SN-B1", Model: "zt-1", Attestation: records.AttestationTPM, Station: "st-1", Slot: "2"}
	if err := s.Begin(ctx, fresh); err != nil {
		t.Fatalf("Begin(new board) = %v", err)
	}
	if fresh.Result != records.ResultInProgress || fresh.PreviousResult != "" || fresh.ID == 0 || fresh.Slot != "2" {
		t.Errorf("Begin(new board) stored %+v, want in progress with no previous result", fresh)
	}
	if got := events(t, s, "SN-B1"); !slices.Equal(got, []string{records.EventBegun}) {
		t.Errorf("audit of a new board = %q, want one %q row", got, records.EventBegun)
	}
	// The run passes: Save takes over the record.
	passed := tpmRecord("SN-B1", 1)
	if res := save(t, s, passed); !res.Created || res.Updated || !res.Queued {
		t.Errorf("Save after Begin of a new board = %+v, want it counted as created and its enrollment queued", res)
	}
	if got := events(t, s, "SN-B1"); !slices.Equal(got, []string{records.EventBegun, records.EventCreated}) {
		t.Errorf("audit of a new board's first run = %q, want %q then %q", got, records.EventBegun, records.EventCreated)
	}
	if passed.Result != records.ResultPassed || passed.PreviousResult != "" {
		t.Errorf("after Save: result %q, previous %q; want passed, none", passed.Result, passed.PreviousResult)
	}

	// Provisioned again: in progress, enrollment held.
	again := &records.Record{Serial: "SN-B1", Attestation: records.AttestationTPM, Station: "st-2", Slot: "4", Operator: "bo"}
	if err := s.Begin(ctx, again); err != nil {
		t.Fatal(err)
	}
	if again.Result != records.ResultInProgress || again.PreviousResult != records.ResultPassed ||
		again.RegistrationID != passed.RegistrationID || !bytes.Equal(again.EKPublic, passed.EKPublic) ||
		again.Enrollment == nil || again.UploadState != enroll.StatePending || again.Station != "st-2" {
		t.Errorf("Begin(passed board) stored %+v, want in progress, was passed, identity and enrollment kept", again)
	}
	if es, err := s.Claim(ctx, 10); err != nil || len(es) != 0 {
		t.Errorf("Claim while the board is in progress = %d, %v; want its enrollment held", len(es), err)
	}
	if c := counts(t, s); c[records.StateHeld] != 1 || c[enroll.StatePending] != 0 {
		t.Errorf("Counts while in progress = %v, want 1 held, none pending", c)
	}
	var buf bytes.Buffer
	if n, err := s.Export(ctx, &buf, records.FormatJSON, records.Filter{}); err != nil || n != 0 || strings.Contains(buf.String(), passed.RegistrationID) {
		t.Errorf("Export while in progress = %d, %q, %v; want the held enrollment left out", n, buf.String(), err)
	}

	// The station stopped; the next run begins again.
	if err := s.Begin(ctx, &records.Record{Serial: "SN-B1", Attestation: records.AttestationTPM}); err != nil {
		t.Fatal(err)
	}
	r := get(t, s, "SN-B1")
	if r.Result != records.ResultInProgress || r.PreviousResult != records.ResultPassed {
		t.Errorf("second Begin: result %q, previous %q; want in progress, was passed", r.Result, r.PreviousResult)
	}
	audit, err := s.Audit(ctx, "SN-B1")
	if err != nil {
		t.Fatal(err)
	}
	if last := audit[len(audit)-1]; last.Event != records.EventBegun || !strings.Contains(last.Detail, "did not finish") {
		t.Errorf("last audit row = %+v, want a %q row saying the earlier run did not finish", last, records.EventBegun)
	}
	list, err := s.InProgress(ctx)
	if err != nil || len(list) != 1 || list[0].Serial != "SN-B1" {
		t.Errorf("InProgress = %v, %v; want SN-B1", list, err)
	}

	// It fails: the enrollment stays held; it passes: it is uploaded.
	failed := &records.Record{Serial: "SN-B1", Attestation: records.AttestationTPM, Result: records.ResultFailed, Message: "write failed"}
	save(t, s, failed)
	if es, _ := s.Claim(ctx, 10); len(es) != 0 {
		t.Errorf("Claim after a failed run = %d, want the enrollment held", len(es))
	}
	save(t, s, tpmRecord("SN-B1", 1))
	if es := claimAll(t, s, 1); es[0].RegistrationID != passed.RegistrationID {
		t.Errorf("Claim after passing again = %s, want %s", es[0].RegistrationID, passed.RegistrationID)
	}

	// Bad input is refused before anything is written.
	for _, bad := range []*records.Record{{Attestation: records.AttestationTPM}, {Serial: "SN-X", Attestation: "psk"}} {
		if err := s.Begin(ctx, bad); !errors.Is(err, records.ErrInvalid) {
			t.Errorf("Begin(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := s.Get(ctx, "SN-X"); !errors.Is(err, records.ErrNotFound) {
		t.Errorf("a refused Begin left a record: %v", err)
	}
	// Save cannot put a board in progress: only Begin does.
	ip := tpmRecord("SN-B2", 2)
	ip.Result = records.ResultInProgress
	if _, err := s.Save(ctx, ip); !errors.Is(err, records.ErrInvalid) {
		t.Errorf("Save(in progress) = %v, want ErrInvalid", err)
	}
}

// An enrollment this store handed to the uploader may be on its way to
// DPS: Begin waits until its outcome is settled, so that it cannot land
// after the board's key is replaced. A claim left by a process that died
// (read back from the file) does not hold Begin up.
func TestBeginWaitsForALiveClaim(t *testing.T) {
	ctx := context.Background()
	s, path := newTestStore(t)
	save(t, s, x509Record(t, "SN-W1", "reg-w1"))
	es := claimAll(t, s, 1)

	done := make(chan error, 1)
	go func() {
		done <- s.Begin(ctx, &records.Record{Serial: "SN-W1", Attestation: records.AttestationX509Keygen})
	}()
	select {
	case err := <-done:
		t.Fatalf("Begin returned %v while the board's enrollment was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: es[0].RegistrationID, State: enroll.StateUploaded, ETag: `"1"`}}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Begin after the outcome = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Begin still waits after the outcome was settled")
	}
	if r := get(t, s, "SN-W1"); r.Result != records.ResultInProgress || r.UploadState != enroll.StateUploaded {
		t.Errorf("after Begin: %q, upload %q; want in progress, uploaded", r.Result, r.UploadState)
	}

	// Its context bounds the wait.
	save(t, s, x509Record(t, "SN-W2", "reg-w2"))
	claimAll(t, s, 1)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := s.Begin(short, &records.Record{Serial: "SN-W2", Attestation: records.AttestationX509Keygen}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Begin with a live claim and a short context = %v, want DeadlineExceeded", err)
	}

	// The process dies with the claim out: the next one is not held up.
	s.Close()
	s2, err := records.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	quick, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if err := s2.Begin(quick, &records.Record{Serial: "SN-W2", Attestation: records.AttestationX509Keygen}); err != nil {
		t.Errorf("Begin after a restart with a dead claim = %v", err)
	}
}

// A records file of schema version 3 is brought to version 4 with every
// record and audit row kept, and then takes boards in progress.
func TestMigrateToInProgress(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v3.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"0001_records.sql", "0002_replaces.sql", "0003_registration.sql"} {
		b, err := os.ReadFile(filepath.Join("migrations", f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(string(b)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	const now = "2026-01-02T03:04:05.000000000Z"
	mustExec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	mustExec(`INSERT INTO records (serial, attestation, registration_id, result, enrollment, upload_state, generation,
		queue_seq, created_at, updated_at, replaces, registration_state, assigned_hub)
		VALUES ('SN-OLD', 'symmetric-key', 'sn-old', 'passed', '{"registrationId":"sn-old"}', 'uploaded', 1, 1, ?, ?, '"e1"', 'assigned', 'hub-1')`, now, now)
	mustExec(`INSERT INTO audit (time, record_id, serial, event, detail) VALUES (?, 1, 'SN-OLD', 'created', 'passed')`, now)
	mustExec(`PRAGMA user_version = 3`)
	db.Close()

	s, err := records.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open(a version 3 file) = %v", err)
	}
	defer s.Close()
	r := get(t, s, "SN-OLD")
	if r.Result != records.ResultPassed || r.RegistrationID != "sn-old" || r.UploadState != enroll.StateUploaded ||
		r.Registration == nil || r.Registration.AssignedHub != "hub-1" {
		t.Errorf("migrated record = %+v, want everything kept", r)
	}
	if got := events(t, s, "SN-OLD"); !slices.Equal(got, []string{"created"}) {
		t.Errorf("migrated audit = %q, want the one row kept", got)
	}
	if err := s.Begin(ctx, &records.Record{Serial: "SN-OLD", Attestation: records.AttestationSymmetricKey}); err != nil {
		t.Fatalf("Begin on a migrated record = %v", err)
	}
	// The audit log is still append-only and still tied to its records.
	raw := rawDB(t, path)
	if _, err := raw.Exec(`DELETE FROM records WHERE serial = 'SN-OLD'`); err == nil {
		t.Error("a migrated record with an audit trail could be deleted")
	}
	if _, err := raw.Exec(`UPDATE records SET result = 'bogus' WHERE serial = 'SN-OLD'`); err == nil {
		t.Error("the migrated table takes a result that is not passed, failed or in_progress")
	}
}
