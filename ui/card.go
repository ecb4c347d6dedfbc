package ui

import (
	"fmt"
	"image/color"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"zerotouch/internal/textsafe"
	"zerotouch/station"
)

// Colours of a slot's verdict: they must read from across the bench.
var (
	colourPass = color.NRGBA{R: 0x1b, G: 0x8a, B: 0x2f, A: 0xff}
	colourFail = color.NRGBA{R: 0xc6, G: 0x28, B: 0x28, A: 0xff}
	colourBusy = color.NRGBA{R: 0x15, G: 0x65, B: 0xc0, A: 0xff}
	colourIdle = color.NRGBA{R: 0x61, G: 0x61, B: 0x61, A: 0xff}
)

// verdictSize is the verdict's text size: legible from two metres.
const verdictSize = 48

// cardMinWidth is the least width of a slot's card: the grid puts as many
// cards in a row as fit at this width (or the widest card's own least
// width, when that is more), so nothing on a card is ever cut.
const cardMinWidth = 260

// SlotView is one slot's card. Its first lines are the operator's: the
// verdict and what to do. Details (the button, or Alt+D) shows the
// engineer's: the cause, the step, the time taken and the attempt.
type SlotView struct {
	Name     string
	Serial   *widget.Label
	Step     *widget.Label
	Progress *widget.ProgressBar
	Verdict  *canvas.Text
	Message  *widget.Label
	// Details, shown or hidden by ShowDetails, holds the port, the
	// registration ID and, after a failure, the cause, step, time taken
	// and attempt.
	Details           *widget.Label
	Retry, Skip, Info *widget.Button
	clone             bool
	port, regID       string
	cause, failedStep string
	elapsed           float64
	attempt           int
	key               string // the board the last result was counted under
	card              *fyne.Container
}

