package ui

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"zerotouch/internal/atomicfile"
	"zerotouch/internal/textsafe"
	"zerotouch/station"
)

// settingsView is the Settings tab's state.
type settingsView struct {
	original string // the file as it was read, hash and all
	hidden   masker // what the view hides of it
	dialog   *dialog.CustomDialog
	pending  string // the text the open dialog would write
	diff     string // the change it shows
}

// bcryptToken finds what looks like a bcrypt hash, wherever it is in the
// configuration (a block or a flow mapping, quoted or not, a comment).
var bcryptToken = regexp.MustCompile(`\$2[aby]\$[^\s"'{}\[\],#]*`)

// hiddenHash stands for the hash in the Settings view. Saving puts the
// hash back; a supervisor who replaces it sets a new one.
const hiddenHash = "(hidden)"

// masker hides the supervisor password hash by its content, wherever it
// appears: it is never shown, not even to the supervisor. Each secret
// has a placeholder of its own that is in none of the texts it was made
// for, so that putting the secrets back changes nothing else.
type masker struct {
	hide, show *strings.Replacer
}

// newMasker hides, in texts, the known hashes (the configured one) and
// every bcrypt-looking token. The first known hash in texts is
// "(hidden)"; others are numbered in the order they appear.
func newMasker(texts []string, known ...string) masker {
	var secrets []string
	seen := map[string]bool{}
	add := func(sec string) {
		if !seen[sec] {
			seen[sec] = true
			secrets = append(secrets, sec)
		}
	}
	for _, k := range known {
		for _, t := range texts {
			if k != "" && strings.Contains(t, k) {
				add(k)
			}
		}
	}
	for _, t := range texts {
		for _, m := range bcryptToken.FindAllString(t, -1) {
			add(m)
		}
	}
	all := strings.Join(texts, "\n")
	type pair struct{ secret, placeholder string }
	pairs := make([]pair, 0, len(secrets))
	n := 0 // placeholders handed out or passed over
	for _, sec := range secrets {
		ph := ""
		for ph == "" || strings.Contains(all, ph) {
			n++
			ph = hiddenHash
			if n > 1 {
				ph = fmt.Sprintf("(hidden %d)", n)
			}
		}
		pairs = append(pairs, pair{sec, ph})
	}
	// The longest first: a secret that contains another is hidden whole.
	sort.SliceStable(pairs, func(i, j int) bool { return len(pairs[i].secret) > len(pairs[j].secret) })
	var hide, show []string
	for _, p := range pairs {
		hide = append(hide, p.secret, p.placeholder)
		show = append(show, p.placeholder, p.secret)
	}
	return masker{hide: strings.NewReplacer(hide...), show: strings.NewReplacer(show...)}
}

// mask returns text with the secrets hidden.
func (m masker) mask(text string) string {
	if m.hide == nil {
		return text
	}
	return m.hide.Replace(text)
}

// unmask puts back the secrets mask hid.
func (m masker) unmask(text string) string {
	if m.show == nil {
		return text
	}
	return m.show.Replace(text)
}

// hashOf is the supervisor password hash configured in text, valid or
// not, "" when there is none or text is not YAML.
func hashOf(text string) string {
	var c struct {
		GUI struct {
			Hash string `yaml:"supervisor_password_hash"`
		} `yaml:"gui"`
	}
	if yaml.Unmarshal([]byte(text), &c) != nil {
		return ""
	}
	return c.GUI.Hash
}

func (w *Window) buildSettings() fyne.CanvasObject {
	w.Settings = widget.NewMultiLineEntry()
	w.Settings.TextStyle.Monospace = true
	w.readSettings()
	w.Settings.Disable()
	w.Password = widget.NewPasswordEntry()
	w.Password.SetPlaceHolder("supervisor password, Enter")
	w.Password.OnSubmitted = func(string) { w.unlock() }
	w.Unlock = widget.NewButton("Unlock", w.unlock)
	w.Save = widget.NewButton("Save (at the next start)", w.saveSettings)
	w.Save.Disable()
	w.SettingsOK = widget.NewLabel("read only: the supervisor unlocks the settings and the retry of a possible clone")
	w.SettingsOK.Wrapping = fyne.TextWrapWord
	if w.b.Config.GUI.SupervisorPasswordHash == "" {
		w.Password.Disable()
		w.Unlock.Disable()
		w.SettingsOK.SetText("read only: no supervisor password is set (gui.supervisor_password_hash)")
	}
	bar := container.NewBorder(nil, nil, nil, container.NewHBox(w.Unlock, w.Save), w.Password)
	return container.NewBorder(container.NewVBox(bar, w.SettingsOK), nil, nil, nil, w.Settings)
}

// readSettings shows the configuration file as it is now.
func (w *Window) readSettings() {
	text := "(no configuration file)"
	w.settings = settingsView{}
	if w.b.ConfigFile != "" {
		if b, err := os.ReadFile(w.b.ConfigFile); err == nil {
			w.settings.original = string(b)
			w.settings.hidden = newMasker([]string{w.settings.original}, w.b.Config.GUI.SupervisorPasswordHash, hashOf(w.settings.original))
			text = w.settings.hidden.mask(w.settings.original)
		} else {
			text = "cannot read " + w.b.ConfigFile + ": " + err.Error()
		}
	}
	w.Settings.SetText(text)
}

// editable enables the settings editor and Save only while they are
// unlocked and in view: a disabled widget takes no focus and no keys.
func (w *Window) editable() {
	on := w.unlocked && w.tabs != nil && w.tabs.SelectedIndex() == 2 && w.settings.original != ""
	if on {
		w.Settings.Enable()
		w.Save.Enable()
		return
	}
	if w.win.Canvas().Focused() == w.Settings {
		w.win.Canvas().Unfocus()
	}
	w.Settings.Disable()
	w.Save.Disable()
}

