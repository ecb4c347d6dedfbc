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
const verdictSize = 36

// cardMinWidth is the least width of a slot's card: the grid puts as many
// cards in a row as fit at this width (or the widest card's own least
// width, when that is more), so nothing on a card is ever cut.
const cardMinWidth = 240

// SlotView is one slot's card. Its first lines are the operator's: the
// verdict and what to do. Details (the ⓘ button beside the slot's name,
// or Alt+D) shows the engineer's: the cause, the step, the time taken and
// the attempt.
type SlotView struct {
	Name     string
	Header   *widget.RichText // the slot's name and the board's serial
	Serial   string           // the board's serial, "" when none is known
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
	card              *fyne.Container
}

func (w *Window) newSlot(sc station.SlotConfig) *SlotView {
	v := &SlotView{Name: sc.Name, port: sc.Port}
	// The slot's name and the board's serial number: on one line when
	// they fit, else the serial wraps below; neither is ever cut.
	v.Header = widget.NewRichText(
		&widget.TextSegment{Text: sc.Name, Style: widget.RichTextStyleStrong},
		&widget.TextSegment{Style: widget.RichTextStyleInline})
	v.Header.Wrapping = fyne.TextWrapWord
	v.setSerial("")
	v.Step = widget.NewLabel("")
	v.Step.Wrapping = fyne.TextWrapWord
	v.Step.Hide() // shown while a board runs or after it failed
	v.Progress = widget.NewProgressBar()
	v.Progress.Hide() // shown while a board runs
	v.Verdict = canvas.NewText("IDLE", colourIdle)
	v.Verdict.TextSize = verdictSize
	v.Verdict.TextStyle.Bold = true
	v.Verdict.Alignment = fyne.TextAlignCenter
	v.Message = widget.NewLabel("")
	v.Message.Wrapping = fyne.TextWrapWord
	v.Message.Hide() // until there is something to say
	v.Details = widget.NewLabel("")
	v.Details.Wrapping = fyne.TextWrapWord
	v.Details.SizeName = theme.SizeNameCaptionText
	v.Details.Hide()
	v.Retry = widget.NewButton("Retry", func() { w.retry(v) })
	v.Skip = widget.NewButton("Skip", func() { w.skip(v) })
	v.Info = widget.NewButtonWithIcon("", theme.InfoIcon(), func() { w.toggleDetails(v) })
	v.Retry.Hide()
	v.Skip.Hide()
	v.card = container.NewVBox(
		container.NewBorder(nil, nil, nil, v.Info, v.Header),
		v.Step, v.Progress, v.Verdict, v.Message, v.Details,
		container.New(evenRow{}, v.Retry, v.Skip))
	v.showDetails()
	return v
}

// setSerial shows the board's serial number in the card's header.
func (v *SlotView) setSerial(serial string) {
	v.Serial = serial
	text := "no board"
	if serial != "" {
		text = textsafe.Escape(serial)
	}
	v.Header.Segments[1].(*widget.TextSegment).Text = "   " + text
	v.Header.Refresh()
}

// setStep shows the step a board is at; a card with no board running
// (the verdict says IDLE or PASS) takes no room for it.
func setStep(v *SlotView, text string) {
	v.Step.SetText(text)
	if text == "" {
		v.Step.Hide()
	} else {
		v.Step.Show()
	}
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
	} else {
		v.showDetails()
		v.Details.Show()
	}
	w.relayout()
}

// showDetails sets the details' text from what the card knows: the
// cause first, then the step, time and attempt, then where the board is.
func (v *SlotView) showDetails() {
	var lines []string
	if v.cause != "" {
		lines = append(lines, "cause: "+textsafe.Escape(v.cause))
	}
	var run []string
	if v.failedStep != "" {
		run = append(run, "step "+v.failedStep)
	}
	if v.elapsed > 0 {
		run = append(run, fmt.Sprintf("after %.1f s", v.elapsed))
	}
	if v.attempt > 0 {
		run = append(run, fmt.Sprintf("attempt %d", v.attempt))
	}
	if len(run) > 0 {
		lines = append(lines, strings.Join(run, ", "))
	}
	where := "port " + orDash(v.port)
	if v.regID != "" {
		where += ", registration ID " + textsafe.Escape(v.regID)
	}
	v.Details.SetText(strings.Join(append(lines, where), "\n"))
}

