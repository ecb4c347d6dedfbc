package records_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
	"zerotouch/station/records"
)

// claimAll claims up to n enrollments and fails unless it gets n.
func claimAll(t testing.TB, s enroll.Queue, n int) []enroll.Enrollment {
	t.Helper()
	es, err := s.Claim(context.Background(), n)
	if err != nil {
		t.Fatalf("Claim(%d): %v", n, err)
	}
	if len(es) != n {
		t.Fatalf("Claim(%d) = %d enrollments, want %d", n, len(es), n)
	}
	return es
}

func TestClaimSettleRecover(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	for i := range 5 {
		save(t, s, tpmRecord(fmt.Sprintf("SN-C%d", i), i))
	}
	save(t, s, groupRecord("SN-G", "grp-c")) // nothing to enroll

	es := claimAll(t, s, 3)
	for i, e := range es { // oldest queued first
		if want := tpmRegID(fakeEK(i)); e.RegistrationID != want {
			t.Errorf("Claim[%d] = %s, want %s", i, e.RegistrationID, want)
		}
	}
	if c := counts(t, s); c[enroll.StateInFlight] != 3 || c[enroll.StatePending] != 2 {
		t.Errorf("Counts after claiming 3 = %v, want 3 in flight, 2 pending", c)
	}
	outs := []enroll.Outcome{
		{RegistrationID: strings.ToUpper(es[0].RegistrationID), State: enroll.StateUploaded, ETag: `"e0"`},
		{RegistrationID: es[1].RegistrationID, State: enroll.StateFailed, Error: "DPS refused it: bad EK (errorCode 400004)"},
		{RegistrationID: es[2].RegistrationID, State: enroll.StateConflict, Error: "differs in attestation"},
	}
	if err := s.Settle(ctx, outs); err != nil {
		t.Fatalf("Settle: %v", err)
	}
	for i, o := range outs {
		r := get(t, s, fmt.Sprintf("SN-C%d", i))
		if r.UploadState != o.State || r.UploadError != o.Error || r.ETag != o.ETag {
			t.Errorf("SN-C%d settled as %q %q %q, want %q %q %q", i, r.UploadState, r.UploadError, r.ETag, o.State, o.Error, o.ETag)
		}
	}
	if got, want := events(t, s, "SN-C0"), []string{records.EventCreated, records.EventUploadClaimed, records.EventUploadSettled}; !slices.Equal(got, want) {
		t.Errorf("audit of SN-C0 = %q, want %q", got, want)
	}

	// Two more in flight, then a crash: Recover puts them back.
	claimAll(t, s, 2)
	if more, err := s.Claim(ctx, 10); err != nil || len(more) != 0 {
		t.Errorf("Claim with nothing pending = %d, %v; want none", len(more), err)
	}
	n, err := s.Recover(ctx)
	if err != nil || n != 2 {
		t.Errorf("Recover = %d, %v; want 2", n, err)
	}
	if c := counts(t, s); c[enroll.StatePending] != 2 || c[enroll.StateInFlight] != 0 {
		t.Errorf("Counts after Recover = %v, want 2 pending", c)
	}
	if ev := events(t, s, "SN-C3"); !slices.Contains(ev, records.EventUploadRecovered) {
		t.Errorf("audit of SN-C3 = %q, want a %q row", ev, records.EventUploadRecovered)
	}
	// Put back to pending by the uploader (a transient answer): claimable again.
	es = claimAll(t, s, 2)
	if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: es[0].RegistrationID, State: enroll.StatePending, Error: "503"}}); err != nil {
		t.Fatal(err)
	}
	if again := claimAll(t, s, 1); again[0].RegistrationID != es[0].RegistrationID {
		t.Errorf("Claim after a retry = %s, want %s", again[0].RegistrationID, es[0].RegistrationID)
	}
	// An outcome for an ID no record holds, and a bad state.
	if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: "nobody", State: enroll.StateUploaded}}); err != nil {
		t.Errorf("Settle(unknown ID) = %v, want it ignored", err)
	}
	if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: es[1].RegistrationID, State: enroll.StateInFlight}}); !errors.Is(err, records.ErrInvalid) {
		t.Errorf("Settle(in_flight) = %v, want ErrInvalid", err)
	}
}

