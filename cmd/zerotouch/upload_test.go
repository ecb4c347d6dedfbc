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
	es := queuedRecords(t, db)
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

// queuedRecords makes records at db of three passed boards whose
// enrollments are queued, and returns the enrollments.
func queuedRecords(t *testing.T, db string) []enroll.Enrollment {
	t.Helper()
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
	return es
}

// newStationFolder makes a station's folder: a station.yaml whose dps
// settings name the emulator (its connection string in connFile, its CA),
// and records in line.db holding three queued enrollments. It returns the
// folder and the enrollments.
func newStationFolder(t *testing.T, srv *emulator.Server, connFile string) (string, []enroll.Enrollment) {
	t.Helper()
	dir := t.TempDir()
	es := queuedRecords(t, filepath.Join(dir, "line.db"))
	writeStationYAML(t, filepath.Join(dir, "station.yaml"), connFile, srv.CAFile)
	return dir, es
}

// writeStationYAML writes a TPM station's configuration whose records are
// line.db in the working folder and whose dps section names connFile and
// caFile (none when empty).
func writeStationYAML(t *testing.T, name, connFile, caFile string) {
	t.Helper()
	y := "station: st\nline: l1\nattestation: tpm\nid_scope: 0ne0001A2B3\nrecords: line.db\nslots:\n  - port: /dev/ttyUSB0\ndps:\n  quota: 60000\n"
	if connFile != "" {
		y += "  connection_string_file: " + connFile + "\n"
	}
	if caFile != "" {
		y += "  ca_file: " + caFile + "\n"
	}
	if err := os.WriteFile(name, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
}

// zerotouch upload in a station's folder takes the station's DPS
// settings and records, as zerotouch run does, and says so.
func TestUploadInStationFolder(t *testing.T) {
	srv, connFile := startEmulator(t, emulator.Options{})
	t.Setenv(envDPSConnectionString, "")
	dir, es := newStationFolder(t, srv, connFile)
	t.Chdir(dir)

	code, out, errOut := run(t, "upload", "--json")
	if code != exitOK {
		t.Fatalf("upload in the station's folder: exit %d\n%s\n%s", code, out, errOut)
	}
	var sum uploadSummary
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	wantSettings := []string{"dps.connection_string_file", "dps.ca_file", "records", "dps.quota", "dps.share"}
	if sum.Config != "station.yaml" || strings.Join(sum.Settings, ",") != strings.Join(wantSettings, ",") ||
		sum.File != "line.db" || sum.Uploaded != 3 || !sum.AllUploaded {
		t.Errorf("summary = %+v, want 3 uploaded from line.db with %v from station.yaml", sum, wantSettings)
	}
	if !strings.Contains(errOut, `"config":"station.yaml"`) {
		t.Errorf("the log does not name station.yaml:\n%s", errOut)
	}
	dpsHolds(t, srv, es)

	// As text, the summary names the file and the settings.
	code, _, errOut = run(t, "upload")
	if code != exitOK || !strings.Contains(errOut, "settings from station.yaml: dps.connection_string_file, dps.ca_file, records") {
		t.Errorf("upload as text: exit %d, stderr %s; want 0 naming station.yaml's settings", code, errOut)
	}

	// Flags win over the station's settings: another records file.
	code, _, errOut = run(t, "upload", "--records", filepath.Join(dir, "none.db"))
	if code != exitUsage || !strings.Contains(errOut, "--records") {
		t.Errorf("--records over the station's records: exit %d, %s", code, errOut)
	}
	// --connection-string-file leaves station.yaml unread: the records
	// are ./zerotouch.db, and there are none.
	code, _, errOut = run(t, "upload", "--connection-string-file", connFile, "--ca-file", srv.CAFile)
	if code != exitUsage || !strings.Contains(errOut, "zerotouch.db") || strings.Contains(errOut, "station.yaml") {
		t.Errorf("--connection-string-file in a station's folder: exit %d, %s; want 2 for ./zerotouch.db", code, errOut)
	}
}

// --config names a station's configuration from elsewhere; a station's
// settings that cannot work are named as the station's.
func TestUploadStationConfigErrors(t *testing.T) {
	srv, connFile := startEmulator(t, emulator.Options{})
	t.Setenv(envDPSConnectionString, "")
	dir, _ := newStationFolder(t, srv, connFile)
	other := t.TempDir()
	t.Chdir(other)
	bad := filepath.Join(other, "bad.yaml")
	os.WriteFile(bad, []byte("station: st\nattestation: tpm\nid_scope: nonsense\n"), 0o600)
	noConn := filepath.Join(other, "no-conn.yaml")
	writeStationYAML(t, noConn, "", srv.CAFile)
	cs, _ := enroll.ParseConnectionString(srv.ConnectionString)
	cs.Key = []byte("not the key of this DPS, 32 bytes")
	wrongFile := filepath.Join(other, "wrong-connection-string")
	os.WriteFile(wrongFile, []byte(cs.Secret()+"\n"), 0o600)
	wrong := filepath.Join(other, "wrong.yaml")
	writeStationYAML(t, wrong, wrongFile, srv.CAFile)

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"missing file", []string{"--config", filepath.Join(other, "none.yaml")}, exitUsage, "none.yaml"},
		{"invalid file", []string{"--config", bad}, exitUsage, "bad.yaml: id_scope"},
		{"no connection string", []string{"--config", noConn, "--from", filepath.Join(dir, "x.json")}, exitUsage,
			"name a file holding it with --connection-string-file or dps.connection_string_file in " + noConn},
		{"records not there", []string{"--config", noConn, "--connection-string-file", connFile}, exitUsage,
			"records in " + noConn + ": stat line.db"},
		{"wrong key", []string{"--config", wrong, "--records", filepath.Join(dir, "line.db")}, exitSetup,
			"check the connection string in " + wrongFile + " (dps.connection_string_file in " + wrong + ")"},
	}
	for _, tt := range tests {
		code, _, errOut := run(t, append([]string{"upload"}, tt.args...)...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, stderr %s; want %d saying %q", tt.name, code, errOut, tt.code, tt.want)
		}
	}
	// An invalid ./station.yaml is named, not silently passed over.
	os.WriteFile(filepath.Join(other, "station.yaml"), []byte("attestation: [\n"), 0o600)
	if code, _, errOut := run(t, "upload"); code != exitUsage || !strings.Contains(errOut, "station.yaml") ||
		!strings.Contains(errOut, "give --connection-string-file") {
		t.Errorf("invalid ./station.yaml: exit %d, %s", code, errOut)
	}

	// From elsewhere, --config FILE does the job; its relative records
	// path is the working folder's, as for zerotouch run.
	t.Chdir(dir)
	cfg := filepath.Join(other, "station-copy.yaml")
	writeStationYAML(t, cfg, connFile, srv.CAFile)
	if code, out, errOut := run(t, "upload", "--config", cfg, "--json"); code != exitOK ||
		!strings.Contains(out, `"config":"`+cfg+`"`) || !strings.Contains(out, `"uploaded":3`) {
		t.Errorf("--config: exit %d\n%s\n%s", code, out, errOut)
	}
}