func (w *Window) show(e station.Event) {
	if e.Offline != w.offline || e.Step == station.StepRecords && e.Slot == "" {
		w.offline = e.Offline // every event says whether the records are buffered
		w.attention()
	}
	v := w.Slots[e.Slot]
	if v == nil {
		return
	}
	height := v.card.MinSize().Height
	if e.Port != "" {
		v.port = e.Port
	}
	if e.Serial != "" {
		v.setSerial(e.Serial)
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
		if beginsRun(e) {
			// A board's run begins: what the card knew is the last board's.
			v.setSerial("")
			v.regID = ""
		}
		v.clone = false
		v.cause, v.failedStep = "", ""
		setStep(v, stepText(e))
		v.Progress.SetValue(e.Progress)
		v.Progress.Show()
		w.verdict(v, "RUNNING", colourBusy)
		setMessage(v, "")
		v.Retry.Hide()
		v.Skip.Hide()
	case station.Passed:
		v.cause, v.failedStep = "", ""
		setStep(v, "")
		v.Progress.Hide()
		w.verdict(v, "PASS", colourPass)
		setMessage(v, e.Message)
		v.Retry.Hide()
		v.Skip.Hide()
		w.count(v, e, station.Passed)
		w.showLabel(e)
	case station.Failed:
		v.cause, v.failedStep = e.Error, e.Step
		setStep(v, "") // the operator's words say what failed; Details, at which step
		v.Progress.Hide()
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
		setStep(v, "")
		v.Progress.Hide()
		w.verdict(v, "SET ASIDE", colourIdle)
		setMessage(v, e.Message)
		v.Retry.Hide()
		v.Skip.Hide()
	case station.Empty:
		setStep(v, "")
		v.Progress.Hide()
		w.verdict(v, "EMPTY", colourIdle)
		setMessage(v, e.Message)
		v.cause = e.Error
		v.clone = false
		v.Retry.Hide() // no board waits: nothing to retry or set aside
		v.Skip.Hide()
	}
	v.showDetails()
	w.attention()
	v.card.Refresh()
	if v.card.MinSize().Height != height {
		w.relayout() // the row's height changes; progress alone does not lay 16 cards out again
	}
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
// known by its serial number. A run that failed before the board said
// who it is (no serial) is pending on its slot: one failed board until
// the slot's next result, named or not, takes its place (the same board
// reseated or retried), as the station's Summary counts.
func (w *Window) count(v *SlotView, e station.Event, result string) {
	pending := unnamedKey(v.Name)
	delete(w.boards, pending)
	k := e.Serial
	if k == "" {
		k = pending
	}
	w.boards[k] = result
	w.counters()
}

// unnamedKey is the counters' key of a slot's pending unnamed failure: it
// begins with a NUL, which no serial number does.
func unnamedKey(slot string) string { return "\x00" + slot }

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
	var parts []string
	if w.offline != "" {
		parts = append(parts, w.offline)
	}
	if names := w.waitingSlots(); len(names) > 0 {
		parts = append(parts, "waiting for you: "+strings.Join(names, ", "))
	}
	w.Attention.SetText(strings.Join(parts, "; "))
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
		y += h + 3*pad
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
			h += 3 * pad
		}
	}
	return fyne.NewSize(g.cellWidth(objs), h)
}

// evenRow lays its visible objects out side by side, sharing the width
// evenly; its least width is the sum of theirs (not, as a grid's, the
// widest times their number), so that a card's buttons never widen it.
type evenRow struct{}

func (evenRow) visible(objs []fyne.CanvasObject) []fyne.CanvasObject {
	var v []fyne.CanvasObject
	for _, o := range objs {
		if o.Visible() {
			v = append(v, o)
		}
	}
	return v
}

func (r evenRow) Layout(objs []fyne.CanvasObject, size fyne.Size) {
	vis := r.visible(objs)
	if len(vis) == 0 {
		return
	}
	pad := theme.Padding()
	w := (size.Width - pad*float32(len(vis)-1)) / float32(len(vis))
	for i, o := range vis {
		o.Move(fyne.NewPos(float32(i)*(w+pad), 0))
		o.Resize(fyne.NewSize(w, size.Height))
	}
}

func (r evenRow) MinSize(objs []fyne.CanvasObject) fyne.Size {
	vis := r.visible(objs)
	var s fyne.Size
	for i, o := range vis {
		m := o.MinSize()
		s.Width += m.Width
		if i > 0 {
			s.Width += theme.Padding()
		}
		s.Height = max(s.Height, m.Height)
	}
	return s
}