func TestSettleAfterResaveKeepsTheNewEnrollment(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	id := tpmRegID(fakeEK(1))
	save(t, s, tpmRecord("SN-S", 1))
	old := claimAll(t, s, 1)[0]

	// The board is provisioned again meanwhile, with a changed enrollment.
	r := tpmRecord("SN-S", 1)
	r.DeviceID, r.Enrollment.DeviceID = "dev-renamed", "dev-renamed"
	if res := save(t, s, r); !res.Queued {
		t.Fatalf("re-save with a changed enrollment = %+v, want queued", res)
	}
	// A claim is out on this ID: the new enrollment waits for its outcome.
	if es, err := s.Claim(ctx, 10); err != nil || len(es) != 0 {
		t.Fatalf("Claim while the old enrollment is in flight = %v, %v; want nothing", es, err)
	}
	if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: id, State: enroll.StateUploaded, ETag: `"old"`}}); err != nil {
		t.Fatal(err)
	}
	got := get(t, s, "SN-S")
	if got.UploadState != enroll.StatePending || got.ETag != "" || got.Enrollment.DeviceID != "dev-renamed" {
		t.Fatalf("after the old enrollment's outcome: state %q etag %q device %q; want the new enrollment still pending",
			got.UploadState, got.ETag, got.Enrollment.DeviceID)
	}
	if ev := events(t, s, "SN-S"); !slices.Contains(ev, records.EventUploadStale) {
		t.Errorf("audit = %q, want a %q row", ev, records.EventUploadStale)
	}
	// Now the new one goes.
	next := claimAll(t, s, 1)[0]
	if next.DeviceID != "dev-renamed" || old.DeviceID == next.DeviceID {
		t.Errorf("claimed %+v, want the new enrollment", next)
	}
	if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: id, State: enroll.StateUploaded, ETag: `"new"`}}); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "SN-S"); got.UploadState != enroll.StateUploaded || got.ETag != `"new"` {
		t.Errorf("after the new enrollment's outcome: %q %q, want uploaded \"new\"", got.UploadState, got.ETag)
	}

	// Re-saved to a group mode while in flight: the outcome is dropped.
	save(t, s, tpmRecord("SN-T", 2))
	claimAll(t, s, 1)
	g := tpmRecord("SN-T", 2)
	g.Enrollment = nil
	save(t, s, g)
	if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: tpmRegID(fakeEK(2)), State: enroll.StateUploaded}}); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, "SN-T"); got.UploadState != "" || got.Enrollment != nil {
		t.Errorf("after dropping the enrollment and a late outcome: %q %v, want no enrollment", got.UploadState, got.Enrollment)
	}
}

func TestConcurrentSaves(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	const workers, boards = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*(boards+2))
	for w := range workers {
		wg.Go(func() {
			for b := range boards {
				i := w*boards + b
				if _, err := s.Save(ctx, tpmRecord(fmt.Sprintf("SN-%03d", i), i)); err != nil {
					errs <- err
				}
			}
			// Every worker saves the same board: one record.
			r := tpmRecord("SN-SHARED", 9999)
			r.Slot = fmt.Sprint(w)
			if _, err := s.Save(ctx, r); err != nil {
				errs <- err
			}
			// And a clone of board 0: refused every time.
			if _, err := s.Save(ctx, tpmRecord(fmt.Sprintf("SN-CLONE-%d", w), 0)); !errors.Is(err, records.ErrClone) {
				errs <- fmt.Errorf("clone %d: %v, want ErrClone", w, err)
			}
		})
	}
	// The uploader claims at the same time.
	claimed := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			es, err := s.Claim(ctx, 5)
			if err != nil {
				errs <- err
				return
			}
			claimed += len(es)
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	<-done
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	all, err := s.List(ctx, records.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != workers*boards+1 {
		t.Errorf("List = %d records, want %d", len(all), workers*boards+1)
	}
	c := counts(t, s)
	if c[enroll.StatePending]+c[enroll.StateInFlight] != workers*boards+1 || c[enroll.StateInFlight] != claimed {
		t.Errorf("Counts = %v with %d claimed, want %d queued", c, claimed, workers*boards+1)
	}
	if ev := events(t, s, "SN-SHARED"); len(ev) < workers || ev[0] != records.EventCreated {
		t.Errorf("audit of the shared board = %q, want created then updates", ev)
	}
	if ev := events(t, s, "SN-000"); len(slices.DeleteFunc(ev, func(e string) bool { return e != records.EventClone })) != workers {
		t.Errorf("audit of board 0 has %d clone rows, want %d", len(ev), workers)
	}
}

func TestExportRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	var want []enroll.Enrollment
	for i := range 3 {
		r := tpmRecord(fmt.Sprintf("SN-E%d", i), i)
		save(t, s, r)
		want = append(want, *r.Enrollment)
	}
	x := x509Record(t, "SN-EX", "cam-ex")
	x.Enrollment.IoTHubs = []string{"hub1.azure-devices.net"}
	x.Enrollment.Capabilities = &enroll.Capabilities{IoTEdge: true}
	save(t, s, x)
	want = append(want, *x.Enrollment)
	save(t, s, groupRecord("SN-EG", "grp-e")) // nothing to export
	failed := &records.Record{Serial: "SN-EF", Attestation: records.AttestationTPM, Result: records.ResultFailed}
	save(t, s, failed)

	for _, format := range []string{records.FormatCSV, records.FormatJSON} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := s.Export(ctx, &buf, format, records.Filter{})
			if err != nil || n != len(want) {
				t.Fatalf("Export(%s) = %d, %v; want %d", format, n, err, len(want))
			}
			got, err := enroll.ReadFile(bytes.NewReader(buf.Bytes()), "export."+format)
			if err != nil {
				t.Fatalf("ReadFile(Export(%s)): %v\n%s", format, err, buf.String())
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Export(%s) read back differs (-want +got):\n%s", format, diff)
			}
		})
	}
	var buf bytes.Buffer
	if n, err := s.Export(ctx, &buf, records.FormatJSON, records.Filter{Search: "SN-E1"}); err != nil || n != 1 {
		t.Fatalf("Export(search SN-E1) = %d, %v; want 1", n, err)
	}
	if got, err := enroll.ReadFile(&buf, "x.json"); err != nil || len(got) != 1 || got[0].RegistrationID != want[1].RegistrationID {
		t.Errorf("Export(search SN-E1) = %v, %v; want one enrollment", got, err)
	}
	if _, err := s.Export(ctx, &buf, "xml", records.Filter{}); !errors.Is(err, records.ErrInvalid) {
		t.Errorf("Export(xml) = %v, want ErrInvalid", err)
	}
	// Boards of a group mode only: nothing to export, and nothing written
	// (no CSV header, no empty array) that could pass for work to upload.
	for _, format := range []string{records.FormatCSV, records.FormatJSON} {
		buf.Reset()
		if n, err := s.Export(ctx, &buf, format, records.Filter{Search: "SN-EG"}); err != nil || n != 0 || buf.Len() != 0 {
			t.Errorf("Export(%s) of a group-mode board = %d, %v, wrote %q; want 0, nil and nothing", format, n, err, buf.String())
		}
	}
	// An enrollment a CSV cannot hold: refused before anything is written.
	tw := tpmRecord("SN-TWIN", 50)
	tw.Enrollment.InitialTwin = &enroll.InitialTwin{Tags: map[string]any{"line": "a"}}
	save(t, s, tw)
	buf.Reset()
	if _, err := s.Export(ctx, &buf, records.FormatCSV, records.Filter{}); err == nil || buf.Len() != 0 {
		t.Errorf("Export(csv) with an initialTwin = %v, wrote %d bytes; want an error and nothing written", err, buf.Len())
	}
}

