package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/widget"
	"golang.org/x/crypto/bcrypt"

	"zerotouch/internal/atomicfile"
	"zerotouch/internal/textsafe"
	"zerotouch/labels"
	"zerotouch/station"
	"zerotouch/station/records"
)

// Colours of a slot's verdict: they must read from across the bench.
var (
	colourPass = color.NRGBA{R: 0x1b, G: 0x8a, B: 0x2f, A: 0xff}
	colourFail = color.NRGBA{R: 0xc6, G: 0x28, B: 0x28, A: 0xff}
	colourBusy = color.NRGBA{R: 0x15, G: 0x65, B: 0xc0, A: 0xff}
	colourIdle = color.NRGBA{R: 0x61, G: 0x61, B: 0x61, A: 0xff}
)

// verdictSize is the verdict's text size: legible from two metres.
const verdictSize = 56

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

	// The shift.
	Passed, Failed, Rate *widget.Label
	passed, failed       int
	shiftStart           time.Time

	Slots map[string]*SlotView
	order []string

	// The upload queue.
	Queue, QueueError *widget.Label
	UploadNow         *widget.Button

	// Records.
	Search  *widget.Entry
	Results *widget.List
	Detail  *widget.Label
	Export  *widget.Button
	found   []records.Record

	// Settings.
	Settings   *widget.Entry
	Password   *widget.Entry
	Unlock     *widget.Button
	Save       *widget.Button
	SettingsOK *widget.Label
	unlocked   bool

	// The last label made.
	Label     *canvas.Image
	LabelText *widget.Label

	side *fyne.Container // the upload queue and the label: laid out again as their texts change
	tabs *container.AppTabs

	stopPoll chan struct{}
	closed   sync.Once

	// mu serialises the window's updates. Fyne's own driver runs every
	// fyne.Do on its one goroutine; its test driver runs each where it is
	// called, and the window's updates must not overlap there either.
	mu sync.Mutex
}

