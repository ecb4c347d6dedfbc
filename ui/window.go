package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/layout"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"zerotouch/internal/textsafe"
	"zerotouch/labels"
	"zerotouch/station"
	"zerotouch/station/records"
)

// Window is the operator's window. Its widgets are fields so that tests
// can tap them. Create it with New; its methods other than Event run on
// Fyne's goroutine (from widget callbacks, or inside fyne.Do).
type Window struct {
	b   Backend
	win fyne.Window

	// Sign-in and the run.
	Operator, WorkOrder *widget.Entry
	SignIn              *widget.Button
	SignedIn            *widget.Label
	Start, Stop         *widget.Button
	cancel              context.CancelFunc
	runDone             chan struct{}

	// The shift: boards, not runs (see count).
	Passed, Failed, Rate *widget.Label
	Attention            *widget.Label // the slots waiting for Retry or Skip; the records buffered offline
	offline              string        // "factory database offline: N boards buffered" (station.Event.Offline)
	boards               map[string]string
	shiftStart           time.Time

	Slots map[string]*SlotView
	order []string
	grid  *fyne.Container
	slots *container.Scroll

	// The upload queue.
	Queue, QueueError *widget.Label
	UploadNow         *widget.Button

	// Records.
	Search         *widget.Entry
	Results        *widget.List
	Detail         *widget.Label
	Export         *widget.Button
	PrintLabel     *widget.Button // the shown record's label, again
	Next, Previous *widget.Button
	PageText       *widget.Label
	found          []records.Record
	recs           recordsView

	// Settings.
	Settings   *widget.Entry
	Password   *widget.Entry
	Unlock     *widget.Button
	Save       *widget.Button
	SettingsOK *widget.Label
	unlocked   bool
	settings   settingsView

	// The last label made.
	Label     *canvas.Image
	LabelText *widget.Label

	side *fyne.Container // the upload queue and the label: laid out again as their texts change
	tabs *container.AppTabs

	// events are the station's events waiting to be shown (Event).
	events struct {
		mu        sync.Mutex
		q         []station.Event
		scheduled bool
	}

	stopPoll chan struct{}
	closed   sync.Once
	// gone: Close began; updates from other goroutines are dropped,
	// since Fyne's loop may have ended with the window.
	gone atomic.Bool

	// mu serialises the window's updates. Fyne's own driver runs every
	// fyne.Do on its one goroutine; its test driver runs each where it is
	// called, and the window's updates must not overlap there either.
	mu sync.Mutex
}

// do updates the window from any goroutine, through fyne.Do, until
// Close.
func (w *Window) do(f func()) {
	if w.gone.Load() {
		return
	}
	fyne.Do(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		f()
	})
}

// doAndWait is do that returns when f has run.
func (w *Window) doAndWait(f func()) {
	fyne.DoAndWait(func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		f()
	})
}

// New builds the window on app. Show it with Window().ShowAndRun or
// Show; Close ends a run in progress and the polling.
func New(app fyne.App, b Backend) *Window {
	if b.Poll <= 0 {
		b.Poll = 2 * time.Second
	}
	if b.Now == nil {
		b.Now = time.Now
	}
	w := &Window{b: b, Slots: map[string]*SlotView{}, boards: map[string]string{}, stopPoll: make(chan struct{}), shiftStart: b.Now()}
	app.Settings().SetTheme(Theme(app.Settings().Theme()))
	w.win = app.NewWindow(fmt.Sprintf("zerotouch: %s, %s", b.Config.Station, b.Config.Line))
	w.win.SetContent(w.build())
	w.win.SetMainMenu(w.menu())
	// The least screen the window is made for; a bigger one is the
	// window manager's (or the operator's) to give it.
	w.win.Resize(fyne.NewSize(1280, 720))
	w.win.SetOnClosed(w.Close)
	// A scanner's first scan, or the operator's first keys, sign in.
	w.win.Canvas().Focus(w.Operator)
	go w.pollUploads()
	return w
}

// Begin signs in and starts the station, as the operator would with the
// sign-in fields and Start: for a station that needs no one at the
// keyboard to begin (the demo). Call it before the window shows, or on
// Fyne's goroutine.
func (w *Window) Begin(operator, workOrder string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.Operator.SetText(operator)
	w.WorkOrder.SetText(workOrder)
	w.signIn()
	press(w.Start)
}

// Window returns the Fyne window.
func (w *Window) Window() fyne.Window { return w.win }

