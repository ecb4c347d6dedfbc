package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"zerotouch/board"
	"zerotouch/ca"
	"zerotouch/enroll/emulator"
	"zerotouch/station"
)

// TestRunHeadless: zerotouch run --once over two boards with X.509
// (board-made keys, the local CA) prints JSON lines of events, uploads the
// enrollments in the background, and exits 0; a board that drops its line
// mid-write fails with exit 1 and an operator message.
func TestRunHeadless(t *testing.T) {
	dir := t.TempDir()
	srv, connFile := startEmulator(t, emulator.Options{})
	pwFile := filepath.Join(dir, "ca-password")
	os.WriteFile(pwFile, []byte("line password\n"), 0o600)
	l, err := ca.Init(context.Background(), filepath.Join(dir, "ca"), ca.InitOptions{Password: []byte("line password")})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	var ports []string
	for i, faults := range []string{"", ""} {
		f, _ := board.ParseFaults(faults)
		b, err := board.Start(board.Config{Serial: fmt.Sprintf("RUN-%d", i+1), Dir: t.TempDir(), TPM: board.TPMNone, Baud: 1_000_000, Faults: f})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		ports = append(ports, b.Path())
	}
	config := func(ports ...string) string {
		var y strings.Builder
		fmt.Fprintf(&y, "station: st-run\nline: l1\nattestation: x509-keygen\nid_scope: 0ne0001A2B3\nbaud: 1000000\n")
		fmt.Fprintf(&y, "records: %s\nlabels: {dir: %s}\n", filepath.Join(dir, "records.db"), filepath.Join(dir, "labels"))
		fmt.Fprintf(&y, "ca:\n  dir: %s\n  password_file: %s\n", filepath.Join(dir, "ca"), pwFile)
		fmt.Fprintf(&y, "dps:\n  connection_string_file: %s\n  ca_file: %s\n  quota: 60000\n", connFile, srv.CAFile)
		y.WriteString("slots:\n")
		for _, p := range ports {
			fmt.Fprintf(&y, "  - port: %s\n", p)
		}
		name := filepath.Join(dir, fmt.Sprintf("station-%d.yaml", len(ports)))
		os.WriteFile(name, []byte(y.String()), 0o600)
		return name
	}
	code, out, errOut := run(t, "run", "--config", config(ports...), "--once", "--operator", "ana")
	if code != exitOK {
		t.Fatalf("run --once: exit %d\n%s\n%s", code, out, errOut)
	}
	passed := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e station.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("stdout line %q is not an event: %v", sc.Text(), err)
		}
		if e.Result == station.Passed {
			passed++
		}
	}
	if passed != 2 || !strings.Contains(errOut, "2 boards passed, 0 failed") || !strings.Contains(errOut, "2 uploaded") {
		t.Errorf("passed events %d; stderr:\n%s", passed, errOut)
	}
	for _, id := range []string{"run-1", "run-2"} {
		if n, _ := srv.Emulator.Writes(context.Background(), id); n != 1 {
			t.Errorf("enrollment %s written %d times, want 1", id, n)
		}
	}
	// Headless, the station prints the labels too.
	for _, serial := range []string{"RUN-1", "RUN-2"} {
		if _, err := os.Stat(filepath.Join(dir, "labels", serial+".zpl")); err != nil {
			t.Errorf("no label for %s: %v", serial, err)
		}
	}

	// A board whose line drops mid-write fails its slot: exit 1, and
	// the event says what to do.
	f, _ := board.ParseFaults("drop-after=600,drop-for=1h")
	bad, err := board.Start(board.Config{Serial: "RUN-BAD", Dir: t.TempDir(), TPM: board.TPMNone, Baud: 1_000_000, Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	code, out, errOut = run(t, "run", "--config", config(bad.Path()), "--once")
	if code != exitFailed || !strings.Contains(out, `"result":"failed"`) || !strings.Contains(out, "reseat the board to run it again") ||
		strings.Contains(out, "Retry") {
		t.Errorf("failing board: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

func TestRunConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(text), 0o600)
		return p
	}
	base := "attestation: tpm\nid_scope: 0ne0001A2B3\nslots:\n  - port: /dev/null\n"
	tests := []struct {
		name, config, want string
	}{
		{"missing file", filepath.Join(dir, "none.yaml"), "no such file"},
		{"bad field", write("a.yaml", base+"colour: red\n"), "colour"},
		{"bad template", write("b.yaml", base+"template:\n  file: "+write("t.json", `{"id": {{.Nope}}}`)+"\n"), "Nope"},
		{"group without key", write("c.yaml", strings.Replace(base, "tpm", "symmetric-key", 1)+"symmetric_key:\n  group_id: g1\n"), "ZEROTOUCH_GROUP_KEY"},
	}
	for _, tt := range tests {
		t.Setenv(envGroupKey, "")
		code, _, errOut := run(t, "run", "--config", tt.config, "--once")
		if code != exitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 mentioning %q", tt.name, code, errOut, tt.want)
		}
	}
}

