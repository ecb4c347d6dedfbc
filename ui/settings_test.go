package ui

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"
	"golang.org/x/crypto/bcrypt"
)

// pressTab does what Fyne's desktop driver does with Tab: a widget that
// accepts Tab (a multi-line entry) gets it as a key, else the focus moves.
func pressTab(w *Window) {
	w.doAndWait(func() {
		c := w.Window().Canvas()
		if f, ok := c.Focused().(fyne.Tabbable); ok && f.AcceptsTab() {
			c.Focused().TypedKey(&fyne.KeyEvent{Name: fyne.KeyTab})
			return
		}
		test.FocusNext(c)
	})
}

// typeKeys types s as the keyboard would: into the focused widget, if any.
func typeKeys(w *Window, s string) {
	w.doAndWait(func() {
		c := w.Window().Canvas()
		for _, r := range s {
			if f := c.Focused(); f != nil {
				f.TypedRune(r)
			} else if on := c.OnTypedRune(); on != nil {
				on(r)
			}
		}
	})
}

// settingsWindow is a window over a station.yaml in a temporary folder,
// unlocked by the supervisor on the Settings tab.
func settingsWindow(t *testing.T) (w *Window, file, original string) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("supervisor"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	original = fmtConfig(string(hash))
	file = filepath.Join(t.TempDir(), "station.yaml")
	if err := os.WriteFile(file, []byte(original), 0o600); err != nil {
		t.Fatal(err)
	}
	w, _ = renderWindowWith(t, &fakeUploads{}, func(b *Backend) {
		b.ConfigFile = file
		b.Config.GUI.SupervisorPasswordHash = string(hash)
	})
	shortcut(t, w, KeySettings)
	typeKeys(w, "supervisor")
	key(w, fyne.KeyReturn)
	w.doAndWait(func() {
		if !w.unlocked || w.Settings.Disabled() {
			t.Fatalf("the supervisor's password does not unlock the settings: %q", w.SettingsOK.Text)
		}
		if strings.Contains(w.Settings.Text, string(hash)) || !strings.Contains(w.Settings.Text, "supervisor_password_hash: "+hiddenHash) {
			t.Errorf("the Settings view shows the password hash, or not the hidden line:\n%s", w.Settings.Text)
		}
	})
	return w, file, original
}