// supervised is a station that keeps the supervisor's unlock itself
// (*station.Station): the clone rule is the station's.
type supervised interface {
	Unlock(password []byte) error
	Lock()
}

func (w *Window) unlock() {
	st, _ := w.b.Station.(supervised)
	if w.unlocked {
		if st != nil {
			st.Lock()
		}
		w.unlocked = false
		w.Unlock.SetText("Unlock")
		w.win.Canvas().Unfocus()
		w.readSettings() // an edit not saved is dropped
		w.editable()
		w.SettingsOK.SetText("locked again")
		w.relock()
		return
	}
	hash := w.b.Config.GUI.SupervisorPasswordHash
	pw := w.Password.Text
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw))
	w.Password.SetText("")
	if hash == "" || err != nil {
		w.SettingsOK.SetText("wrong password")
		return
	}
	if st != nil {
		if err := st.Unlock([]byte(pw)); err != nil {
			w.SettingsOK.SetText("the station refuses the unlock: " + err.Error())
			return
		}
	}
	w.unlocked = true
	w.Unlock.SetText("Lock")
	w.readSettings()
	w.editable()
	w.SettingsOK.SetText("unlocked by the supervisor: settings editable, a possible clone may be retried")
	w.relock()
}

// relock applies the lock state to the slots' Retry buttons.
func (w *Window) relock() {
	for _, name := range w.order {
		w.lockRetry(w.Slots[name])
	}
}

// saveSettings checks the edited configuration as the station would and,
// when it is valid and differs from the file, shows what changes; the
// supervisor's Write in that dialog writes it (writeSettings). The
// station reads it at its next start.
func (w *Window) saveSettings() {
	if !w.unlocked || w.b.ConfigFile == "" || w.settings.original == "" {
		return
	}
	text := w.settings.hidden.unmask(w.Settings.Text)
	if text == w.settings.original {
		w.SettingsOK.SetText("no change: nothing to save")
		return
	}
	cfg, err := station.ParseConfig([]byte(text))
	if err != nil {
		w.SettingsOK.SetText("not saved, the configuration would not start: " + err.Error())
		return
	}
	// The change shown hides the hashes, the old and any new one.
	m := newMasker([]string{w.settings.original, text},
		w.b.Config.GUI.SupervisorPasswordHash, hashOf(w.settings.original), cfg.GUI.SupervisorPasswordHash)
	w.settings.diff = lineDiff(m.mask(w.settings.original), m.mask(text))
	diff := widget.NewLabel(w.settings.diff)
	diff.TextStyle.Monospace = true
	diff.SizeName = theme.SizeNameCaptionText
	scroll := container.NewScroll(diff)
	scroll.SetMinSize(fyne.NewSize(700, 300))
	w.settings.pending = text
	write := widget.NewButton("Write "+w.b.ConfigFile, func() { w.writeSettings() })
	write.Importance = widget.HighImportance
	cancel := widget.NewButton("Cancel", func() {
		w.settings.dialog.Hide()
		w.SettingsOK.SetText("not saved")
	})
	content := container.NewBorder(widget.NewLabel("These lines of "+w.b.ConfigFile+" change (- now, + after):"),
		container.NewHBox(cancel, write), nil, nil, scroll)
	w.settings.dialog = dialog.NewCustomWithoutButtons("Save the station's configuration?", content, w.win)
	w.settings.dialog.Show()
}

// errChangedOnDisk means the configuration file changed since the
// Settings view read it.
var errChangedOnDisk = errors.New("the file was changed by someone else since it was shown: lock and unlock to read it again, then make the change again")

// writeSettings writes the text the save dialog showed, atomically, if
// the file is still what was shown, keeping the file's mode.
func (w *Window) writeSettings() {
	if w.settings.dialog != nil {
		w.settings.dialog.Hide()
	}
	text := w.settings.pending
	if !w.unlocked || text == "" {
		return
	}
	now, err := os.ReadFile(w.b.ConfigFile)
	switch {
	case err != nil:
		err = fmt.Errorf("read %s: %w", w.b.ConfigFile, err)
	case string(now) != w.settings.original:
		err = errChangedOnDisk
	default:
		err = writeKeepingMode(w.b.ConfigFile, []byte(text))
	}
	if err != nil {
		w.SettingsOK.SetText("not saved: " + err.Error())
		return
	}
	w.settings.original = text
	w.settings.pending = ""
	w.SettingsOK.SetText("saved to " + w.b.ConfigFile + ": restart zerotouch gui to use it")
}

// writeKeepingMode replaces the file name with data, atomically, with the
// mode the file has now.
func writeKeepingMode(name string, data []byte) error {
	st, err := os.Stat(name)
	if err != nil {
		return fmt.Errorf("read the mode of %s: %w", name, err)
	}
	return atomicfile.Write(name, data, st.Mode().Perm())
}

// lineDiff lists the lines that differ between a and b, as "- n: line"
// for a line of a and "+ n: line" for a line of b, with characters that
// do not print (a tab) written as escapes so that nothing changes unseen.
func lineDiff(a, b string) string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	// lcs[i][j] is the longest common subsequence of x[i:] and y[j:].
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			i++
			j++
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			fmt.Fprintf(&out, "- %d: %s\n", i+1, textsafe.Escape(x[i]))
			i++
		default:
			fmt.Fprintf(&out, "+ %d: %s\n", j+1, textsafe.Escape(y[j]))
			j++
		}
	}
	return strings.TrimSuffix(out.String(), "\n")
}
