package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
	"zerotouch/station/records"
)

// startEmulator runs a DPS emulator on loopback and writes its connection
// string to a file.
func startEmulator(t *testing.T, opts emulator.Options) (srv *emulator.Server, connFile string) {
	t.Helper()
	dir := t.TempDir()
	srv, err := emulator.Start(context.Background(), "127.0.0.1:0", dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	connFile = filepath.Join(t.TempDir(), "dps-connection-string")
	if err := os.WriteFile(connFile, []byte(srv.ConnectionString+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, connFile
}

func writeEnrollments(t *testing.T, n int) (string, []enroll.Enrollment) {
	t.Helper()
	es := make([]enroll.Enrollment, n)
	for i := range es {
		es[i] = enroll.Enrollment{RegistrationID: fmt.Sprintf("unit-%05d", i), DeviceID: fmt.Sprintf("dev-%05d", i),
			Attestation: enroll.Attestation{Type: enroll.AttestationTPM, TPM: &enroll.TPMAttestation{EndorsementKey: fmt.Sprintf("AToAAQALAAMA%08d", i)}}}
	}
	b, _ := json.Marshal(es)
	name := filepath.Join(t.TempDir(), "enrollments.json")
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return name, es
}

// dpsHolds checks that DPS holds exactly es, each written once.
func dpsHolds(t *testing.T, srv *emulator.Server, es []enroll.Enrollment) {
	t.Helper()
	ctx := context.Background()
	cs, _ := enroll.ParseConnectionString(srv.ConnectionString)
	c, err := enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: srv.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for e, err := range c.Enrollments(ctx, 1000) {
		if err != nil {
			t.Fatal(err)
		}
		held[e.RegistrationID] = true
	}
	if len(held) != len(es) {
		t.Errorf("DPS holds %d enrollments, want %d", len(held), len(es))
	}
	lost, twice := 0, 0
	for _, e := range es {
		if !held[e.RegistrationID] {
			lost++
			continue
		}
		if n, _ := srv.Emulator.Writes(ctx, e.RegistrationID); n != 1 {
			twice++
		}
	}
	if lost > 0 || twice > 0 {
		t.Errorf("%d enrollments lost, %d written more than once", lost, twice)
	}
}

// TestUploadSurvivesSIGKILL kills `zerotouch upload` at random points,
// at least 20 times, restarting it each time: in the end every enrollment
// is in DPS, once.
func TestUploadSurvivesSIGKILL(t *testing.T) {
	srv, connFile := startEmulator(t, emulator.Options{Synchronous: "NORMAL", Faults: emulator.Faults{ErrorRate: 0.05, DropAfterRate: 0.05, Seed: 3}})
	file, es := writeEnrollments(t, 5000)
	args := []string{"upload", "--from", file, "--connection-string-file", connFile, "--ca-file", srv.CAFile,
		"--quota", "3000", "--share", "1", "--workers", "2", "--json"}
	rng := rand.New(rand.NewPCG(11, 12))
	state := file + ".upload.db"
	killed, midBatch, lastUp := 0, 0, 0
	for trial := 0; killed < 20 && trial < 60; trial++ {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "ZEROTOUCH_TEST_AS_MAIN=1")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		queued := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				if strings.Contains(sc.Text(), `"upload: queued"`) {
					close(queued)
				}
			}
		}()
		// One kill in four lands anywhere from the start (reading the
		// file, queueing it); the others while batches go up, however
		// long the start took on this machine.
		if trial%4 == 0 {
			time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		} else {
			select {
			case <-queued:
			case <-time.After(time.Minute):
				t.Fatalf("trial %d: the upload did not start in a minute", trial)
			}
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			killed++
		} else if err == nil {
			t.Fatalf("trial %d: the upload finished before it could be killed; give it more to do", trial)
		}
		// Where did the kill land?
		st, err := enroll.OpenStateFile(context.Background(), state)
		if err != nil {
			continue // killed before the state file was made
		}
		counts, _ := st.Counts(context.Background())
		st.Close()
		if counts[enroll.StateInFlight] > 0 {
			midBatch++
		}
		t.Logf("trial %d: killed with %d uploaded (+%d), %d in flight", trial, counts[enroll.StateUploaded],
			counts[enroll.StateUploaded]-lastUp, counts[enroll.StateInFlight])
		lastUp = counts[enroll.StateUploaded]
	}
	if midBatch < 5 {
		t.Errorf("only %d of %d kills landed with a batch in flight; want at least 5", midBatch, killed)
	}
	if killed < 20 {
		t.Fatalf("only %d kills landed", killed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The last run, at a higher pace, finishes the job.
	args[len(args)-6] = "60000"
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "ZEROTOUCH_TEST_AS_MAIN=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("final upload: %v\n%s", err, out)
	}
	var sum uploadSummary
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	if !sum.AllUploaded || sum.Uploaded != len(es) || sum.Pending != 0 {
		t.Errorf("final summary = %+v, want all %d uploaded", sum, len(es))
	}
	t.Logf("%d kills; final run: %+v", killed, sum)
	dpsHolds(t, srv, es)

	// Once more: nothing left to send.
	code, stdout, stderr := run(t, args...)
	if code != exitOK || !strings.Contains(stdout, `"requests":0`) {
		t.Errorf("re-run exit %d, stdout %s, stderr %s; want 0 with no requests", code, stdout, stderr)
	}
}

func TestUploadBadInput(t *testing.T) {
	srv, connFile := startEmulator(t, emulator.Options{})
	file, _ := writeEnrollments(t, 3)
	dir := t.TempDir()
	badConn := filepath.Join(dir, "bad-conn")
	os.WriteFile(badConn, []byte("HostName=x;SharedAccessKey=abc"), 0o600)
	badFile := filepath.Join(dir, "bad.csv")
	os.WriteFile(badFile, []byte("registrationId,attestation,endorsementKey\nok-1,tpm,AAAA\nbad id!,tpm,AAAA\n"), 0o600)
	base := []string{"upload", "--ca-file", srv.CAFile}
	tests := []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"no connection string", []string{"--from", file}, "", "ZEROTOUCH_DPS_CONNECTION_STRING"},
		{"malformed connection string", []string{"--from", file, "--connection-string-file", badConn}, "", "SharedAccessKeyName is missing"},
		{"no file", []string{"--connection-string-file", connFile}, "", "--from"},
		{"bad line", []string{"--from", badFile, "--connection-string-file", connFile}, "", "bad.csv:3"},
		{"batch over 10", []string{"--from", file, "--connection-string-file", connFile, "--batch", "11"}, "", "1 to 10"},
		{"share over 1", []string{"--from", file, "--connection-string-file", connFile, "--share", "1.5"}, "", "--share"},
		{"missing CA file", []string{"--from", file, "--connection-string-file", connFile, "--ca-file", filepath.Join(dir, "none.pem")}, "", "CA file"},
	}
	for _, tt := range tests {
		t.Setenv(envDPSConnectionString, tt.env)
		code, _, stderr := run(t, append(base, tt.args...)...)
		if code != exitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit 2 mentioning %q", tt.name, code, stderr, tt.want)
		}
	}
	// Nothing was sent by any of them.
	if n := srv.Emulator.Stats().Requests; n != 0 {
		t.Errorf("%d requests reached DPS", n)
	}

	// The connection string from the environment works, --check sends
	// nothing, and the real run reports success.
	t.Setenv(envDPSConnectionString, srv.ConnectionString)
	if code, _, stderr := run(t, "upload", "--from", file, "--ca-file", srv.CAFile, "--check"); code != exitOK || !strings.Contains(stderr, "3 enrollments, all valid") {
		t.Errorf("--check: exit %d, %s", code, stderr)
	}
	if code, _, stderr := run(t, "upload", "--from", file, "--ca-file", srv.CAFile); code != exitOK || !strings.Contains(stderr, "3 uploaded") {
		t.Errorf("upload: exit %d, %s", code, stderr)
	}
	// Wrong key: exit 3, and it says where the key came from.
	cs, _ := enroll.ParseConnectionString(srv.ConnectionString)
	cs.Key = []byte("wrong")
	t.Setenv(envDPSConnectionString, cs.Secret())
	other, _ := writeEnrollments(t, 2)
	if code, _, stderr := run(t, "upload", "--from", other, "--ca-file", srv.CAFile); code != exitSetup ||
		!strings.Contains(stderr, "DPS refused the key (401): check the connection string in $"+envDPSConnectionString) {
		t.Errorf("wrong key: exit %d, %s; want 3 with the 401 and where the key came from", code, stderr)
	}
}

