package enroll_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
)

func newState(t testing.TB, es []enroll.Enrollment) *enroll.StateFile {
	t.Helper()
	s, err := enroll.OpenStateFile(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.Add(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	return s
}

func manyTPM(n int) []enroll.Enrollment {
	es := make([]enroll.Enrollment, n)
	for i := range es {
		es[i] = tpm(fmt.Sprintf("board-%05d", i), i)
	}
	return es
}

// checkExactlyOnce checks that DPS holds every enrollment in es, each
// written once, and nothing else.
func checkExactlyOnce(t *testing.T, srv *emulator.Server, c *enroll.Client, es []enroll.Enrollment) {
	t.Helper()
	ctx := context.Background()
	seen := map[string]bool{}
	for e, err := range c.Enrollments(ctx, 1000) {
		if err != nil {
			t.Fatalf("query DPS: %v", err)
		}
		if seen[e.RegistrationID] {
			t.Errorf("query returned %s twice", e.RegistrationID)
		}
		seen[e.RegistrationID] = true
	}
	if len(seen) != len(es) {
		t.Errorf("DPS holds %d enrollments, want %d", len(seen), len(es))
	}
	twice := 0
	for i := range es {
		if !seen[es[i].RegistrationID] {
			t.Errorf("%s lost: not in DPS", es[i].RegistrationID)
			continue
		}
		n, err := srv.Emulator.Writes(ctx, es[i].RegistrationID)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			twice++
			if twice < 10 {
				t.Errorf("%s written %d times, want once", es[i].RegistrationID, n)
			}
		}
	}
	if twice > 0 {
		t.Errorf("%d enrollments written more than once", twice)
	}
}

// TestUploadExactlyOnceWithFaults: 10,000 enrollments through an
// emulator that fails 20% of requests (errors, connections cut before the
// work, connections cut after it) all arrive, once each.
func TestUploadExactlyOnceWithFaults(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	srv, client := newEmulator(t, emulator.Options{Synchronous: "NORMAL"})
	es := manyTPM(n)
	state := newState(t, es)
	// 20% of requests fail (an error answer, a connection cut before the
	// work, or cut after it), and 3% of the items of the bulk requests
	// answered fail on their own.
	srv.Emulator.SetFaults(emulator.Faults{ErrorRate: 0.07, DropRate: 0.06, DropAfterRate: 0.07, ItemErrorRate: 0.03, Seed: 5})
	up, err := enroll.NewUploader(enroll.UploaderConfig{
		Client: newClient(t, srv, enroll.Config{Timeout: 10 * time.Second}), Queue: state,
		Quota: 6_000_000, Share: 1, Workers: 8, Attempts: 50,
	})
	if err != nil {
		t.Fatal(err)
	}
	stats, err := up.Run(context.Background())
	if err != nil {
		t.Fatalf("Run = %v (stats %+v)", err, stats)
	}
	srv.Emulator.SetFaults(emulator.Faults{})
	es2 := srv.Emulator.Stats()
	t.Logf("uploader: %+v; emulator: %+v", stats, es2)
	if stats.Uploaded != n {
		t.Errorf("Uploaded = %d, want %d", stats.Uploaded, n)
	}
	if es2.Errors == 0 || es2.Drops == 0 || es2.DropsAfter == 0 || es2.ItemErrors == 0 {
		t.Errorf("emulator injected errors %d, drops %d, drops after %d, item errors %d: want each kind",
			es2.Errors, es2.Drops, es2.DropsAfter, es2.ItemErrors)
	}
	if stats.Already == 0 {
		t.Errorf("no enrollment was found already in DPS; the drops after the work should have caused some")
	}
	counts, _ := state.Counts(context.Background())
	if counts[enroll.StateUploaded] != n {
		t.Errorf("state counts = %v, want %d uploaded", counts, n)
	}
	checkExactlyOnce(t, srv, client, es)
}

// An enrollment DPS holds with other content is a conflict, left alone;
// one it holds with the same content counts as uploaded.
func TestUploadConflicts(t *testing.T) {
	ctx := context.Background()
	srv, client := newEmulator(t, emulator.Options{})
	es := manyTPM(25)
	same, other := es[3], tpm(es[7].RegistrationID, 9999)
	for _, e := range []enroll.Enrollment{same, other} {
		if _, err := client.CreateOrUpdate(ctx, &e, ""); err != nil {
			t.Fatal(err)
		}
	}
	state := newState(t, es)
	up, _ := enroll.NewUploader(enroll.UploaderConfig{Client: newClient(t, srv, enroll.Config{}), Queue: state, Quota: 600_000})
	stats, err := up.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Uploaded != 24 || stats.Conflicts != 1 || stats.Already != 1 {
		t.Errorf("stats = %+v, want 24 uploaded (1 already there), 1 conflict", stats)
	}
	outs, _ := state.Outcomes(ctx, enroll.StateConflict)
	if len(outs) != 1 || outs[0].RegistrationID != other.RegistrationID || !strings.Contains(outs[0].Error, "attestation") {
		t.Errorf("conflicts = %+v, want %s differing in attestation", outs, other.RegistrationID)
	}
	got, _ := client.Get(ctx, other.RegistrationID)
	if got.Attestation.TPM.EndorsementKey != other.Attestation.TPM.EndorsementKey {
		t.Errorf("the enrollment in conflict was overwritten")
	}
}

// Throttled by DPS's quota, the uploader waits as told and finishes.
func TestUploadThrottled(t *testing.T) {
	ctx := context.Background()
	srv, client := newEmulator(t, emulator.Options{Quota: 600, Burst: 2})
	es := manyTPM(100)
	state := newState(t, es)
	// Told the quota is ten times what it is, it must be throttled.
	up, _ := enroll.NewUploader(enroll.UploaderConfig{Client: newClient(t, srv, enroll.Config{}), Queue: state, Quota: 6000, Workers: 4})
	stats, err := up.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Throttled == 0 || srv.Emulator.Stats().Throttled == 0 {
		t.Errorf("stats = %+v: want some requests throttled", stats)
	}
	if stats.Uploaded != len(es) {
		t.Errorf("Uploaded = %d, want %d", stats.Uploaded, len(es))
	}
	checkExactlyOnce(t, srv, client, es)
}

// Wrong credentials stop the upload at once, unretried (one request for
// one worker), with everything pending.
func TestUploadUnauthorized(t *testing.T) {
	ctx := context.Background()
	srv, _ := newEmulator(t, emulator.Options{})
	cs, _ := enroll.ParseConnectionString(srv.ConnectionString)
	cs.Key = []byte("not the emulator's key")
	c, err := enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: srv.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	state := newState(t, manyTPM(30))
	up, _ := enroll.NewUploader(enroll.UploaderConfig{Client: c, Queue: state, Quota: 600_000, Workers: 1})
	stats, err := up.Run(ctx)
	if !errors.Is(err, enroll.ErrIncomplete) || !errors.Is(err, enroll.ErrUnauthorized) || !enroll.Permanent(err) {
		t.Fatalf("Run = %v, want ErrIncomplete and ErrUnauthorized, permanent", err)
	}
	if stats.Requests != 1 {
		t.Errorf("%d requests, want 1", stats.Requests)
	}
	counts, _ := state.Counts(ctx)
	if counts[enroll.StatePending] != 30 {
		t.Errorf("counts = %v, want all 30 pending", counts)
	}
}