// do updates the window from any goroutine, through fyne.Do.
func (w *Window) do(f func()) {
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

// SlotView is one slot's card.
type SlotView struct {
	Name                string
	Port, Serial, RegID *widget.Label
	Step                *widget.Label
	Progress            *widget.ProgressBar
	Verdict             *canvas.Text
	Message             *widget.Label
	Retry, Skip         *widget.Button
	clone               bool
	card                *fyne.Container
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
	w := &Window{b: b, Slots: map[string]*SlotView{}, stopPoll: make(chan struct{}), shiftStart: b.Now()}
	app.Settings().SetTheme(Theme(app.Settings().Theme()))
	w.win = app.NewWindow(fmt.Sprintf("zerotouch: %s, %s", b.Config.Station, b.Config.Line))
	w.win.SetContent(w.build())
	w.win.SetMainMenu(w.menu())
	w.win.Resize(fyne.NewSize(1280, 800))
	w.win.SetOnClosed(w.Close)
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
		l.SizeName = "headingText"
	}

	w.Queue = widget.NewLabel("upload queue: -")
	w.QueueError = widget.NewLabel("")
	w.QueueError.Wrapping = fyne.TextWrapWord
	w.UploadNow = widget.NewButton("Upload now (Alt+U)", w.uploadNow)
	if w.b.Uploads == nil {
		w.UploadNow.Disable()
		w.QueueError.SetText("no DPS connection string: enrollments are queued for zerotouch upload")
	}

	top := container.NewVBox(
		container.NewGridWithColumns(5, w.Operator, w.WorkOrder, w.SignIn, w.Start, w.Stop),
		container.NewGridWithColumns(4, w.SignedIn, w.Passed, w.Failed, w.Rate),
	)

	var cards []fyne.CanvasObject
	for _, sc := range w.b.Config.Slots {
		v := w.newSlot(sc)
		w.Slots[sc.Name] = v
		w.order = append(w.order, sc.Name)
		cards = append(cards, v.card)
	}
	cols := min(len(cards), 4)
	grid := container.NewGridWithColumns(max(cols, 1), cards...)

	w.Label = canvas.NewImageFromImage(image.NewGray(image.Rect(0, 0, 1, 1)))
	w.Label.FillMode = canvas.ImageFillContain
	w.Label.SetMinSize(fyne.NewSize(160, 160))
	w.LabelText = widget.NewLabel("no label yet")
	w.LabelText.Wrapping = fyne.TextWrapWord
	w.side = container.NewVBox(
		widget.NewLabelWithStyle("Upload queue", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		w.Queue, w.QueueError, w.UploadNow,
		widget.NewSeparator(),
		widget.NewLabelWithStyle("Last label", fyne.TextAlignLeading, fyne.TextStyle{Bold: true}),
		w.Label, w.LabelText,
	)
	line := container.NewBorder(top, nil, nil, container.NewGridWrap(fyne.NewSize(260, 600), w.side), container.NewVScroll(grid))

	w.tabs = container.NewAppTabs(
		container.NewTabItem("Line", line),
		container.NewTabItem("Records", w.buildRecords()),
		container.NewTabItem("Settings", w.buildSettings()),
	)
	return w.tabs
}

func (w *Window) newSlot(sc station.SlotConfig) *SlotView {
	v := &SlotView{Name: sc.Name}
	v.Port = widget.NewLabel(sc.Port)
	v.Port.Truncation = fyne.TextTruncateEllipsis
	v.Serial = widget.NewLabel("board: -")
	v.RegID = widget.NewLabel("registration ID: -")
	v.RegID.Truncation = fyne.TextTruncateEllipsis
	v.Step = widget.NewLabel("waiting for a board")
	v.Progress = widget.NewProgressBar()
	v.Verdict = canvas.NewText("IDLE", colourIdle)
	v.Verdict.TextSize = verdictSize
	v.Verdict.TextStyle.Bold = true
	v.Verdict.Alignment = fyne.TextAlignCenter
	v.Message = widget.NewLabel("")
	v.Message.Wrapping = fyne.TextWrapWord
	v.Retry = widget.NewButton("Retry (Alt+R)", func() { w.retry(v) })
	v.Skip = widget.NewButton("Skip (Alt+K)", func() { w.skip(v) })
	v.Retry.Hide()
	v.Skip.Hide()
	title := widget.NewLabelWithStyle(sc.Name, fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	v.card = container.NewVBox(container.NewBorder(nil, nil, title, nil, v.Port), v.Serial, v.RegID, v.Step, v.Progress, v.Verdict, v.Message,
		container.NewGridWithColumns(2, v.Retry, v.Skip), widget.NewSeparator())
	return v
}

// Event shows a station event. Safe to call from any goroutine: it is
// the station's Deps.Events (chained with whatever else wants events).
func (w *Window) Event(e station.Event) {
	w.do(func() { w.show(e) })
}

func (w *Window) show(e station.Event) {
	v := w.Slots[e.Slot]
	if v == nil {
		return
	}
	if e.Port != "" {
		v.Port.SetText(e.Port)
	}
	if e.Serial != "" {
		v.Serial.SetText("board: " + e.Serial)
	}
	if e.RegistrationID != "" {
		v.RegID.SetText("registration ID: " + e.RegistrationID)
	}
	switch e.Result {
	case station.Running:
		if e.Step == station.StepConnect && e.Progress == 0 {
			v.Serial.SetText("board: -")
			v.RegID.SetText("registration ID: -")
		}
		v.clone = false
		v.Step.SetText("step: " + e.Step)
		v.Progress.SetValue(e.Progress)
		w.verdict(v, "RUNNING", colourBusy)
		v.Message.SetText("")
		v.Retry.Hide()
		v.Skip.Hide()
	case station.Passed:
		v.Step.SetText("done")
		v.Progress.SetValue(1)
		w.verdict(v, "PASS", colourPass)
		v.Message.SetText(e.Message)
		v.Retry.Hide()
		v.Skip.Hide()
		w.passed++
		w.counters()
		w.makeLabel(e)
	case station.Failed:
		v.Step.SetText("failed at: " + e.Step)
		w.verdict(v, "FAIL", colourFail)
		v.clone = e.Clone
		msg := e.Message
		if e.Clone {
			msg = "POSSIBLE CLONE: set the board aside and call the supervisor. " + msg
		}
		v.Message.SetText(msg)
		v.Retry.Show()
		v.Skip.Show()
		w.lockRetry(v)
		w.failed++
		w.counters()
	case station.Skipped:
		v.Step.SetText("waiting for a board")
		v.Progress.SetValue(0)
		w.verdict(v, "SET ASIDE", colourIdle)
		v.Message.SetText(e.Message)
		v.Retry.Hide()
		v.Skip.Hide()
	}
	v.card.Refresh()
}

func (w *Window) verdict(v *SlotView, text string, c color.Color) {
	v.Verdict.Text = text
	v.Verdict.Color = c
	v.Verdict.Refresh()
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
	w.Passed.SetText(fmt.Sprintf("passed %d", w.passed))
	w.Failed.SetText(fmt.Sprintf("failed %d", w.failed))
	hours := w.b.Now().Sub(w.shiftStart).Hours()
	rate := 0.0
	if hours > 0 {
		rate = float64(w.passed) / hours
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
}

func (w *Window) skip(v *SlotView) {
	if err := w.b.Station.Skip(v.Name); err != nil {
		v.Message.SetText(actionError("Skip", err))
		return
	}
	v.Retry.Hide()
	v.Skip.Hide()
}

func actionError(what string, err error) string {
	if errors.Is(err, station.ErrNotWaiting) {
		return what + ": the board is no longer waiting (taken off, or the station stopped)"
	}
	return what + ": " + err.Error()
}

// makeLabel writes the passed board's label and shows it.
func (w *Window) makeLabel(e station.Event) {
	l := labels.Label{Serial: e.Serial, RegistrationID: e.RegistrationID, Time: e.Time}
	dir := w.b.Config.GUI.Labels
	go func() {
		pngPath, zplPath, err := labels.Write(dir, l)
		var img image.Image
		if err == nil {
			var data []byte
			if data, err = os.ReadFile(pngPath); err == nil {
				img, err = png.Decode(bytes.NewReader(data))
			}
		}
		w.do(func() {
			if err != nil {
				w.LabelText.SetText("label for " + e.Serial + " failed: " + err.Error())
				return
			}
			w.Label.Image = img
			w.Label.Refresh()
			w.LabelText.SetText(fmt.Sprintf("%s: %s and %s written to the labels folder", e.Serial, filepath.Base(pngPath), filepath.Base(zplPath)))
			w.side.Refresh()
		})
	}()
}

func (w *Window) uploadNow() {
	if w.b.Uploads == nil {
		return
	}
	w.b.Uploads.Now()
	w.QueueError.SetText("upload asked for")
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
		w.Queue.SetText(fmt.Sprintf("pending %d\nuploading %d\nuploaded %d\nfailed %d\nconflicts %d",
			st.Pending, st.InFlight, st.Uploaded, st.Failed, st.Conflict))
		switch {
		case !st.Enabled:
		case st.LastError != "":
			w.QueueError.SetText("last upload: " + st.LastError)
		default:
			w.QueueError.SetText("")
		}
		w.side.Refresh()
	})
}

func (w *Window) buildRecords() fyne.CanvasObject {
	w.Search = widget.NewEntry()
	w.Search.SetPlaceHolder("serial or registration ID (scan a label, or type; Enter)")
	w.Search.OnSubmitted = func(string) { w.search() }
	w.Detail = widget.NewLabel("")
	w.Detail.Wrapping = fyne.TextWrapBreak
	w.Results = widget.NewList(
		func() int { return len(w.found) },
		func() fyne.CanvasObject { return widget.NewLabel("") },
		func(i widget.ListItemID, o fyne.CanvasObject) {
			r := w.found[i]
			o.(*widget.Label).SetText(textsafe.Escape(fmt.Sprintf("%s  %s  %s  %s", r.Serial, r.ResultText(), orDash(r.UploadText()), r.RegistrationID)))
		})
	w.Results.OnSelected = func(i widget.ListItemID) { w.showRecord(w.found[i]) }
	w.Export = widget.NewButton("Export CSV", w.export)
	find := widget.NewButton("Search", w.search)
	bar := container.NewBorder(nil, nil, nil, container.NewHBox(find, w.Export), w.Search)
	split := container.NewHSplit(w.Results, container.NewVScroll(w.Detail))
	split.Offset = 0.4
	return container.NewBorder(bar, nil, nil, nil, split)
}

// query is the search text, or the serial number of a scanned label.
func (w *Window) query() string {
	q := strings.TrimSpace(w.Search.Text)
	if serial, _, err := labels.ParsePayload(q); err == nil {
		return serial
	}
	return q
}

// search lists the records whose serial or registration ID contains the
// search text; a scanned label searches its serial number.
func (w *Window) search() {
	q := w.query()
	list, err := w.b.Records.List(context.Background(), records.Filter{Search: q, Limit: 200})
	if err != nil {
		w.Detail.SetText("cannot read the records: " + err.Error())
		return
	}
	w.found = list
	w.Results.UnselectAll()
	w.Results.Refresh()
	switch len(list) {
	case 0:
		w.Detail.SetText("no record matches " + q)
	case 1:
		w.Results.Select(0)
	default:
		w.Detail.SetText(fmt.Sprintf("%d records match", len(list)))
	}
}

func (w *Window) showRecord(r records.Record) {
	var b strings.Builder
	fmt.Fprintf(&b, "Board %s (%s, hw %s, firmware %s)\n", textsafe.Escape(r.Serial), orDash(textsafe.Escape(r.Model)),
		orDash(textsafe.Escape(r.HW)), orDash(textsafe.Escape(r.Firmware)))
	fmt.Fprintf(&b, "Result: %s %s\n", r.ResultText(), textsafe.Escape(r.Message))
	fmt.Fprintf(&b, "Attestation: %s\nRegistration ID: %s\nDevice ID: %s\n", r.Attestation, orDash(r.RegistrationID), orDash(r.DeviceID))
	if r.EKFingerprint != "" {
		fmt.Fprintf(&b, "EK: %s (certificate: %s)\n", r.EKFingerprint, orDash(r.EKCertStatus))
	}
	if r.CertSerial != "" {
		fmt.Fprintf(&b, "Certificate: serial %s, valid until %s\n", r.CertSerial, r.CertNotAfter.Format(time.DateOnly))
	}
	fmt.Fprintf(&b, "Configuration: %s, sha256 %x\n", orDash(r.ConfigPath), r.ConfigSHA256)
	fmt.Fprintf(&b, "Enrollment: %s %s\n", orDash(r.UploadText()), r.UploadError)
	if reg := r.Registration; reg != nil {
		fmt.Fprintf(&b, "Registration with DPS: %s %s %s\n", reg.State, orDash(reg.AssignedHub), reg.Error)
	}
	fmt.Fprintf(&b, "Station %s, line %s, slot %s, operator %s, work order %s\n", orDash(r.Station), orDash(r.Line),
		orDash(r.Slot), orDash(r.Operator), orDash(r.WorkOrder))
	audit, err := w.b.Records.Audit(context.Background(), r.Serial)
	if err != nil {
		fmt.Fprintf(&b, "\nAudit trail: cannot read it: %v\n", err)
	} else {
		b.WriteString("\nAudit trail:\n")
		for _, a := range audit {
			fmt.Fprintf(&b, "%s  %s  %s %s\n", a.Time.Local().Format("2006-01-02 15:04:05"), a.Event, a.Detail, a.Operator)
		}
	}
	w.Detail.SetText(b.String())
}

// export writes the records the search found (all, when nothing was
// searched) as CSV beside the records database.
func (w *Window) export() {
	q := w.query()
	var buf bytes.Buffer
	if err := w.b.Records.Export(context.Background(), &buf, "csv", records.Filter{Search: q}); err != nil {
		w.Detail.SetText("export failed: " + err.Error())
		return
	}
	name := fmt.Sprintf("%s-export-%s.csv", strings.TrimSuffix(w.b.Config.Records, ".db"), w.b.Now().Format("20060102-150405"))
	if err := atomicfile.Write(name, buf.Bytes(), 0o600); err != nil {
		w.Detail.SetText("export failed: " + err.Error())
		return
	}
	w.Detail.SetText("exported to " + name + " (zerotouch upload --from takes it)")
}

func (w *Window) buildSettings() fyne.CanvasObject {
	text := "(no configuration file)"
	if w.b.ConfigFile != "" {
		if b, err := os.ReadFile(w.b.ConfigFile); err == nil {
			text = string(b)
		} else {
			text = "cannot read " + w.b.ConfigFile + ": " + err.Error()
		}
	}
	w.Settings = widget.NewMultiLineEntry()
	w.Settings.SetText(text)
	w.Settings.Disable()
	w.Password = widget.NewPasswordEntry()
	w.Password.SetPlaceHolder("supervisor password, Enter")
	w.Password.OnSubmitted = func(string) { w.unlock() }
	w.Unlock = widget.NewButton("Unlock", w.unlock)
	w.Save = widget.NewButton("Save (takes effect at the next start)", w.saveSettings)
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

func (w *Window) unlock() {
	if w.unlocked {
		w.unlocked = false
		w.Unlock.SetText("Unlock")
		w.Settings.Disable()
		w.Save.Disable()
		w.SettingsOK.SetText("locked again")
		w.relock()
		return
	}
	hash := w.b.Config.GUI.SupervisorPasswordHash
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(w.Password.Text))
	w.Password.SetText("")
	if hash == "" || err != nil {
		w.SettingsOK.SetText("wrong password")
		return
	}
	w.unlocked = true
	w.Unlock.SetText("Lock")
	w.Settings.Enable()
	if w.b.ConfigFile != "" {
		w.Save.Enable()
	}
	w.SettingsOK.SetText("unlocked by the supervisor: settings editable, a possible clone may be retried")
	w.relock()
}

// relock applies the lock state to the slots' Retry buttons.
func (w *Window) relock() {
	for _, name := range w.order {
		w.lockRetry(w.Slots[name])
	}
}

// saveSettings checks the edited configuration as the station would and
// writes it; the station reads it at its next start.
func (w *Window) saveSettings() {
	if !w.unlocked || w.b.ConfigFile == "" {
		return
	}
	if _, err := station.ParseConfig([]byte(w.Settings.Text)); err != nil {
		w.SettingsOK.SetText("not saved: " + err.Error())
		return
	}
	if err := atomicfile.Write(w.b.ConfigFile, []byte(w.Settings.Text), 0o600); err != nil {
		w.SettingsOK.SetText("not saved: " + err.Error())
		return
	}
	w.SettingsOK.SetText("saved to " + w.b.ConfigFile + ": restart zerotouch gui to use it")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