// TestRunNoBoard: run --once where no board runs exits 5 and names each
// slot and why: a mistyped port, a port where nothing answers. With
// --json the summary is a JSON line naming them too. The supervisor's
// password, when given, must be the supervisor's.
func TestRunNoBoard(t *testing.T) {
	dir := t.TempDir()
	f, _ := board.ParseFaults("drop-after=1,drop-for=1h")
	dead, err := board.Start(board.Config{Serial: "RUN-DEAD", Dir: t.TempDir(), TPM: board.TPMNone, Baud: 1_000_000, Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	t.Setenv(envGroupKey, "Z3JvdXAga2V5")
	// A port server that is off: nothing listens at its address.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	off := "tcp://" + ln.Addr().String()
	ln.Close()
	config := filepath.Join(dir, "station.yaml")
	y := fmt.Sprintf("attestation: symmetric-key\nid_scope: 0ne0001A2B3\nbaud: 1000000\ntimeout: 300ms\nrecords: %s\n"+
		"symmetric_key:\n  group_id: g1\nlabels:\n  dir: %s\nslots:\n  - port: /dev/ttyUSB9\n  - port: %s\n  - port: %s\n",
		filepath.Join(dir, "records.db"), filepath.Join(dir, "labels"), dead.Path(), off)
	os.WriteFile(config, []byte(y), 0o600)

	code, _, errOut := run(t, "run", "--config", config, "--once")
	if code != exitNoBoard || !strings.Contains(errOut, "empty slot slot-1 (/dev/ttyUSB9): no-port: no port /dev/ttyUSB9") ||
		!strings.Contains(errOut, "mistyped") || !strings.Contains(errOut, "empty slot slot-2 ("+dead.Path()+"): silent") ||
		!strings.Contains(errOut, "empty slot slot-3 ("+off+"): no-port: nothing listens at "+off) {
		t.Errorf("run --once with no board: exit %d, want %d; stderr:\n%s", code, exitNoBoard, errOut)
	}

	code, out, errOut := run(t, "run", "--config", config, "--once", "--json")
	if code != exitNoBoard {
		t.Errorf("--json: exit %d, want %d", code, exitNoBoard)
	}
	var summary struct {
		Msg   string              `json:"msg"`
		Empty []station.EmptySlot `json:"emptySlots"`
	}
	for _, line := range strings.Split(strings.TrimSpace(out+errOut), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("--json: line %q is not JSON: %v", line, err)
		}
		if v["msg"] == "run ended" {
			json.Unmarshal([]byte(line), &summary)
		}
	}
	if len(summary.Empty) != 3 || summary.Empty[0].Reason != station.EmptyNoPort || summary.Empty[1].Reason != station.EmptySilent ||
		summary.Empty[2].Reason != station.EmptyNoPort {
		t.Errorf("--json summary %+v; want both slots named empty, with their reasons\n%s", summary, errOut)
	}
	empties := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e station.Event
		if json.Unmarshal([]byte(line), &e) == nil && e.Result == station.Empty && e.Reason != "" && e.Schema == station.EventSchema {
			empties++
		}
	}
	if empties != 3 {
		t.Errorf("%d empty-slot events, want 3:\n%s", empties, out)
	}

	// The supervisor's password, given, must be the supervisor's.
	pw := filepath.Join(dir, "supervisor")
	os.WriteFile(pw, []byte("guess\n"), 0o600)
	code, _, errOut = run(t, "run", "--config", config, "--once", "--supervisor-password-file", pw)
	if code != exitUsage || !strings.Contains(errOut, "no supervisor password is set") {
		t.Errorf("supervisor password with no hash set: exit %d\n%s", code, errOut)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("the supervisor"), bcrypt.MinCost)
	os.WriteFile(config, []byte(y+"gui:\n  supervisor_password_hash: "+string(hash)+"\n"), 0o600)
	t.Setenv(envSupervisorPassword, "guess")
	code, _, errOut = run(t, "run", "--config", config, "--once")
	if code != exitUsage || !strings.Contains(errOut, "not the supervisor's password") {
		t.Errorf("a wrong supervisor password: exit %d\n%s", code, errOut)
	}
	t.Setenv(envSupervisorPassword, "the supervisor")
	if code, _, errOut = run(t, "run", "--config", config, "--once"); code != exitNoBoard {
		t.Errorf("the supervisor's password: exit %d, want %d\n%s", code, exitNoBoard, errOut)
	}
}
