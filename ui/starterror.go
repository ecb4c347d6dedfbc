package ui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"
)

// StartError is the window of a station that cannot start: it says why
// and what to do, for an operator who has no terminal to read. Its
// widgets are fields so that tests can read and tap them.
type StartError struct {
	Title *widget.Label
	Text  *widget.Label
	Close *widget.Button
	win   fyne.Window
}

// NewStartError builds the window on app. Show it with
// Window().ShowAndRun; Close (the button, or the window's own) ends it.
func NewStartError(app fyne.App, title, text string) *StartError {
	app.Settings().SetTheme(Theme(app.Settings().Theme()))
	e := &StartError{win: app.NewWindow("zerotouch: " + title)}
	e.Title = widget.NewLabel(title)
	e.Title.TextStyle.Bold = true
	e.Title.SizeName = theme.SizeNameHeadingText
	e.Title.Wrapping = fyne.TextWrapWord
	e.Title.Importance = widget.DangerImportance
	e.Text = widget.NewLabel(text)
	e.Text.Wrapping = fyne.TextWrapWord
	e.Close = widget.NewButton("Close", e.win.Close)
	e.win.SetContent(container.NewBorder(e.Title, container.NewHBox(e.Close), nil, nil, container.NewVScroll(e.Text)))
	e.win.Resize(fyne.NewSize(900, 480))
	return e
}

// Window returns the Fyne window.
func (e *StartError) Window() fyne.Window { return e.win }