// Close stops a run in progress, waits for it, and stops the polling.
// Safe to call more than once, from Fyne's goroutine.
func (w *Window) Close() {
	w.closed.Do(func() {
		w.gone.Store(true)
		close(w.stopPoll)
		if w.cancel != nil {
			w.cancel()
		}
		if w.runDone != nil {
			<-w.runDone // a run stopped with Stop may still be finishing
		}
	})
}

func (w *Window) build() fyne.CanvasObject {
	w.Operator = widget.NewEntry()
	w.Operator.SetPlaceHolder("operator (scan or type, Enter)")
	w.WorkOrder = widget.NewEntry()
	w.WorkOrder.SetPlaceHolder("work order (scan or type, Enter)")
	w.SignIn = widget.NewButton("Sign in", w.signIn)
	w.SignedIn = widget.NewLabel("not signed in")
	w.SignedIn.Wrapping = fyne.TextWrapWord
	// A barcode scanner types the value and Enter.
	w.Operator.OnSubmitted = func(string) { w.win.Canvas().Focus(w.WorkOrder) }
	w.WorkOrder.OnSubmitted = func(string) { w.signIn() }
	w.Start = widget.NewButton("Start (Alt+S)", w.start)
	w.Start.Importance = widget.HighImportance
	w.Start.Disable() // until someone signs in
	w.Stop = widget.NewButton("Stop (Alt+X)", w.stop)
	w.Stop.Disable()

	w.Passed = widget.NewLabel("passed 0")
	w.Failed = widget.NewLabel("failed 0")
	w.Rate = widget.NewLabel("0 boards/h")
	for _, l := range []*widget.Label{w.Passed, w.Failed, w.Rate} {
		l.TextStyle.Bold = true
		l.SizeName = theme.SizeNameSubHeadingText
	}
	w.Attention = widget.NewLabel("")
	w.Attention.Wrapping = fyne.TextWrapWord
	w.Attention.Importance = widget.DangerImportance
	w.Attention.TextStyle.Bold = true

	w.Queue = widget.NewLabel("upload queue: -")
	w.QueueError = widget.NewLabel("")
	w.QueueError.Hide() // until the uploader says something
	w.QueueError.Wrapping = fyne.TextWrapWord
	w.UploadNow = widget.NewButton("Upload now (Alt+U)", w.uploadNow)
	if w.b.Uploads == nil {
		w.UploadNow.Disable()
		w.queueError("no DPS connection string: enrollments are queued for zerotouch upload")
	}

	// The entries share what the buttons leave: their placeholders show
	// whole from 1280 pixels across.
	signIn := container.NewBorder(nil, nil, nil, container.NewHBox(w.SignIn, w.Start, w.Stop),
		container.NewGridWithColumns(2, w.Operator, w.WorkOrder))
	shift := container.NewBorder(nil, nil, nil, container.NewHBox(w.Passed, w.Failed, w.Rate),
		container.NewGridWithColumns(2, w.SignedIn, w.Attention))
	top := container.NewVBox(signIn, shift)

	var cards []fyne.CanvasObject
	for _, sc := range w.b.Config.Slots {
		v := w.newSlot(sc)
		w.Slots[sc.Name] = v
		w.order = append(w.order, sc.Name)
		cards = append(cards, v.card)
	}
	flow := &slotGrid{}
	w.grid = container.New(flow, cards...)
	w.slots = container.NewVScroll(w.grid)
	flow.changed = func() { w.slots.Refresh() }

	w.Label = canvas.NewImageFromImage(image.NewGray(image.Rect(0, 0, 1, 1)))
	w.Label.FillMode = canvas.ImageFillContain
	w.Label.SetMinSize(fyne.NewSize(110, 110))
	w.Label.Hide() // until there is a label: not a black square
	w.LabelText = widget.NewLabel("no label yet")
	w.LabelText.Wrapping = fyne.TextWrapWord
	w.LabelText.SizeName = theme.SizeNameCaptionText
	w.QueueError.SizeName = theme.SizeNameCaptionText
	w.side = container.NewVBox(
		widget.NewLabelWithStyle("Upload queue", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		w.Queue, w.QueueError, w.UploadNow,
		widget.NewSeparator(),
		widget.NewLabelWithStyle("Last label", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		w.Label, w.LabelText,
	)
	// The side panel keeps its width and scrolls when the screen is low.
	side := container.NewVScroll(w.side)
	side.SetMinSize(fyne.NewSize(sideWidth, 0))
	// In this order the keyboard's Tab goes: sign-in, slots, side panel.
	line := container.New(layout.NewBorderLayout(top, nil, nil, side), top, w.slots, side)

	w.tabs = container.NewAppTabs(
		container.NewTabItem("Line", line),
		container.NewTabItem("Records", w.buildRecords()),
		container.NewTabItem("Settings", w.buildSettings()),
	)
	w.tabs.OnSelected = func(*container.TabItem) { w.tabChanged() }
	return w.tabs
}

// sideWidth is the width of the upload queue and label panel.
const sideWidth = 250

// relayout lays the slots out again after a card changed height.
func (w *Window) relayout() {
	w.grid.Refresh()
	w.slots.Refresh()
}

// tabChanged keeps the keyboard to the tab in view: a widget on a hidden
// tab never keeps the focus, and the settings editor takes no keys but on
// its own tab (a Tab pressed elsewhere would otherwise type into it).
func (w *Window) tabChanged() {
	c := w.win.Canvas()
	if f := c.Focused(); f != nil {
		if o, ok := f.(fyne.CanvasObject); ok && !shown(w.tabs.Selected().Content, o) {
			c.Unfocus()
		}
	}
	w.editable()
}

// shown reports whether o is inside root.
func shown(root, o fyne.CanvasObject) bool {
	if root == o {
		return true
	}
	switch r := root.(type) {
	case *fyne.Container:
		for _, c := range r.Objects {
			if shown(c, o) {
				return true
			}
		}
	case fyne.Widget:
		switch t := r.(type) {
		case *container.Scroll:
			return shown(t.Content, o)
		case *container.Split:
			return shown(t.Leading, o) || shown(t.Trailing, o)
		}
	}
	return false
}

// Event shows a station event. Safe to call from any goroutine: it is
// the station's Deps.Events (chained with whatever else wants events).
// It never blocks: events wait in a queue that Fyne's goroutine empties,
// and a slot's progress replaces its progress still waiting there, so a
// station sending progress faster than the screen is drawn (16 slots on
// a slow graphics stack) never leaves the window behind.
func (w *Window) Event(e station.Event) {
	w.events.mu.Lock()
	queued := false
	if e.Result == station.Running && !beginsRun(e) {
		q := w.events.q
		for i := len(q) - 1; i >= 0; i-- {
			if q[i].Slot == e.Slot {
				if q[i].Result == station.Running && !beginsRun(q[i]) {
					q[i], queued = e, true
				}
				break
			}
		}
	}
	if !queued {
		w.events.q = append(w.events.q, e)
	}
	schedule := !w.events.scheduled
	w.events.scheduled = true
	w.events.mu.Unlock()
	if schedule {
		w.do(w.showEvents)
	}
}

// showEvents shows the events queued by Event, in order.
func (w *Window) showEvents() {
	w.events.mu.Lock()
	q := w.events.q
	w.events.q, w.events.scheduled = nil, false
	w.events.mu.Unlock()
	for _, e := range q {
		w.show(e)
	}
}

// beginsRun reports whether e is the first event of a board's run.
func beginsRun(e station.Event) bool {
	return e.Result == station.Running && e.Step == station.StepConnect && e.Progress == 0 && e.Serial == ""
}

// lockRetry disables Retry of a possible clone unless the supervisor has
// unlocked the window.
func (w *Window) lockRetry(v *SlotView) {
	if v.clone && !w.unlocked {
		v.Retry.Disable()
	} else {
		v.Retry.Enable()
	}
}

func (w *Window) counters() {
	passed, failed := 0, 0
	for _, r := range w.boards {
		if r == station.Passed {
			passed++
		} else {
			failed++
		}
	}
	w.Passed.SetText(fmt.Sprintf("passed %d", passed))
	w.Failed.SetText(fmt.Sprintf("failed %d", failed))
	hours := w.b.Now().Sub(w.shiftStart).Hours()
	rate := 0.0
	if hours > 0 {
		rate = float64(passed) / hours
	}
	w.Rate.SetText(fmt.Sprintf("%.0f boards/h", rate))
}

func (w *Window) signIn() {
	op := strings.TrimSpace(w.Operator.Text)
	if op == "" {
		w.SignedIn.SetText("type or scan your name first")
		w.win.Canvas().Focus(w.Operator)
		return
	}
	wo := strings.TrimSpace(w.WorkOrder.Text)
	w.b.Station.SetOperator(op, wo)
	text := "signed in: " + op
	if wo != "" {
		text += ", work order " + wo
	}
	w.SignedIn.SetText(text)
	if w.cancel == nil {
		w.Start.Enable()
	}
}

func (w *Window) start() {
	if w.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.runDone = cancel, make(chan struct{})
	done := w.runDone
	w.Start.Disable()
	w.Stop.Enable()
	go func() {
		defer close(done)
		_, err := w.b.Station.Run(ctx, station.RunOptions{})
		w.do(func() {
			if err != nil {
				w.SignedIn.SetText("the station stopped: " + err.Error())
			}
			if w.runDone == done && w.cancel != nil {
				// The run ended by itself, not by Stop.
				w.cancel()
				w.cancel = nil
				w.Stop.Disable()
				w.Start.Enable()
			}
		})
	}()
}

func (w *Window) stop() {
	if w.cancel == nil {
		return
	}
	w.cancel()
	done := w.runDone
	w.cancel = nil
	w.Stop.Disable()
	go func() {
		<-done
		w.do(func() { w.Start.Enable() })
	}()
}

func (w *Window) retry(v *SlotView) {
	if v.clone && !w.unlocked {
		v.Message.SetText("a possible clone: the supervisor must unlock (Settings) before it is retried")
		return
	}
	if err := w.b.Station.Retry(v.Name); err != nil {
		v.Message.SetText(actionError("Retry", err))
		return
	}
	v.Retry.Hide()
	v.Skip.Hide()
	w.attention()
	w.relayout()
}

func (w *Window) skip(v *SlotView) {
	if err := w.b.Station.Skip(v.Name); err != nil {
		v.Message.SetText(actionError("Skip", err))
		return
	}
	v.Retry.Hide()
	v.Skip.Hide()
	w.attention()
	w.relayout()
}

func actionError(what string, err error) string {
	if errors.Is(err, station.ErrNotWaiting) {
		return what + ": the board is no longer waiting (taken off, or the station stopped)"
	}
	return what + ": " + err.Error()
}

// showLabel shows the passed board's label and where the station put it
// (the station prints it: the window only draws it).
func (w *Window) showLabel(e station.Event) {
	l := labels.Label{Serial: e.Serial, RegistrationID: e.RegistrationID, Time: e.Time}
	serial := textsafe.Escape(e.Serial)
	var text string
	switch {
	case e.LabelError != "":
		text = fmt.Sprintf("%s: LABEL NOT PRINTED (%s): check the printer, then print it again from the record", serial, textsafe.Escape(e.LabelError))
	case e.Label != "":
		text = fmt.Sprintf("%s: label sent to %s", serial, e.Label)
	default:
		text = serial + ": no label printer set (labels in station.yaml)"
	}
	go func() {
		data, err := l.PNG(280)
		var img image.Image
		if err == nil {
			img, err = png.Decode(bytes.NewReader(data))
		}
		w.do(func() {
			if err == nil {
				w.Label.Image = img
				w.Label.Show()
				w.Label.Refresh()
			}
			w.LabelText.SetText(text)
			w.side.Refresh()
		})
	}()
}

// queueError shows what the uploader says; nothing takes no room.
func (w *Window) queueError(text string) {
	w.QueueError.SetText(text)
	if text == "" {
		w.QueueError.Hide()
	} else {
		w.QueueError.Show()
	}
}

func (w *Window) uploadNow() {
	if w.b.Uploads == nil {
		return
	}
	w.b.Uploads.Now()
	w.queueError("upload asked for")
	go w.refreshUploads()
}

// pollUploads reads the queue's counts every Poll until Close.
func (w *Window) pollUploads() {
	t := time.NewTicker(w.b.Poll)
	defer t.Stop()
	for {
		w.refreshUploads()
		select {
		case <-w.stopPoll:
			return
		case <-t.C:
		}
	}
}

func (w *Window) refreshUploads() {
	st, err := w.b.uploadStatus(context.Background())
	w.do(func() {
		if err != nil {
			w.Queue.SetText("upload queue: cannot read the records: " + err.Error())
			return
		}
		// Held: enrollments of boards that have not passed; they go
		// when their board does.
		w.Queue.SetText(fmt.Sprintf("pending %d\nuploading %d\nuploaded %d\nheld %d\nfailed %d\nconflicts %d",
			st.Pending, st.InFlight, st.Uploaded, st.Held, st.Failed, st.Conflict))
		switch {
		case !st.Enabled:
		case st.LastError != "":
			w.queueError("last upload: " + st.LastError)
		default:
			w.queueError("")
		}
		w.side.Refresh()
	})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
