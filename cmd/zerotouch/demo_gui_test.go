//go:build !nogui

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startXvfb starts a virtual X display for the test and returns its name.
func startXvfb(t *testing.T) string {
	t.Helper()
	xvfb, err := exec.LookPath("Xvfb")
	if err != nil {
		t.Skip("Xvfb is not installed (.ci/install installs it): the window is not tried")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(xvfb, "-displayfd", "3", "-screen", "0", "1600x1000x24", "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start Xvfb: %v", err)
	}
	w.Close()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // Xvfb removes its lock file and socket
		cmd.Wait()
	})
	buf := make([]byte, 16)
	n, err := r.Read(buf)
	r.Close()
	if err != nil || n == 0 {
		t.Fatalf("Xvfb gave no display number: %v", err)
	}
	return ":" + strings.TrimSpace(string(buf[:n]))
}

// TestDemoWindow runs zerotouch demo with a display: the operator's window
// opens, signs in as demo, runs every line, shows the uploads and closes
// when told to; the records are the headless demo's.
func TestDemoWindow(t *testing.T) {
	display := startXvfb(t)
	dir := filepath.Join(t.TempDir(), "demo")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The window needs the process's main thread: the test binary runs
	// zerotouch as its main (TestMain).
	cmd := exec.CommandContext(ctx, os.Args[0], "demo", "--dir", dir, "--baud", "1000000", "--close-after", "100ms")
	cmd.Env = append(os.Environ(), "ZEROTOUCH_TEST_AS_MAIN=1", "DISPLAY="+display, "WAYLAND_DISPLAY=", "LANG=C.UTF-8",
		"HOME="+t.TempDir()) // Fyne keeps its preferences there
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo with a display: %v\n%s", err, out)
	}
	for _, want := range []string{"done: closing the window", "7 boards passed, 0 failed", "5 individual enrollments uploaded"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	checkDemo(t, dir, "demo")
}
