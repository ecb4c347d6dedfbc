//go:build !nogui

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/app"
	"github.com/spf13/cobra"

	"zerotouch/station"
	"zerotouch/ui"
)

// withWindow: this build has the operator's window.
const withWindow = true

// hasDisplay tells whether a window can open.
func hasDisplay() bool { return displayCheck() == "" }

// displayCheck is displayProblem; a test that draws with Fyne's test app
// needs no display.
var displayCheck = displayProblem

// displayProblem says why no window can open here, or "" when one can:
// on Linux, a Wayland or X display named and, when it is local, its
// socket there (a display that went away is no display: the toolkit
// would wait for it forever).
func displayProblem() string {
	if runtime.GOOS == "windows" || runtime.GOOS == "darwin" {
		return ""
	}
	wayland := ""
	if w := os.Getenv("WAYLAND_DISPLAY"); w != "" {
		sock, dir := w, os.Getenv("XDG_RUNTIME_DIR")
		if !filepath.IsAbs(sock) && dir != "" {
			sock = filepath.Join(dir, w)
		}
		if _, err := os.Stat(sock); err == nil && filepath.IsAbs(sock) {
			return ""
		}
		// A stale one (inherited through sudo or ssh): X may still do.
		wayland = fmt.Sprintf("WAYLAND_DISPLAY=%s, but no Wayland compositor answers at %s; ", w, sock)
	}
	d := os.Getenv("DISPLAY")
	if d == "" {
		if wayland != "" {
			return "no display: " + wayland + "DISPLAY is unset"
		}
		return "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
	}
	host, num, ok := strings.Cut(d, ":")
	if !ok || host != "" && host != "unix" || strings.HasPrefix(num, ":") {
		return "" // a remote display: the toolkit finds out
	}
	n, _, _ := strings.Cut(num, ".")
	if _, err := os.Stat("/tmp/.X11-unix/X" + n); err != nil {
		return fmt.Sprintf("no display: %sDISPLAY=%s, but no X server runs there (no /tmp/.X11-unix/X%s)", wayland, d, n)
	}
	return ""
}

func guiCmd(g *globals) *cobra.Command {
	var file string
	var hash bool
	cmd := &cobra.Command{
		Use:   "gui --config station.yaml",
		Short: "Run the station with the operator's window",
		Long: `Run the station with the operator's window: the same station, configuration
and records as zerotouch run, shown as a card per slot with a large PASS or
FAIL, the shift's counters, the upload queue, the records and the settings.
The operator signs in (name, work order) before Start; a barcode scanner can
fill either field. Each passed board's label goes where the configuration's
labels section says (a folder, a ZPL printer, a CUPS queue), as with
zerotouch run.

--hash-password reads a password on stdin and prints the bcrypt hash to put
in gui.supervisor_password_hash.

Built with -tags nogui, zerotouch has no window (and no GL libraries).

Exit status: 0 when the window is closed; 2 when there is no display (or
the one named is not running) or the configuration is wrong; 3 when the CA cannot be used (no CA in ca.dir,
a wrong or missing CA password, a step-ca that cannot be trusted or
reached). A station that cannot start opens a window that says why and
what to mend (and logs it); the exit status comes when it is closed, and
no board is touched. The window shows a DPS set-up that cannot work (its
certificate not trusted, its key refused) under the upload queue; the
enrollments stay queued.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hash {
				return hashPassword(g, cmd.InOrStdin())
			}
			return runGUI(cmd.Context(), g, file, guiApp)
		},
	}
	cmd.Flags().StringVar(&file, "config", "station.yaml", "the station's configuration (YAML)")
	cmd.Flags().BoolVar(&hash, "hash-password", false, "print the bcrypt hash of the password read on stdin, and exit")
	return cmd
}

// newApp makes the Fyne application of the window. It has no unique ID,
// so Fyne keeps no preferences file: the window stores no preferences,
// and with one Fyne rewrites the file as the window closes while its own
// watcher reads it back half-written ("Preferences load error: EOF").
func newApp() fyne.App { return app.NewWithID("") }

// guiApp is newApp; tests of the command draw with Fyne's test app.
var guiApp = newApp

// closeOnDone closes win when ctx ends (an interrupt, SIGTERM), until
// the returned stop is called.
func closeOnDone(ctx context.Context, win fyne.Window) (stop func()) {
	gone := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			fyne.Do(win.Close)
		case <-gone:
		}
	}()
	return func() { close(gone) }
}

// errScanInWindow refuses a line whose serial numbers are scanned: the
// window cannot take them yet.
var errScanInWindow = usageError{errors.New("board.serial.source: scan: the window has no field to scan labels into; run this line headless with zerotouch run --scan - (a barcode scanner types into it), or use serial source sequence or file")}

func runGUI(ctx context.Context, g *globals, file string, newApp func() fyne.App) error {
	if p := displayCheck(); p != "" {
		return usageError{fmt.Errorf("%s: use zerotouch run for a headless station", p)}
	}
	var win atomic.Pointer[ui.Window]
	var bg *backgroundUpload
	events := func(e station.Event) {
		if w := win.Load(); w != nil {
			w.Event(e)
		}
		bg.Event(e)
	}
	var st *station.Station
	var set *stationSetup
	var err error
	if cfg, cerr := station.LoadConfig(file); cerr == nil && cfg.Board.Serial.Source == station.SerialScan {
		// The window has no field to scan a label into: its slots would
		// wait for ever.
		err = errScanInWindow
	} else {
		st, set, err = openStation(ctx, g, file, events)
	}
	if err != nil {
		// The operator has no terminal to read: the window says it.
		g.log.Error("the station cannot start", "config", file, "err", err)
		title, text := startErrorText(file, err)
		ew := ui.NewStartError(newApp(), title, text)
		stop := closeOnDone(ctx, ew.Window())
		ew.Window().ShowAndRun()
		stop()
		return err
	}
	defer set.Close()
	b := ui.Backend{Station: st, Config: set.cfg, ConfigFile: file, Records: set.store}
	bg = startUpload(ctx, set.uploader, set.dps, g.log)
	set.bg = bg
	if bg != nil {
		b.Uploads = bg // only when there is one: a nil pointer would make a non-nil interface
	}
	w := ui.New(newApp(), b)
	win.Store(w)
	stop := closeOnDone(ctx, w.Window())
	w.Window().ShowAndRun()
	stop()
	w.Close()
	bg.halt(time.Now().Add(uploadGrace))
	return nil
}

// startErrorText says, for the operator, why the station cannot start
// and what to do.
func startErrorText(file string, err error) (title, text string) {
	var se setupError
	switch {
	case errors.Is(err, station.ErrConfig) || errors.Is(err, fs.ErrNotExist) || errors.As(err, new(usageError)):
		title = "The station's configuration is wrong"
		text = fmt.Sprintf("zerotouch cannot start this station: its configuration file %s cannot be used.\n\n%v\n\n"+
			"What to do: the line engineer mends %s (the line above says which setting), then start zerotouch gui again. "+
			"No board has been touched.", file, err, file)
	case errors.As(err, &se):
		title = "The station's set-up cannot work"
		text = fmt.Sprintf("zerotouch cannot start this station: a part of its set-up (the CA, DPS, the label printer) cannot be used.\n\n%v\n\n"+
			"What to do: call the line engineer with this message, then start zerotouch gui again. No board has been touched.", err)
	default:
		title = "The station cannot start"
		text = fmt.Sprintf("zerotouch cannot start this station.\n\n%v\n\n"+
			"What to do: call the line engineer with this message, then start zerotouch gui again. No board has been touched.", err)
	}
	return title, text
}
