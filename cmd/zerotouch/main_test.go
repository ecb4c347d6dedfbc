package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"zerotouch/board"
)

// TestMain lets the test binary stand in for zerotouch when the board
// command starts one process per board.
func TestMain(m *testing.M) {
	if os.Getenv("ZEROTOUCH_TEST_AS_MAIN") == "1" {
		// As main does: an interrupt or SIGTERM ends the command cleanly.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code = Run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBoardCheck(t *testing.T) {
	t.Setenv("ZEROTOUCH_TEST_AS_MAIN", "1")
	// Two boards with the TPM simulator: each runs in a process of its own.
	code, out, errOut := run(t, "board", "--count", "2", "--baud", "2000000", "--check", "--json")
	if code != exitOK {
		t.Fatalf("board --check exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	steps := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r checkResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("stdout line %q is not JSON: %v", sc.Text(), err)
		}
		if !r.OK {
			t.Errorf("step %s on %s failed: %s", r.Step, r.Serial, r.Error)
		}
		steps[r.Step]++
	}
	for _, s := range []string{"connect", "echo", "identity", "tpm", "files", "keygen"} {
		if steps[s] != 2 {
			t.Errorf("step %s ran %d times, want once per board", s, steps[s])
		}
	}
}

func TestBoardCheckFails(t *testing.T) {
	// A board that refuses file writes fails the check, with the step and
	// the board named, and a non-zero exit.
	code, out, _ := run(t, "board", "--tpm", "none", "--baud", "2000000", "--check", "--fault", "rc=fs.file:10")
	if code != exitFailed {
		t.Fatalf("exit %d, want %d\n%s", code, exitFailed, out)
	}
	if !strings.Contains(out, "FAIL ZTV000001 files") || !strings.Contains(out, "fs.file") {
		t.Errorf("output does not name the failed step:\n%s", out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"board", "--count", "0"},
		{"board", "--count", "2", "--tpm", "tcp:127.0.0.1:2321"},
		{"board", "--fault", "flood=1"},
		{"board", "--nonsense"},
		{"nonsense"},
		{"link", "echo"},
		{"link", "--port", "vid=12", "echo"},
		{"--log-level", "loud", "link", "ports"},
	} {
		code, _, errOut := run(t, args...)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want %d (stderr %q)", args, code, exitUsage, errOut)
		}
		if !strings.Contains(errOut, "zerotouch: ") {
			t.Errorf("%q: stderr %q gives no reason", args, errOut)
		}
	}
}

