package ui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/driver/desktop"
	"fyne.io/fyne/v2/widget"
)

// The window's keyboard shortcuts. They live in the main menu, which
// Fyne consults before the focused widget, so they work while an entry
// has the focus (as it does after a scan). Tab and Shift+Tab move the
// focus, Space presses the focused button, Enter submits an entry.
var (
	KeyStart    = alt(fyne.KeyS)
	KeyStop     = alt(fyne.KeyX)
	KeyRetry    = alt(fyne.KeyR)
	KeySkip     = alt(fyne.KeyK)
	KeyDetails  = alt(fyne.KeyD)
	KeyUpload   = alt(fyne.KeyU)
	KeyLine     = alt(fyne.KeyL)
	KeyFind     = alt(fyne.KeyF)
	KeySettings = alt(fyne.KeyE)
)

func alt(k fyne.KeyName) *desktop.CustomShortcut {
	return &desktop.CustomShortcut{KeyName: k, Modifier: fyne.KeyModifierAlt}
}

// menu is the main menu: every action of the window, with its shortcut.
func (w *Window) menu() *fyne.MainMenu {
	item := func(label string, s fyne.Shortcut, f func()) *fyne.MenuItem {
		i := fyne.NewMenuItem(label, f)
		i.Shortcut = s
		return i
	}
	return fyne.NewMainMenu(
		fyne.NewMenu("Station",
			item("Start", KeyStart, func() { press(w.Start) }),
			item("Stop", KeyStop, func() { press(w.Stop) }),
			item("Retry the failed board", KeyRetry, func() { w.firstWaiting(func(v *SlotView) { press(v.Retry) }) }),
			item("Skip the failed board", KeySkip, func() { w.firstWaiting(func(v *SlotView) { press(v.Skip) }) }),
			item("Details of the failed board", KeyDetails, func() { w.firstWaiting(w.toggleDetails) }),
			item("Upload now", KeyUpload, func() { press(w.UploadNow) }),
		),
		fyne.NewMenu("View",
			item("Line", KeyLine, func() {
				w.tabs.SelectIndex(0)
				w.tabChanged() // SelectIndex of the tab in view calls no OnSelected
			}),
			item("Find a record", KeyFind, func() {
				w.tabs.SelectIndex(1)
				w.win.Canvas().Focus(w.Search)
			}),
			item("Settings", KeySettings, func() {
				w.tabs.SelectIndex(2)
				if !w.Password.Disabled() {
					w.win.Canvas().Focus(w.Password)
				}
			}),
		),
	)
}

// press taps b as the mouse would: not when it is hidden or disabled.
func press(b *widget.Button) {
	if b.Visible() && !b.Disabled() && b.OnTapped != nil {
		b.OnTapped()
	}
}

// firstWaiting calls f with the first slot, in the configuration's order,
// whose board failed and waits for Retry or Skip.
func (w *Window) firstWaiting(f func(*SlotView)) {
	for _, name := range w.order {
		if v := w.Slots[name]; v.Retry.Visible() {
			f(v)
			return
		}
	}
}
