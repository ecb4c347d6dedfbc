package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// link ports lists the virtual boards zerotouch board runs, and drops
// them once that process is gone.
func TestLinkPortsListsVirtualBoards(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	// A stale entry: a process that is gone.
	dir := boardsDir()
	os.MkdirAll(dir, 0o700)
	stale := filepath.Join(dir, "999999999-GONE.json")
	os.WriteFile(stale, []byte(`{"serial":"GONE","port":"/dev/null","pid":999999999}`), 0o600)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "board", "--count", "2", "--tpm", "none", "--serial-prefix", "LST")
	cmd.Env = append(os.Environ(), "ZEROTOUCH_TEST_AS_MAIN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	sc := bufio.NewScanner(out)
	for sc.Scan() && !strings.Contains(sc.Text(), "running") {
	}

	code, text, errOut := run(t, "link", "ports")
	if code != exitOK || !strings.Contains(text, "LST000001") || !strings.Contains(text, "LST000002") || !strings.Contains(text, "virtual board") {
		t.Fatalf("link ports: exit %d\n%s\n%s", code, text, errOut)
	}
	if strings.Contains(text, "GONE") {
		t.Errorf("a board whose process is gone is listed:\n%s", text)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("the stale entry was not removed")
	}
	code, text, _ = run(t, "link", "ports", "--json")
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		var v struct {
			Path    string `json:"path"`
			Virtual bool   `json:"virtual"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("--json line %q: %v", line, err)
		}
		if v.Virtual {
			n++
		}
	}
	if code != exitOK || n != 2 {
		t.Errorf("link ports --json: exit %d, %d virtual boards, want 2:\n%s", code, n, text)
	}

	cancel()
	cmd.Wait()
	deadline := time.Now().Add(time.Minute)
	for {
		_, text, _ = run(t, "link", "ports")
		if !strings.Contains(text, "LST000001") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("boards still listed after their process ended:\n%s", text)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