func TestLinkCommands(t *testing.T) {
	b, err := board.Start(board.Config{Serial: "SN-LINK", Dir: t.TempDir(), TPM: board.TPMNone, Baud: 2_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	t.Setenv("ZEROTOUCH_PORT", b.Path())
	link := func(args ...string) string {
		t.Helper()
		code, out, errOut := run(t, append([]string{"link", "--baud", "2000000", "--json"}, args...)...)
		if code != exitOK {
			t.Fatalf("link %q: exit %d: %s", args, code, errOut)
		}
		return out
	}
	if out := link("echo", "ping"); strings.TrimSpace(out) != `{"echo":"ping"}` {
		t.Errorf("link echo = %q", out)
	}
	if out := link("identity"); !strings.Contains(out, `"serial":"SN-LINK"`) {
		t.Errorf("link identity = %q", out)
	}
	dir := t.TempDir()
	data := bytes.Repeat([]byte("zerotouch\n"), 2000)
	if err := os.WriteFile(dir+"/in", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := link("fs", "upload", dir+"/in", "/lfs/in"); !strings.Contains(out, `"verified":true`) {
		t.Errorf("link fs upload = %q", out)
	}
	link("fs", "download", "/lfs/in", dir+"/out")
	if got, _ := os.ReadFile(dir + "/out"); !bytes.Equal(got, data) {
		t.Errorf("downloaded %d bytes, not the %d uploaded", len(got), len(data))
	}
	code, _, errOut := run(t, "link", "--baud", "2000000", "fs", "download", "/lfs/missing", dir+"/missing")
	if code != exitFailed || !strings.Contains(errOut, "file not found") {
		t.Errorf("download of a missing file: exit %d, %q", code, errOut)
	}
	if _, err := os.Stat(dir + "/missing"); !os.IsNotExist(err) {
		t.Errorf("a failed download left a file behind")
	}
}

// TestDependencies keeps the layers apart: the board link and the virtual
// board do not pull in the GUI, and no production package imports testing.
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	deps := func(pkgs ...string) []string {
		out, err := exec.Command(goBin, append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, pkgs...)...).Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		return strings.Fields(string(out))
	}
	// Our own packages never import testing outside tests. (A library
	// below smallstep's client does; that is not ours to change.)
	out, err := exec.Command(goBin, "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "zerotouch/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if slices.Contains(f[1:], "testing") {
			t.Errorf("%s imports testing outside its tests", f[0])
		}
	}
	for _, dep := range deps("zerotouch/flasher") {
		if strings.HasPrefix(dep, "fyne.io/") || strings.HasPrefix(dep, "zerotouch/") && !strings.HasPrefix(dep, "zerotouch/internal/") && dep != "zerotouch/flasher" {
			t.Errorf("flasher depends on %s", dep)
		}
	}
	// The virtual board is a device: besides the link, it has what a
	// device's firmware has, its TPM stack and the DPS device client
	// (with the DPS wire types in enroll); never the station's side.
	boardMay := []string{"zerotouch/flasher", "zerotouch/board", "zerotouch/tpm", "zerotouch/enroll", "zerotouch/enroll/device"}
	for _, dep := range deps("zerotouch/board") {
		if strings.HasPrefix(dep, "fyne.io/") || strings.HasPrefix(dep, "zerotouch/") && !strings.HasPrefix(dep, "zerotouch/internal/") && !slices.Contains(boardMay, dep) {
			t.Errorf("board depends on %s", dep)
		}
	}
	// tpm works over any go-tpm transport: it knows no board.
	for _, dep := range deps("zerotouch/tpm") {
		if strings.HasPrefix(dep, "fyne.io/") || strings.HasPrefix(dep, "go.bug.st/") || strings.HasPrefix(dep, "zerotouch/") && !strings.HasPrefix(dep, "zerotouch/internal/") && dep != "zerotouch/tpm" {
			t.Errorf("tpm depends on %s", dep)
		}
	}
	// ca knows smallstep, not boards, TPMs of boards or the window.
	for _, dep := range deps("zerotouch/ca") {
		if strings.HasPrefix(dep, "fyne.io/") || strings.HasPrefix(dep, "go.bug.st/") || strings.HasPrefix(dep, "zerotouch/") && !strings.HasPrefix(dep, "zerotouch/internal/") && dep != "zerotouch/ca" {
			t.Errorf("ca depends on %s", dep)
		}
	}
}

// text returns what a lockedWriter over a bytes.Buffer holds so far.
func (l *lockedWriter) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.(*bytes.Buffer).String()
}

// TestBoardRuns starts boards the way a station's operator would, talks to
// them while they run, and stops them with an interrupt.
func TestBoardRuns(t *testing.T) {
	t.Setenv("ZEROTOUCH_TEST_AS_MAIN", "1")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := &lockedWriter{w: new(bytes.Buffer)}, &lockedWriter{w: new(bytes.Buffer)}
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"board", "--count", "2", "--baud", "2000000", "--dir", dir, "--json"}, out, errOut)
	}()
	var infos []boardInfo
	for deadline := time.Now().Add(time.Minute); len(infos) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("boards not up after a minute\nstdout:\n%s\nstderr:\n%s", out.text(), errOut.text())
		}
		infos = infos[:0]
		for _, line := range strings.Split(strings.TrimSpace(out.text()), "\n") {
			var info boardInfo
			if json.Unmarshal([]byte(line), &info) == nil && info.Port != "" {
				infos = append(infos, info)
			}
		}
	}
	for i, info := range infos {
		if want := fmt.Sprintf("ZTV%06d", i+1); info.Serial != want {
			t.Errorf("board %d has serial %q, want %q", i, info.Serial, want)
		}
		c, _, errText := run(t, "link", "--port", info.Port, "--baud", "2000000", "echo", "hi")
		if c != exitOK {
			t.Errorf("link echo to %s on %s: exit %d: %s", info.Serial, info.Port, c, errText)
		}
	}
	cancel()
	select {
	case c := <-code:
		if c != exitOK {
			t.Errorf("board exit %d after an interrupt, want 0\n%s", c, errOut.text())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("board did not stop after an interrupt")
	}
	// --dir keeps each board's flash.
	for _, info := range infos {
		if _, err := os.Stat(filepath.Join(dir, info.Serial, "state.json")); err != nil {
			t.Errorf("board %s left no state in --dir: %v", info.Serial, err)
		}
	}
}