func fileText(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSettingsHiddenEditor: after the unlocked settings were edited and
// Alt+L went back to the Line tab, Tab and typing never reach the hidden
// editor, and Save then writes nothing.
func TestSettingsHiddenEditor(t *testing.T) {
	w, file, original := settingsWindow(t)
	tabTo(t, w, w.Settings)
	typeKeys(w, "x") // an edit, undone
	key(w, fyne.KeyBackspace)

	shortcut(t, w, KeyLine)
	for range 3 {
		pressTab(w)
	}
	typeKeys(w, "typed on the Line tab")
	w.doAndWait(func() {
		if !w.Settings.Disabled() {
			t.Error("the settings editor is enabled while the Line tab is in view")
		}
		if f := w.Window().Canvas().Focused(); f == w.Settings {
			t.Error("the hidden settings editor has the focus")
		}
	})

	shortcut(t, w, KeySettings)
	w.doAndWait(func() {
		if strings.ContainsAny(w.Settings.Text, "\t") || strings.Contains(w.Settings.Text, "typed on the Line tab") {
			t.Errorf("keys pressed on the Line tab went into the settings editor:\n%q", w.Settings.Text)
		}
		test.Tap(w.Save)
		if len(w.Window().Canvas().Overlays().List()) != 0 {
			t.Error("Save with nothing changed asks to write")
		}
	})
	if got := fileText(t, file); got != original {
		t.Errorf("station.yaml changed:\n%q\nwant\n%q", got, original)
	}
	w.doAndWait(func() {
		if !strings.Contains(w.SettingsOK.Text, "no change") {
			t.Errorf("after Save with nothing changed: %q", w.SettingsOK.Text)
		}
	})
}

// findButton returns the button with text on the window's overlays.
func findButton(t *testing.T, w *Window, text string) *widget.Button {
	t.Helper()
	var found *widget.Button
	var walk func(o fyne.CanvasObject)
	walk = func(o fyne.CanvasObject) {
		if found != nil || o == nil {
			return
		}
		if b, ok := o.(*widget.Button); ok && b.Text == text {
			found = b
			return
		}
		switch o := o.(type) {
		case *fyne.Container:
			for _, c := range o.Objects {
				walk(c)
			}
		case fyne.Widget:
			r := test.WidgetRenderer(o)
			for _, c := range r.Objects() {
				walk(c)
			}
		}
	}
	for _, o := range w.Window().Canvas().Overlays().List() {
		walk(o)
	}
	if found == nil {
		t.Fatalf("no %q button shows", text)
	}
	return found
}

// TestSettingsSave: a real edit is shown as a change and written only
// when the supervisor confirms, hash kept; a configuration that would not
// start is never written.
func TestSettingsSave(t *testing.T) {
	w, file, original := settingsWindow(t)

	w.doAndWait(func() {
		w.Settings.SetText(strings.Replace(w.Settings.Text, "attestation: x509-keygen", "attestation: symmetric-key\t\t\t", 1))
		test.Tap(w.Save)
	})
	if got := fileText(t, file); got != original {
		t.Fatalf("an invalid configuration was written:\n%s", got)
	}
	w.doAndWait(func() {
		if !strings.Contains(w.SettingsOK.Text, "not saved") {
			t.Errorf("after Save of an invalid configuration: %q; want why it is not saved", w.SettingsOK.Text)
		}
		if len(w.Window().Canvas().Overlays().List()) != 0 {
			t.Error("an invalid configuration is offered for writing")
		}
	})

	w.doAndWait(func() {
		w.readSettings()
		w.Settings.SetText(strings.Replace(w.Settings.Text, "line: line-b", "line: line-c", 1))
		test.Tap(w.Save)
	})
	if got := fileText(t, file); got != original {
		t.Fatalf("the configuration was written before the change was confirmed:\n%s", got)
	}
	w.doAndWait(func() {
		if !strings.Contains(w.settings.diff, "- 2: line: line-b") || !strings.Contains(w.settings.diff, "+ 2: line: line-c") ||
			strings.Count(w.settings.diff, "\n") != 1 {
			t.Errorf("the change shown:\n%s\nwant line 2 from line-b to line-c, and nothing else", w.settings.diff)
		}
		test.Tap(findButton(t, w, "Write "+file))
	})
	want := strings.Replace(original, "line: line-b", "line: line-c", 1)
	if got := fileText(t, file); got != want {
		t.Errorf("station.yaml after Write:\n%s\nwant\n%s", got, want)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("station.yaml after Write: %v, %v; want mode 0600", st, err)
	}
}

// TestLineDiff shows changed lines only, tabs and all.
func TestLineDiff(t *testing.T) {
	tests := []struct{ a, b, want string }{
		{"a\nb\nc", "a\nb\nc", ""},
		{"a\nb\nc", "a\nB\nc", "- 2: b\n+ 2: B"},
		{"a\nb", "a\nb\nc", "+ 3: c"},
		{"a\nb\nc", "a\nc", "- 2: b"},
		{"mode: x", "mode: x\t\t", "- 1: mode: x\n+ 1: mode: x\\t\\t"},
	}
	for _, tt := range tests {
		if got := lineDiff(tt.a, tt.b); got != tt.want {
			t.Errorf("lineDiff(%q, %q) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestSettingsRelock: Lock takes the focus from the editor and disables
// it; keys typed then go nowhere near station.yaml.
func TestSettingsRelock(t *testing.T) {
	w, file, original := settingsWindow(t)
	tabTo(t, w, w.Settings)
	w.doAndWait(func() { test.Tap(w.Unlock) }) // Lock
	pressTab(w)
	typeKeys(w, "x")
	w.doAndWait(func() {
		if !w.Settings.Disabled() || !w.Save.Disabled() || w.Window().Canvas().Focused() == w.Settings {
			t.Error("after Lock the settings editor is enabled or focused")
		}
		if strings.Contains(w.Settings.Text, "x\t") || strings.HasPrefix(w.Settings.Text, "\t") {
			t.Errorf("keys after Lock reached the editor: %q", w.Settings.Text)
		}
		w.saveSettings()
	})
	if got := fileText(t, file); got != original {
		t.Errorf("station.yaml changed after Lock:\n%s", got)
	}
}
