package ui

import (
	"slices"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"

	"zerotouch/station"
)

// shortcut does what Fyne's desktop driver does with a key combination:
// it runs the main menu item that carries it.
func shortcut(t *testing.T, w *Window, s fyne.Shortcut) {
	t.Helper()
	for _, m := range w.Window().MainMenu().Items {
		for _, it := range m.Items {
			if it.Shortcut != nil && it.Shortcut.ShortcutName() == s.ShortcutName() {
				w.doAndWait(it.Action)
				return
			}
		}
	}
	t.Fatalf("no menu item has the shortcut %s", s.ShortcutName())
}

// tabTo presses Tab until target has the focus, as an operator without a
// mouse would; it fails if target cannot be reached.
func tabTo(t *testing.T, w *Window, target fyne.Focusable) {
	t.Helper()
	c := w.Window().Canvas()
	for range 100 {
		var ok bool
		w.doAndWait(func() {
			test.FocusNext(c)
			ok = c.Focused() == target
		})
		if ok {
			return
		}
	}
	t.Fatal("Tab never reaches the widget")
}

// key sends a key to the focused widget.
func key(w *Window, k fyne.KeyName) {
	w.doAndWait(func() { w.Window().Canvas().Focused().TypedKey(&fyne.KeyEvent{Name: k}) })
}

// TestKeyboard runs a shift's actions with the keyboard alone: Tab and
// typing (or a scanner) to sign in, the shortcuts to start, retry, skip and
// find a record, Space on a focused button.
func TestKeyboard(t *testing.T) {
	w, fs := renderWindow(t, &fakeUploads{})
	c := w.Window().Canvas()
	if got := fyne.CurrentApp().Settings().Theme().Size(theme.SizeNameText); got < textSize {
		t.Errorf("text size %v; want at least %v, legible from the bench", got, textSize)
	}

	shortcut(t, w, KeyStart) // nobody has signed in: nothing starts
	tabTo(t, w, w.Operator)
	w.doAndWait(func() { test.Type(c.Focused(), "ana") })
	key(w, fyne.KeyReturn)
	w.doAndWait(func() {
		if c.Focused() != w.WorkOrder {
			t.Error("Enter on the operator's name does not move to the work order")
		}
		test.Type(c.Focused(), "WO-9")
	})
	key(w, fyne.KeyReturn)
	shortcut(t, w, KeyStart)
	waitUI(t, w, func() bool {
		fs.mu.Lock()
		defer fs.mu.Unlock()
		return fs.runs == 1
	})
	fs.mu.Lock()
	if fs.op != "ana" || fs.wo != "WO-9" {
		t.Errorf("signed in as %q, %q; want ana, WO-9", fs.op, fs.wo)
	}
	fs.mu.Unlock()
	shortcut(t, w, KeyStart) // already running: no second run
	w.doAndWait(func() {
		if !w.Start.Disabled() || w.Stop.Disabled() {
			t.Error("after Alt+S, Start should be disabled and Stop enabled")
		}
	})

	// Two boards fail: Alt+R retries the first, Tab and Space skip the other.
	w.Event(event("slot-1", "ZT-0001", station.StepWrite, station.Failed, "write failed"))
	w.Event(event("slot-2", "ZT-0002", station.StepWrite, station.Failed, "write failed"))
	shortcut(t, w, KeyRetry)
	tabTo(t, w, w.Slots["slot-2"].Skip)
	key(w, fyne.KeySpace)
	shortcut(t, w, KeyRetry) // nothing waits any more
	fs.mu.Lock()
	if !slices.Equal(fs.retries, []string{"slot-1"}) || !slices.Equal(fs.skips, []string{"slot-2"}) {
		t.Errorf("retries %v, skips %v; want [slot-1], [slot-2]", fs.retries, fs.skips)
	}
	fs.mu.Unlock()

	// Alt+F goes to the records with the focus in the search field.
	shortcut(t, w, KeyFind)
	w.doAndWait(func() {
		if w.tabs.SelectedIndex() != 1 || c.Focused() != w.Search {
			t.Fatal("Alt+F should open the records with the focus in the search")
		}
		test.Type(c.Focused(), "ZT1:sn=ZT-0404&rid=r")
	})
	key(w, fyne.KeyReturn)
	waitUI(t, w, func() bool { return strings.Contains(w.Detail.Text, "no record matches ZT-0404") })

	shortcut(t, w, KeyStop)
	waitUI(t, w, func() bool { return !w.Start.Disabled() })
}
