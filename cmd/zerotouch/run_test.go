package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
		fmt.Fprintf(&y, "records: %s\n", filepath.Join(dir, "records.db"))
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

	// A board whose line drops mid-write fails its slot: exit 1, and
	// the event says what to do.
	f, _ := board.ParseFaults("drop-after=600,drop-for=1h")
	bad, err := board.Start(board.Config{Serial: "RUN-BAD", Dir: t.TempDir(), TPM: board.TPMNone, Baud: 1_000_000, Faults: f})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	code, out, errOut = run(t, "run", "--config", config(bad.Path()), "--once")
	if code != exitFailed || !strings.Contains(out, `"result":"failed"`) || !strings.Contains(out, "press Retry") {
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
