package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zerotouch/enroll"
	"zerotouch/station/records"
)

// TestDemo runs zerotouch demo as the README's main command: every
// attestation mode, every board passed, every individual enrollment
// uploaded; a second run in the same folder starts afresh.
func TestDemo(t *testing.T) {
	t.Setenv("ZEROTOUCH_TEST_AS_MAIN", "1") // boards with the simulator run in child processes
	dir := filepath.Join(t.TempDir(), "demo")
	for n := 1; n <= 2; n++ {
		code, out, errOut := run(t, "demo", "--dir", dir, "--baud", "1000000")
		if code != exitOK {
			t.Fatalf("demo run %d: exit %d\nstdout:\n%s\nstderr:\n%s", n, code, out, errOut)
		}
		if !strings.Contains(out, "7 boards passed, 0 failed") {
			t.Errorf("demo run %d output:\n%s", n, out)
		}
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
	modes := map[string]int{}
	for _, r := range list {
		modes[r.Attestation]++
		if r.Result != "passed" {
			t.Errorf("%s: %s", r.Serial, r.Result)
		}
		if r.Enrollment != nil && r.UploadState != enroll.StateUploaded {
			t.Errorf("%s: enrollment %s, want uploaded", r.Serial, r.UploadState)
		}
	}
	if len(list) != 7 || len(modes) != 4 {
		t.Errorf("%d records over modes %v, want 7 over 4 modes", len(list), modes)
	}
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