// TestUploaderDrainsTheStore runs the enroll.Uploader against the store
// and the DPS emulator: every enrollment ends uploaded, in DPS once, and
// a board provisioned again unchanged sends nothing.
func TestUploaderDrainsTheStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := emulator.Start(ctx, "127.0.0.1:0", filepath.Join(t.TempDir(), "dps"), emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cs, err := enroll.ParseConnectionString(srv.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	client, err := enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: srv.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newTestStore(t)
	const n = 35
	for i := range n {
		save(t, s, tpmRecord(fmt.Sprintf("SN-U%02d", i), i))
	}
	save(t, s, x509Record(t, "SN-UX", "cam-ux"))
	save(t, s, groupRecord("SN-UG", "grp-ug"))

	run := func() enroll.Stats {
		t.Helper()
		u, err := enroll.NewUploader(enroll.UploaderConfig{Client: client, Queue: s, Quota: 600000})
		if err != nil {
			t.Fatal(err)
		}
		st, err := u.Run(ctx)
		if err != nil {
			t.Fatalf("Uploader.Run: %v (%+v)", err, st)
		}
		return st
	}
	st := run()
	if st.Uploaded != n+1 {
		t.Errorf("uploaded %d, want %d", st.Uploaded, n+1)
	}
	if c := counts(t, s); !cmp.Equal(c, map[enroll.State]int{enroll.StateUploaded: n + 1}) {
		t.Errorf("Counts = %v, want all %d uploaded", c, n+1)
	}
	inDPS := 0
	for e, err := range client.Enrollments(ctx, 100) {
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, e.RegistrationID); err != nil {
			t.Errorf("DPS holds %s, which no record has: %v", e.RegistrationID, err)
		}
		inDPS++
	}
	if inDPS != n+1 {
		t.Errorf("DPS holds %d enrollments, want %d", inDPS, n+1)
	}

	// The same boards again, unchanged: nothing goes up.
	for i := range 5 {
		if res := save(t, s, tpmRecord(fmt.Sprintf("SN-U%02d", i), i)); res.Queued {
			t.Errorf("re-save of an uploaded board queued it: %+v", res)
		}
	}
	if st := run(); st.Requests != 0 || st.Uploaded != 0 {
		t.Errorf("second run sent %d requests, uploaded %d; want nothing", st.Requests, st.Uploaded)
	}

	// Boards provisioned again with changed enrollments (a new
	// certificate, another device ID) replace what DPS holds: no conflict.
	x := x509Record(t, "SN-UX", "cam-ux")
	tp := tpmRecord("SN-U07", 7)
	tp.DeviceID, tp.Enrollment.DeviceID = "dev-renamed", "dev-renamed"
	for _, r := range []*records.Record{x, tp} {
		if res := save(t, s, r); !res.Queued {
			t.Errorf("re-save of %s with a changed enrollment = %+v, want queued", r.Serial, res)
		}
	}
	if st := run(); st.Uploaded != 2 || st.Conflicts != 0 {
		t.Errorf("third run uploaded %d with %d conflicts (%s); want 2 replaced", st.Uploaded, st.Conflicts, st.LastError)
	}
	if c := counts(t, s); !cmp.Equal(c, map[enroll.State]int{enroll.StateUploaded: n + 1}) {
		t.Errorf("Counts = %v, want all %d uploaded", c, n+1)
	}
	for _, r := range []*records.Record{x, tp} {
		got, err := client.Get(ctx, r.RegistrationID)
		if err != nil {
			t.Fatal(err)
		}
		if d := enroll.Differences(r.Enrollment, got); len(d) > 0 {
			t.Errorf("DPS holds %s differing in %v from the board's new enrollment", r.RegistrationID, d)
		}
	}
}

func TestClaimReplacesWhatDPSHolds(t *testing.T) {
	ctx := context.Background()
	s, _ := newTestStore(t)
	save(t, s, tpmRecord("SN-RP", 1))
	if e := claimAll(t, s, 1)[0]; e.ETag != "" {
		t.Errorf("first claim has ETag %q, want none (create)", e.ETag)
	}
	if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: tpmRegID(fakeEK(1)), State: enroll.StateUploaded}}); err != nil {
		t.Fatal(err)
	}
	changed := tpmRecord("SN-RP", 1)
	changed.Enrollment.ProvisioningStatus = "disabled"
	save(t, s, changed)
	if e := claimAll(t, s, 1)[0]; e.ETag != "*" {
		t.Errorf("claim of a changed enrollment DPS took before has ETag %q, want \"*\" (replace)", e.ETag)
	}
	if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: tpmRegID(fakeEK(1)), State: enroll.StateUploaded, ETag: `"e2"`}}); err != nil {
		t.Fatal(err)
	}
	// A new EK, so a new registration ID: created, not replaced.
	save(t, s, tpmRecord("SN-RP", 2))
	if e := claimAll(t, s, 1)[0]; e.ETag != "" || e.RegistrationID != tpmRegID(fakeEK(2)) {
		t.Errorf("claim after a new EK = %s with ETag %q, want the new ID, created", e.RegistrationID, e.ETag)
	}

	// The old enrollment lands while a changed one waits: the changed one
	// replaces it.
	save(t, s, tpmRecord("SN-RQ", 3))
	claimAll(t, s, 1)
	c := tpmRecord("SN-RQ", 3)
	c.Enrollment.ProvisioningStatus = "disabled"
	save(t, s, c)
	if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: tpmRegID(fakeEK(3)), State: enroll.StateUploaded, ETag: `"e1"`}}); err != nil {
		t.Fatal(err)
	}
	if e := claimAll(t, s, 1)[0]; e.ETag != `"e1"` || e.ProvisioningStatus != "disabled" {
		t.Errorf("claim after a stale upload = %+v, want the changed enrollment with ETag \"e1\"", e)
	}
}
