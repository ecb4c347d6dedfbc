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
	return settingsWindowOver(t, fmtConfig, 0o600)
}

// settingsWindowOver is settingsWindow over the configuration config
// makes of the supervisor's hash, in a file of the given mode.
func settingsWindowOver(t *testing.T, config func(hash string) string, mode os.FileMode) (w *Window, file, original string) {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte("supervisor"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	original = config(string(hash))
	file = filepath.Join(t.TempDir(), "station.yaml")
	if err := os.WriteFile(file, []byte(original), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(file, mode); err != nil { // whatever the umask
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
		if strings.Contains(w.Settings.Text, string(hash)) || strings.Contains(w.Settings.Text, "$2a$") ||
			!strings.Contains(w.Settings.Text, "supervisor_password_hash: \""+hiddenHash+"\"") {
			t.Errorf("the Settings view shows the password hash, or not where it is hidden:\n%s", w.Settings.Text)
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

// flowConfig is the test configuration with its gui section in flow
// style, and a former hash, unquoted, in a comment.
func flowConfig(hash string) string {
	old, _ := bcrypt.GenerateFromPassword([]byte("former"), bcrypt.MinCost)
	c := strings.Replace(fmtConfig(hash), "gui:\n  supervisor_password_hash: \""+hash+"\"\n",
		"gui: {supervisor_password_hash: \""+hash+"\"}\n", 1)
	return "# the former hash was " + string(old) + "\n" + c
}

// TestSettingsFlowStyleHash: the hash is hidden by what it is, not where
// it is: in a flow mapping, in a comment; Write puts it back as it was.
func TestSettingsFlowStyleHash(t *testing.T) {
	w, file, original := settingsWindowOver(t, flowConfig, 0o600)
	if !strings.Contains(original, "gui: {supervisor_password_hash: \"$2a$") {
		t.Fatalf("the test configuration has no flow-style hash:\n%s", original)
	}
	w.doAndWait(func() {
		if strings.Contains(w.Settings.Text, "$2a$") {
			t.Errorf("the Settings view shows a password hash:\n%s", w.Settings.Text)
		}
		if !strings.Contains(w.Settings.Text, "gui: {supervisor_password_hash: \""+hiddenHash+"\"}") {
			t.Errorf("the Settings view does not show where the hash is hidden:\n%s", w.Settings.Text)
		}
		w.Settings.SetText(strings.Replace(w.Settings.Text, "line: line-b", "line: line-c", 1))
		test.Tap(w.Save)
	})
	w.doAndWait(func() {
		if strings.Contains(w.settings.diff, "$2a$") || strings.Count(w.settings.diff, "\n") != 1 {
			t.Errorf("the change shown:\n%s\nwant the line changed only, and no hash", w.settings.diff)
		}
		test.Tap(findButton(t, w, "Write "+file))
	})
	want := strings.Replace(original, "line: line-b", "line: line-c", 1)
	if got := fileText(t, file); got != want {
		t.Errorf("station.yaml after Write:\n%s\nwant\n%s", got, want)
	}
}

// TestSettingsKeepsMode: Write keeps station.yaml's mode.
func TestSettingsKeepsMode(t *testing.T) {
	w, file, original := settingsWindowOver(t, fmtConfig, 0o640)
	w.doAndWait(func() {
		w.Settings.SetText(strings.Replace(w.Settings.Text, "line: line-b", "line: line-c", 1))
		test.Tap(w.Save)
	})
	w.doAndWait(func() { test.Tap(findButton(t, w, "Write "+file)) })
	if got := fileText(t, file); got == original {
		t.Fatal("station.yaml was not written")
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o640 {
		t.Errorf("station.yaml after Write has mode %v; want its mode -rw-r----- kept", got)
	}
}

// TestMasker: every secret is hidden, each under a placeholder of its
// own that was not in the text, and put back exactly.
func TestMasker(t *testing.T) {
	const (
		h1 = "$2a$04$abcdefghijklmnopqrstuu0123456789ABCDEFGHIJKLMNOPQRSTU"
		h2 = "$2b$10$ZYXWVUTSRQPONMLKJIHGFe9876543210zyxwvutsrqponmlkjihgf"
		h3 = "$2y$12$0000000000000000000000000000000000000000000000000000."
	)
	tests := []struct {
		name, text string
		known      []string
		want       string // the masked text
	}{
		{"block", "gui:\n  supervisor_password_hash: " + h1 + "\n", nil, "gui:\n  supervisor_password_hash: (hidden)\n"},
		{"flow, quoted", "gui: {supervisor_password_hash: '" + h2 + "'}", nil, "gui: {supervisor_password_hash: '(hidden)'}"},
		{"one hash twice", "a: " + h1 + "\n# was " + h1, nil, "a: (hidden)\n# was (hidden)"},
		{"two hashes", "a: " + h1 + ", b: [" + h3 + "]", nil, "a: (hidden), b: [(hidden 2)]"},
		{"the known hash first", "a: " + h1 + ", b: [" + h3 + "]", []string{h3}, "a: (hidden 2), b: [(hidden)]"},
		{"the placeholder in the text", "# (hidden)\na: " + h1, nil, "# (hidden)\na: (hidden 2)"},
		{"a known hash not bcrypt-looking", "gui: {supervisor_password_hash: \"$argon2id$v=19$x\"}", []string{"$argon2id$v=19$x"},
			"gui: {supervisor_password_hash: \"(hidden)\"}"},
		{"nothing to hide", "line: line-b", []string{""}, "line: line-b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMasker([]string{tt.text}, tt.known...)
			got := m.mask(tt.text)
			if got != tt.want {
				t.Errorf("mask(%q) = %q, want %q", tt.text, got, tt.want)
			}
			if back := m.unmask(got); back != tt.text {
				t.Errorf("unmask(%q) = %q, want the text back, %q", got, back, tt.text)
			}
		})
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
