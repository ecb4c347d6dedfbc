//go:build !nogui

package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"
)

// The window refuses to start without a display, pointing at run.
func TestGUICommand(t *testing.T) {
	t.Setenv("DISPLAY", "")
	t.Setenv("WAYLAND_DISPLAY", "")
	code, _, errOut := run(t, "gui", "--config", "does-not-matter.yaml")
	if code != exitUsage || !strings.Contains(errOut, "zerotouch run") {
		t.Errorf("gui without a display: exit %d, %q; want %d and a pointer to zerotouch run", code, errOut, exitUsage)
	}
}

// labelsText is the text of every label in o, one a line.
func labelsText(o fyne.CanvasObject) string {
	var b strings.Builder
	var walk func(o fyne.CanvasObject)
	walk = func(o fyne.CanvasObject) {
		switch o := o.(type) {
		case *widget.Label:
			b.WriteString(o.Text + "\n")
		case *fyne.Container:
			for _, c := range o.Objects {
				walk(c)
			}
		case fyne.Widget:
			for _, c := range test.WidgetRenderer(o).Objects() {
				walk(c)
			}
		}
	}
	walk(o)
	return b.String()
}

// TestGUIStartError: gui with a configuration that cannot be used opens a
// window that says what is wrong and what to do, logs it, and exits 2
// when the window is closed.
func TestGUIStartError(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		want       []string
	}{
		{"bad baud", "station: st\nline: l\nattestation: x509-keygen\nid_scope: 0ne0001A2B3\nca:\n  dir: ca\nslots:\n  - port: /dev/ttyUSB0\n    baud: fast\n",
			[]string{"baud"}},
		// The window has no field to scan labels into.
		{"scanned serials", "station: st\nline: l\nattestation: symmetric-key\nid_scope: 0ne0001A2B3\nsymmetric_key: {group_id: g}\nboard: {profile: stock, serial: {source: scan}}\nslots:\n  - port: /dev/ttyUSB0\n",
			[]string{"board.serial.source: scan", "zerotouch run --scan"}},
	} {
		t.Run(c.name, func(t *testing.T) { testGUIStartError(t, c.yaml, c.want) })
	}
}

func testGUIStartError(t *testing.T, yaml string, wantText []string) {
	displayCheck = func() string { return "" } // the test app draws nowhere
	t.Cleanup(func() { displayCheck = displayProblem })
	file := filepath.Join(t.TempDir(), "station.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	g := &globals{stdout: io.Discard, stderr: &lockedWriter{w: io.Discard}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	var a fyne.App
	err := runGUI(context.Background(), g, file, func() fyne.App {
		a = test.NewTempApp(t)
		return a
	})
	if code := exitCode(err); code != exitUsage {
		t.Errorf("gui with a bad configuration: %v, exit %d; want exit %d", err, code, exitUsage)
	}
	var win fyne.Window
	if a != nil {
		for _, w := range a.Driver().AllWindows() {
			if strings.HasPrefix(w.Title(), "zerotouch") {
				win = w
			}
		}
	}
	if win == nil {
		t.Fatal("gui with a bad configuration opens no window")
	}
	text := labelsText(win.Content())
	for _, want := range append([]string{"configuration is wrong", file, "What to do", "No board has been touched"}, wantText...) {
		if !strings.Contains(text, want) {
			t.Errorf("the window says:\n%s\nwant %q", text, want)
		}
	}
	if !strings.Contains(logs.String(), "the station cannot start") || !strings.Contains(logs.String(), wantText[0]) {
		t.Errorf("log:\n%s\nwant the configuration error", logs.String())
	}
}

// TestDisplayProblem: a display named but not running is no display.
func TestDisplayProblem(t *testing.T) {
	t.Setenv("WAYLAND_DISPLAY", "")
	for _, tc := range []struct {
		display, want string
	}{
		{"", "unset"},
		{":97", "no X server runs there"},
		{"unix:97.0", "no /tmp/.X11-unix/X97"},
		{"buildhost:0", ""}, // remote: the toolkit finds out
	} {
		t.Setenv("DISPLAY", tc.display)
		got := displayProblem()
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("DISPLAY=%q: %q, want %q", tc.display, got, tc.want)
		}
	}
	sock := filepath.Join(t.TempDir(), "wayland-9")
	os.WriteFile(sock, nil, 0o600)
	t.Setenv("WAYLAND_DISPLAY", sock)
	if got := displayProblem(); got != "" {
		t.Errorf("WAYLAND_DISPLAY at a socket there: %q", got)
	}
	t.Setenv("WAYLAND_DISPLAY", sock+"-gone")
	t.Setenv("DISPLAY", "")
	if got := displayProblem(); !strings.Contains(got, "no Wayland compositor") {
		t.Errorf("WAYLAND_DISPLAY gone: %q", got)
	}
	t.Setenv("DISPLAY", "buildhost:0")
	if got := displayProblem(); got != "" {
		t.Errorf("WAYLAND_DISPLAY gone but an X display named: %q, want X to do", got)
	}
}

// windowless has the gui command draw with Fyne's test app, which needs
// no display, for the rest of the test.
func windowless(t *testing.T) {
	displayCheck = func() string { return "" }
	guiApp = func() fyne.App { return test.NewTempApp(t) }
	t.Cleanup(func() { displayCheck, guiApp = displayProblem, newApp })
}