// zerotouch upload without --from takes what the station's records queued.
func TestUploadFromRecords(t *testing.T) {
	srv, connFile := startEmulator(t, emulator.Options{})
	db := filepath.Join(t.TempDir(), "zerotouch.db")
	store, err := records.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	_, es := writeEnrollments(t, 3)
	for i := range es {
		r := &records.Record{Serial: fmt.Sprintf("SN-%d", i), Attestation: records.AttestationTPM, RegistrationID: es[i].RegistrationID,
			EKPublic: []byte{byte(i), 1, 2}, Result: records.ResultPassed, Enrollment: &es[i], Station: "st", Slot: "slot-1"}
		if _, err := store.Save(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()
	args := []string{"upload", "--records", db, "--connection-string-file", connFile, "--ca-file", srv.CAFile, "--json"}
	code, out, errOut := run(t, args...)
	if code != exitOK || !strings.Contains(out, `"uploaded":3`) {
		t.Fatalf("upload --records: exit %d\n%s\n%s", code, out, errOut)
	}
	dpsHolds(t, srv, es)
	if code, out, _ := run(t, args...); code != exitOK || !strings.Contains(out, `"requests":0`) {
		t.Errorf("second upload: exit %d, %s; want nothing sent", code, out)
	}
	missing := []string{"upload", "--records", filepath.Join(t.TempDir(), "none.db"), "--connection-string-file", connFile}
	if code, _, errOut := run(t, missing...); code != exitUsage || !strings.Contains(errOut, "--records") {
		t.Errorf("missing records: exit %d, %s", code, errOut)
	}
}
