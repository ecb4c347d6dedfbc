package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
	"zerotouch/internal/pgtest"
	"zerotouch/station/records"
)

// envUploadersN sets how many enrollments TestUploadersShareOneQueue
// drains (default 10,000).
const envUploadersN = "ZEROTOUCH_UPLOADERS_N"

// queueOnPG saves n passed boards in the factory's records at db, their
// enrollments queued, and returns the enrollments.
func queueOnPG(t *testing.T, db string, n int) []enroll.Enrollment {
	t.Helper()
	ctx := context.Background()
	store, err := records.OpenPostgres(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	es := make([]enroll.Enrollment, n)
	for i := range es {
		es[i] = enroll.Enrollment{RegistrationID: fmt.Sprintf("unit-%05d", i), DeviceID: fmt.Sprintf("dev-%05d", i),
			Attestation: enroll.Attestation{Type: enroll.AttestationTPM, TPM: &enroll.TPMAttestation{EndorsementKey: fmt.Sprintf("AToAAQALAAMA%08d", i)}}}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				r := &records.Record{Serial: fmt.Sprintf("SN-%05d", i), Attestation: records.AttestationTPM, RegistrationID: es[i].RegistrationID,
					EKPublic: []byte(fmt.Sprintf("ek-%05d", i)), Result: records.ResultPassed, Enrollment: &es[i],
					Station: fmt.Sprintf("st-%d", i%4), Line: "l1", Slot: "slot-1"}
				if _, err := store.Save(ctx, r); err != nil {
					errs <- fmt.Errorf("save board %s: %w", r.Serial, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return es
}

// uploaderProc is one `zerotouch upload --follow` process.
type uploaderProc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when it has exited, err set
	err  error         // cmd.Wait's
}

func startUploader(t *testing.T, log string, args []string) *uploaderProc {
	t.Helper()
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "ZEROTOUCH_TEST_AS_MAIN=1")
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &uploaderProc{cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *uploaderProc) logTail() string {
	b, _ := os.ReadFile(p.log)
	return tail(string(b), 15)
}

// Acceptance: four uploader services drain one queue in PostgreSQL into
// a DPS that fails requests, drops them before and after doing the work,
// while 20 SIGKILLs land on them, spread over the run (each killed one is
// started again): in the end every enrollment is in DPS, written once,
// and none is left pending.
func TestUploadersShareOneQueue(t *testing.T) {
	n := 10000
	if v := os.Getenv(envUploadersN); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 100 {
			t.Fatalf("$%s = %q: want a number of enrollments, at least 100", envUploadersN, v)
		}
	}
	const uploaders, kills = 4, 20
	ctx := context.Background()
	srv, connFile := startEmulator(t, emulator.Options{Synchronous: "NORMAL", Quota: 60000,
		Faults: emulator.Faults{ErrorRate: 0.04, DropRate: 0.04, DropAfterRate: 0.04, Seed: 9}})
	db := pgtest.New(t)
	start := time.Now()
	es := queueOnPG(t, db, n)
	t.Logf("%d enrollments queued in %v", n, time.Since(start))
	watch, err := records.OpenPostgresReadOnly(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()

	dir := t.TempDir()
	args := []string{"upload", "--records", db, "--follow", "--connection-string-file", connFile, "--ca-file", srv.CAFile,
		"--quota", "60000", "--share", "0.97", "--lease", "3s", "--poll", "500ms", "--timeout", "10s"}
	procs := make([]*uploaderProc, uploaders)
	for i := range procs {
		procs[i] = startUploader(t, filepath.Join(dir, fmt.Sprintf("uploader-%d.log", i)), args)
	}
	rng := rand.New(rand.NewPCG(20, 4))
	start = time.Now()
	killed := 0
	var counts map[enroll.State]int
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 minutes: %v, %d kills; uploader 0's log:\n%s", counts, killed, procs[0].logTail())
		}
		if counts, err = watch.Counts(ctx); err != nil {
			t.Fatal(err)
		}
		for i, p := range procs {
			select {
			case <-p.done:
				t.Fatalf("uploader %d stopped on its own: %v\n%s", i, p.err, p.logTail())
			default:
			}
		}
		// The kills are spread over the run by progress, however fast
		// this machine drains the queue: kill k once k+1 22nds are up.
		if killed < kills && counts[enroll.StateUploaded] >= (killed+1)*n/(kills+2) {
			i := rng.IntN(uploaders)
			p := procs[i]
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
			var ee *exec.ExitError
			if !errors.As(p.err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("uploader %d: %v, want killed by SIGKILL\n%s", i, p.err, p.logTail())
			}
			killed++
			t.Logf("kill %d: uploader %d, at %v", killed, i, counts)
			procs[i] = startUploader(t, p.log, args)
		}
		if killed == kills && counts[enroll.StateUploaded] == n && counts[enroll.StatePending]+counts[enroll.StateInFlight] == 0 {
			break
		}
		if counts[enroll.StateFailed]+counts[enroll.StateConflict] > 0 {
			t.Fatalf("queue %v: none should fail or be in conflict", counts)
		}
	}
	drained := time.Since(start)

	// SIGTERM: each stops cleanly, exit 0.
	for _, p := range procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for i, p := range procs {
		select {
		case <-p.done:
			if p.err != nil {
				t.Errorf("uploader %d after SIGTERM: %v, want exit 0\n%s", i, p.err, p.logTail())
			}
		case <-time.After(time.Minute):
			t.Errorf("uploader %d still running a minute after SIGTERM\n%s", i, p.logTail())
		}
	}

	dpsHolds(t, srv, es)
	st := srv.Emulator.Stats()
	if st.Errors == 0 || st.Drops == 0 || st.DropsAfter == 0 {
		t.Errorf("emulator stats %+v: want errors, drops before and drops after the work", st)
	}
	// The kills left claims that others took over once their lease ran
	// out.
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var takenOver int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit WHERE event = $1 OR detail LIKE '%taken over from uploader%'`,
		records.EventUploadRecovered).Scan(&takenOver); err != nil {
		t.Fatal(err)
	}
	if takenOver == 0 {
		t.Errorf("no claim of a killed uploader was taken over: the kills missed the batches")
	}
	t.Logf("%d enrollments drained by %d uploaders in %v (%.0f a minute) with %d SIGKILLs; %d claims taken over; DPS: %d requests, %d errors, %d drops before, %d after, %d throttled",
		n, uploaders, drained.Round(time.Millisecond), float64(n)/drained.Minutes(), killed, takenOver, st.Requests, st.Errors, st.Drops, st.DropsAfter, st.Throttled)
}

// --follow keeps draining as boards arrive, and stops cleanly when told.
func TestUploadFollow(t *testing.T) {
	srv, connFile := startEmulator(t, emulator.Options{})
	db := pgtest.New(t)
	es := queueOnPG(t, db, 20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, []string{"upload", "--records", db, "--follow", "--poll", "200ms", "--connection-string-file", connFile,
			"--ca-file", srv.CAFile, "--quota", "60000", "--json"}, &stdout, &stderr)
	}()
	watch, err := records.OpenPostgres(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	waitUploaded := func(want int) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
			counts, err := watch.Counts(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if counts[enroll.StateUploaded] == want {
				return
			}
			select {
			case code := <-done:
				t.Fatalf("upload --follow stopped on its own: exit %d\n%s", code, stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("after a minute, %v; want %d uploaded", counts, want)
			}
		}
	}
	waitUploaded(len(es))
	// A board arrives: it goes up without a new command.
	more := enroll.Enrollment{RegistrationID: "late-board", Attestation: enroll.Attestation{Type: enroll.AttestationTPM,
		TPM: &enroll.TPMAttestation{EndorsementKey: "AToAAQALAAMAlate"}}}
	if _, err := watch.Save(context.Background(), &records.Record{Serial: "SN-LATE", Attestation: records.AttestationTPM,
		RegistrationID: more.RegistrationID, EKPublic: []byte("ek-late"), Result: records.ResultPassed, Enrollment: &more, Station: "st-9"}); err != nil {
		t.Fatal(err)
	}
	waitUploaded(len(es) + 1)
	cancel()
	select {
	case code := <-done:
		if code != exitOK || !strings.Contains(stdout.String(), `"uploaded":21`) {
			t.Errorf("upload --follow stopped: exit %d, stdout %s; want 0 with 21 uploaded", code, stdout.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("upload --follow still running a minute after it was told to stop")
	}
	if n := strings.Count(stderr.String(), "upload: batch settled"); n < 3 {
		t.Errorf("%d batches logged, want each (at least 3):\n%s", n, stderr.String())
	}
	dpsHolds(t, srv, append(es, more))
}

// --follow drains a factory's queue: not a file, not a station's records.
func TestUploadFollowUsage(t *testing.T) {
	srv, connFile := startEmulator(t, emulator.Options{})
	db := filepath.Join(t.TempDir(), "zerotouch.db")
	queuedRecords(t, db)
	file, _ := writeEnrollments(t, 2)
	base := []string{"upload", "--connection-string-file", connFile, "--ca-file", srv.CAFile}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--follow", "--from", file}, "--from"},
		{[]string{"--follow", "--records", db}, "postgres://"},
		{[]string{"--records", db, "--poll", "0s"}, "--poll"},
		{[]string{"--records", db, "--lease", "10ms"}, "--lease"},
	} {
		code, _, errOut := run(t, append(base, c.args...)...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("upload %s: exit %d, stderr %s; want %d naming %s", strings.Join(c.args, " "), code, errOut, exitUsage, c.want)
		}
	}
	if n := srv.Emulator.Stats().Requests; n != 0 {
		t.Errorf("%d requests reached DPS", n)
	}

	// A key DPS refuses stops the service at once, exit 3, naming it.
	pg := pgtest.New(t)
	queueOnPG(t, pg, 2)
	cs, _ := enroll.ParseConnectionString(srv.ConnectionString)
	cs.Key = []byte("not the key of this DPS, 32 bytes")
	wrong := filepath.Join(t.TempDir(), "wrong-connection-string")
	os.WriteFile(wrong, []byte(cs.Secret()+"\n"), 0o600)
	code, _, errOut := run(t, "upload", "--records", pg, "--follow", "--connection-string-file", wrong, "--ca-file", srv.CAFile)
	if code != exitSetup || !strings.Contains(errOut, "DPS refused the key (401): check the connection string in "+wrong) {
		t.Errorf("upload --follow with a wrong key: exit %d, stderr %s; want %d naming the key's file", code, errOut, exitSetup)
	}
}
