package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"zerotouch/enroll"
	"zerotouch/station/records"
)

// TestDemo runs zerotouch demo as the README's main command: every
// attestation mode, every board passed, every individual enrollment
// uploaded; a second run in the same folder starts afresh. With no
// display it keeps to the terminal.
func TestDemo(t *testing.T) {
	t.Setenv("ZEROTOUCH_TEST_AS_MAIN", "1") // boards with the simulator run in child processes
	t.Setenv("DISPLAY", "")
	t.Setenv("WAYLAND_DISPLAY", "")
	dir := filepath.Join(t.TempDir(), "demo")
	if code, _, errOut := run(t, "demo", "--dir", dir, "--close-after", "-1s"); code != exitUsage || !strings.Contains(errOut, "--close-after") {
		t.Errorf("demo --close-after -1s: exit %d, %s", code, errOut)
	}
	for n := 1; n <= 2; n++ {
		code, out, errOut := run(t, "demo", "--dir", dir, "--baud", "1000000")
		if code != exitOK {
			t.Fatalf("demo run %d: exit %d\nstdout:\n%s\nstderr:\n%s", n, code, out, errOut)
		}
		if !strings.Contains(out, "8 boards passed, 0 failed") || !strings.Contains(out, "5 individual enrollments uploaded") ||
			strings.Contains(out, "window") {
			t.Errorf("demo run %d output:\n%s", n, out)
		}
	}
	checkDemo(t, dir, "demo")
	// A folder the demo did not make is refused.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "keep.txt"), []byte("mine"), 0o600)
	if code, _, errOut := run(t, "demo", "--dir", other); code != exitUsage || !strings.Contains(errOut, "did not make") {
		t.Errorf("demo in a foreign folder: exit %d, %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(other, "keep.txt")); err != nil {
		t.Errorf("the foreign folder's file is gone: %v", err)
	}
}

// checkDemo checks a demo's records: eight boards over the four modes (one a stock board),
// passed by the operator, their individual enrollments uploaded, each
// registered with the emulator as at first boot and assigned.
func checkDemo(t *testing.T, dir, operator string) {
	t.Helper()
	store, err := records.OpenReadOnly(context.Background(), filepath.Join(dir, "records.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	list, err := store.List(context.Background(), records.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]int{}
	for _, r := range list {
		modes[r.Attestation]++
		if r.Result != "passed" || r.Operator != operator {
			t.Errorf("%s: %s by %q; want passed by %q", r.Serial, r.Result, r.Operator, operator)
		}
		if r.Enrollment != nil && r.UploadState != enroll.StateUploaded {
			t.Errorf("%s: enrollment %s, want uploaded", r.Serial, r.UploadState)
		}
		if r.Registration == nil || r.Registration.State != "assigned" || r.Registration.AssignedHub == "" {
			t.Errorf("%s: registration %+v, want assigned to a hub", r.Serial, r.Registration)
		}
	}
	if len(list) != 8 || len(modes) != 4 {
		t.Errorf("%d records over modes %v, want 8 over 4 modes", len(list), modes)
	}
}

// TestDemoTCPBoards runs the demo as on Windows: its boards on loopback
// TCP ports, and without TPMs, so that the TPM modes are left out and
// said to be; the flags' mistakes are refused with what to give.
func TestDemoTCPBoards(t *testing.T) {
	t.Setenv("DISPLAY", "")
	t.Setenv("WAYLAND_DISPLAY", "")
	dir := filepath.Join(t.TempDir(), "demo")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--boards", "serial"}, `--boards "serial": want pty or tcp`},
		{[]string{"--tpm", "tcp:127.0.0.1:2321"}, "need 3 TPMs, one each"},
		{[]string{"--tpm", "tcp:127.0.0.1:2321,tcp:127.0.0.1:2321,tcp:127.0.0.1:2323"}, "named twice"},
		{[]string{"--tpm", "sim,tcp:127.0.0.1:2321,tcp:127.0.0.1:2323"}, "give it alone"},
		{[]string{"--tpm", "tcp:a,tcp:b,tcp:c"}, `TPM "tcp:a"`},
	} {
		code, _, errOut := run(t, append([]string{"demo", "--dir", dir}, c.args...)...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("demo %s: exit %d, want %d with %q:\n%s", strings.Join(c.args, " "), code, exitUsage, c.want, errOut)
		}
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("a refused demo made its folder")
	}

	code, out, errOut := run(t, "demo", "--json", "--dir", dir, "--boards", "tcp", "--tpm", "none", "--baud", "1000000")
	if code != exitOK {
		t.Fatalf("demo --boards tcp --tpm none: exit %d\n%s\n%s", code, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var sum struct {
		Passed, Failed, Uploaded int
		Skipped                  []string
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatalf("the summary line: %v\n%s", err, out)
	}
	if sum.Passed != 5 || sum.Failed != 0 || sum.Uploaded != 2 || !slices.Equal(sum.Skipped, []string{"tpm", "x509-tpm"}) {
		t.Errorf("summary %+v, want 5 passed, 2 uploaded, tpm and x509-tpm left out", sum)
	}
	if !strings.Contains(errOut, "TPM modes left out") {
		t.Errorf("no warning that the TPM modes were left out:\n%s", errOut)
	}
	store, err := records.OpenReadOnly(context.Background(), filepath.Join(dir, "records.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	list, err := store.List(context.Background(), records.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 5 {
		t.Fatalf("%d records, want 5", len(list))
	}
	for _, r := range list {
		line := r.Attestation // the slots are named after their line
		if strings.HasPrefix(r.Serial, "ZTS-") {
			line = "stock"
		}
		if r.Result != records.ResultPassed || !strings.HasPrefix(r.Slot, line+"-") || r.Registration == nil || r.Registration.State != "assigned" {
			t.Errorf("%s: %s in slot %s, registration %+v", r.Serial, r.Result, r.Slot, r.Registration)
		}
	}
}