func (w *Window) newSlot(sc station.SlotConfig) *SlotView {
	v := &SlotView{Name: sc.Name, port: sc.Port}
	title := widget.NewLabelWithStyle(sc.Name, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	v.Serial = widget.NewLabel("no board")
	v.Serial.Truncation = fyne.TextTruncateEllipsis
	v.Serial.Alignment = fyne.TextAlignTrailing
	v.Step = widget.NewLabel("waiting for a board")
	v.Step.Wrapping = fyne.TextWrapWord
	v.Progress = widget.NewProgressBar()
	v.Verdict = canvas.NewText("IDLE", colourIdle)
	v.Verdict.TextSize = verdictSize
	v.Verdict.TextStyle.Bold = true
	v.Verdict.Alignment = fyne.TextAlignCenter
	v.Message = widget.NewLabel("")
	v.Message.Wrapping = fyne.TextWrapWord
	v.Message.Hide() // until there is something to say
	v.Details = widget.NewLabel("")
	v.Details.Wrapping = fyne.TextWrapBreak
	v.Details.SizeName = theme.SizeNameCaptionText
	v.Details.Hide()
	v.Retry = widget.NewButton("Retry", func() { w.retry(v) })
	v.Skip = widget.NewButton("Skip", func() { w.skip(v) })
	v.Info = widget.NewButton("Details", func() { w.toggleDetails(v) })
	v.Retry.Hide()
	v.Skip.Hide()
	v.card = container.NewVBox(
		container.NewBorder(nil, nil, title, nil, v.Serial),
		v.Step, v.Progress, v.Verdict, v.Message, v.Details,
		container.NewGridWithColumns(3, v.Retry, v.Skip, v.Info),
		widget.NewSeparator())
	v.showDetails()
	return v
}

// setMessage shows the operator's words on the card; a card with none
// takes no room for them.
func setMessage(v *SlotView, text string) {
	v.Message.SetText(text)
	if text == "" {
		v.Message.Hide()
	} else {
		v.Message.Show()
	}
}

// toggleDetails shows the card's details, or hides them.
func (w *Window) toggleDetails(v *SlotView) {
	if v.Details.Visible() {
		v.Details.Hide()
		v.Info.SetText("Details")
	} else {
		v.showDetails()
		v.Details.Show()
		v.Info.SetText("Hide details")
	}
	w.relayout()
}

// showDetails sets the details' text from what the card knows.
func (v *SlotView) showDetails() {
	var b strings.Builder
	fmt.Fprintf(&b, "port: %s", orDash(v.port))
	if v.regID != "" {
		fmt.Fprintf(&b, "\nregistration ID: %s", textsafe.Escape(v.regID))
	}
	if v.failedStep != "" {
		fmt.Fprintf(&b, "\nfailed at step: %s", v.failedStep)
	}
	if v.cause != "" {
		fmt.Fprintf(&b, "\ncause: %s", textsafe.Escape(v.cause))
	}
	if v.elapsed > 0 {
		fmt.Fprintf(&b, "\nafter %.1f s", v.elapsed)
	}
	if v.attempt > 0 {
		fmt.Fprintf(&b, ", attempt %d", v.attempt)
	}
	v.Details.SetText(b.String())
}

func (w *Window) show(e station.Event) {
	v := w.Slots[e.Slot]
	if v == nil {
		return
	}
	if e.Port != "" {
		v.port = e.Port
	}
	if e.Serial != "" {
		v.Serial.SetText(textsafe.Escape(e.Serial))
	}
	if e.RegistrationID != "" {
		v.regID = e.RegistrationID
	}
	if e.Attempt > 0 {
		v.attempt = e.Attempt
	}
	if e.Elapsed > 0 {
		v.elapsed = e.Elapsed
	}
	switch e.Result {
	case station.Running:
		if e.Step == station.StepConnect && e.Progress == 0 && e.Serial == "" {
			// A board's run begins: what the card knew is the last board's.
			v.Serial.SetText("no board")
			v.regID = ""
		}
		v.clone = false
		v.cause, v.failedStep = "", ""
		v.Step.SetText(stepText(e))
		v.Progress.SetValue(e.Progress)
		w.verdict(v, "RUNNING", colourBusy)
		setMessage(v, "")
		v.Retry.Hide()
		v.Skip.Hide()
	case station.Passed:
		v.cause, v.failedStep = "", ""
		v.Step.SetText("done")
		v.Progress.SetValue(1)
		w.verdict(v, "PASS", colourPass)
		setMessage(v, e.Message)
		v.Retry.Hide()
		v.Skip.Hide()
		w.count(v, e, station.Passed)
		w.showLabel(e)
	case station.Failed:
		v.cause, v.failedStep = e.Error, e.Step
		v.Step.SetText("failed at step: " + e.Step)
		w.verdict(v, "FAIL", colourFail)
		v.clone = e.Clone
		msg := e.Message
		if e.Clone {
			msg = "POSSIBLE CLONE: set the board aside and call the supervisor. " + msg
		}
		setMessage(v, msg)
		v.Retry.Show()
		v.Skip.Show()
		w.lockRetry(v)
		w.count(v, e, station.Failed)
	case station.Skipped:
		v.Step.SetText("waiting for a board")
		v.Progress.SetValue(0)
		w.verdict(v, "SET ASIDE", colourIdle)
		setMessage(v, e.Message)
		v.Retry.Hide()
		v.Skip.Hide()
	case station.Empty:
		v.Step.SetText("no board")
		v.Progress.SetValue(0)
		w.verdict(v, "EMPTY", colourIdle)
		setMessage(v, e.Message)
		v.cause = e.Error
	}
	v.showDetails()
	w.attention()
	v.card.Refresh()
	w.relayout()
}

// stepText is a running board's step, with what the slot waits for.
func stepText(e station.Event) string {
	s := "step: " + e.Step
	if e.Total > 0 {
		s += fmt.Sprintf(", %s of %s", bytesText(e.Done), bytesText(e.Total))
	}
	if e.Waiting != "" {
		s += fmt.Sprintf(" (waiting for %s, %.0f s)", e.Waiting, e.Elapsed)
	}
	return s
}

// bytesText is a count of bytes for a person.
func bytesText(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func (w *Window) verdict(v *SlotView, text string, c color.Color) {
	v.Verdict.Text = text
	v.Verdict.Color = c
	v.Verdict.Refresh()
}

// count counts a board's result in the shift's counters: a board, not a
// run, so a board retried and then passed is one passed board and no
// failed one, and a board failed twice is one failed board. A board is
// known by its serial number; a board that failed before it said who it
// is counts as its slot's until a retry names it.
func (w *Window) count(v *SlotView, e station.Event, result string) {
	k := e.Serial
	retried := e.Attempt > 1 && v.key != ""
	switch {
	case k == "" && retried:
		k = v.key
	case k == "":
		w.unnamed++
		k = fmt.Sprintf("%s#%d", v.Name, w.unnamed)
	case retried && v.key != k:
		delete(w.boards, v.key) // the retry named the board
	}
	v.key = k
	w.boards[k] = result
	w.counters()
}

// waitingSlots lists the slots whose failed board waits for Retry or
// Skip, in the configuration's order.
func (w *Window) waitingSlots() []string {
	var names []string
	for _, name := range w.order {
		if w.Slots[name].Retry.Visible() {
			names = append(names, name)
		}
	}
	return names
}

// attention names the slots that wait for the operator, so that a card
// scrolled out of view is not missed.
func (w *Window) attention() {
	names := w.waitingSlots()
	if len(names) == 0 {
		w.Attention.SetText("")
		return
	}
	w.Attention.SetText("waiting for you: " + strings.Join(names, ", "))
}

// slotGrid lays the slots' cards out row by row, in as many columns as
// fit the width at the cards' least width, each row as tall as its
// tallest card. In a vertical scroll it reflows as the window is resized.
type slotGrid struct {
	width   float32 // the width it was last laid out at
	changed func()  // called when a layout changes the number of columns
	cols    int
}

func (g *slotGrid) cellWidth(objs []fyne.CanvasObject) float32 {
	cw := float32(cardMinWidth)
	for _, o := range objs {
		cw = max(cw, o.MinSize().Width)
	}
	return cw
}

func (g *slotGrid) columns(objs []fyne.CanvasObject, width float32) int {
	pad := theme.Padding()
	cols := int((width + pad) / (g.cellWidth(objs) + pad))
	return max(1, min(cols, len(objs)))
}

func (g *slotGrid) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	pad := theme.Padding()
	cols := g.columns(objs, size.Width)
	g.width = size.Width
	cw := (size.Width - pad*float32(cols-1)) / float32(cols)
	y := float32(0)
	for i := 0; i < len(objs); i += cols {
		row := objs[i:min(i+cols, len(objs))]
		h := float32(0)
		for _, o := range row {
			h = max(h, o.MinSize().Height)
		}
		for j, o := range row {
			o.Move(fyne.NewPos(float32(j)*(cw+pad), y))
			o.Resize(fyne.NewSize(cw, h))
		}
		y += h + pad
	}
	if cols != g.cols {
		g.cols = cols
		if g.changed != nil {
			g.changed()
		}
	}
}

// MinSize is one card wide, and as tall as the rows are at the width last
// laid out.
func (g *slotGrid) MinSize(objs []fyne.CanvasObject) fyne.Size {
	if len(objs) == 0 {
		return fyne.Size{}
	}
	pad := theme.Padding()
	cols := 1
	if g.width > 0 {
		cols = g.columns(objs, g.width)
	}
	h := float32(0)
	for i := 0; i < len(objs); i += cols {
		rh := float32(0)
		for _, o := range objs[i:min(i+cols, len(objs))] {
			rh = max(rh, o.MinSize().Height)
		}
		h += rh
		if i > 0 {
			h += pad
		}
	}
	return fyne.NewSize(g.cellWidth(objs), h)
}
