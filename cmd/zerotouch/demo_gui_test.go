//go:build !nogui

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startXvfb starts a virtual X display for the test and returns its name.
// It picks a display number at random, clear of a desktop's :0 and of the
// low numbers other test processes' servers come and go on, and waits
// until the server answers on its socket.
func startXvfb(t *testing.T) string {
	t.Helper()
	xvfb, err := exec.LookPath("Xvfb")
	if err != nil {
		t.Skip("Xvfb is not installed (.ci/install installs it): the window is not tried")
	}
	for range 5 {
		n := 100 + rand.IntN(30000)
		cmd := exec.Command(xvfb, fmt.Sprintf(":%d", n), "-screen", "0", "1600x1000x24", "-nolisten", "tcp")
		if err := cmd.Start(); err != nil {
			t.Fatalf("start Xvfb: %v", err)
		}
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		sock := fmt.Sprintf("/tmp/.X11-unix/X%d", n)
		answers := func() bool {
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				select {
				case <-exited: // the number was taken: try another
					return false
				default:
				}
				if c, err := net.Dial("unix", sock); err == nil {
					c.Close()
					return true
				}
			}
			return false
		}
		if answers() {
			t.Cleanup(func() {
				cmd.Process.Signal(syscall.SIGTERM) // Xvfb removes its lock file and socket
				<-exited
			})
			return fmt.Sprintf(":%d", n)
		}
		cmd.Process.Kill()
		<-exited
	}
	t.Fatal("no Xvfb display came up in five tries")
	return ""
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
	home := t.TempDir() // Fyne would keep an application's preferences there
	cmd.Env = append(os.Environ(), "ZEROTOUCH_TEST_AS_MAIN=1", "DISPLAY="+display, "WAYLAND_DISPLAY=", "LANG=C.UTF-8",
		"HOME="+home, "XDG_CONFIG_HOME=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo with a display: %v\n%s", err, out)
	}
	for _, want := range []string{"done: closing the window", "8 boards passed, 0 failed", "5 individual enrollments uploaded"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	checkDemo(t, dir, "demo")

	// Closing the window prints nothing of Fyne's: the window keeps no
	// preferences, so Fyne neither writes a file as it closes nor reads
	// it back half-written ("Preferences load error: EOF").
	if strings.Contains(string(out), "Fyne") || strings.Contains(string(out), "Preferences") {
		t.Errorf("the demo window printed Fyne's messages:\n%s", out)
	}
	prefs, _ := filepath.Glob(filepath.Join(home, ".config", "fyne", "*", "preferences.json"))
	if len(prefs) > 0 {
		t.Errorf("the window wrote Fyne preferences %v: each close rewrites them, racing Fyne's own reader", prefs)
	}
}
