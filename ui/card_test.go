package ui

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/theme"

	"zerotouch/enroll"
	"zerotouch/station"
	"zerotouch/station/records"
)

// TestCardDetails: the card's first line is the operator's; Details (the
// button or Alt+D) shows the engineer's cause, the step, the time taken
// and the attempt.
func TestCardDetails(t *testing.T) {
	w, _ := renderWindow(t, &fakeUploads{})
	msg := "writing the configuration to the board failed: reseat the board and press Retry"
	e := event("slot-2", "ZT-0002", station.StepWrite, station.Failed, msg)
	e.Error = "upload /lfs/zerotouch/config at offset 0 of 348: on D: fs.file: board error 10 of group 8"
	e.Attempt, e.Elapsed = 2, 12.5
	w.Event(e)
	v := w.Slots["slot-2"]
	w.doAndWait(func() {
		if v.Message.Text != msg {
			t.Errorf("the card's message %q; want the operator's words %q", v.Message.Text, msg)
		}
		if v.Details.Visible() {
			t.Error("the details show before they are asked for")
		}
	})
	shortcut(t, w, KeyDetails)
	w.doAndWait(func() {
		if !v.Details.Visible() {
			t.Fatal("Alt+D does not show the failed board's details")
		}
		for _, want := range []string{"cause: " + e.Error, "step write", "after 12.5 s", "attempt 2", "/dev/ttyFIXTURE2"} {
			if !strings.Contains(v.Details.Text, want) {
				t.Errorf("details %q lack %q", v.Details.Text, want)
			}
		}
		test.Tap(v.Info)
		if v.Details.Visible() {
			t.Error("Details, tapped again, does not hide them")
		}
		test.Tap(v.Info)
		if !v.Details.Visible() {
			t.Error("Details, tapped, does not show them")
		}
	})

	// The next board's run starts afresh.
	w.Event(event("slot-2", "", station.StepConnect, station.Running, ""))
	w.doAndWait(func() {
		if strings.Contains(v.Details.Text, "cause") || v.Serial != "" || !strings.Contains(v.Header.String(), "no board") {
			t.Errorf("a new run shows the last board's: %q, %q", v.Header.String(), v.Details.Text)
		}
	})
}

// TestCounters counts boards, not runs, from the events the station
// sends: Attempt 0 until the board says its serial, then 1, 2, ... for
// the same board on the slot. A failure before the serial is pending on
// its slot until the slot's next result takes its place.
func TestCounters(t *testing.T) {
	ev := func(slot, serial, result string, attempt int) station.Event {
		e := event(slot, serial, station.StepWrite, result, "")
		e.Attempt = attempt
		return e
	}
	tests := []struct {
		name           string
		events         []station.Event
		passed, failed int
	}{
		{"retried then passed", []station.Event{ev("slot-1", "A", station.Failed, 1), ev("slot-1", "A", station.Passed, 2)}, 1, 0},
		{"failed twice", []station.Event{ev("slot-1", "A", station.Failed, 1), ev("slot-1", "A", station.Failed, 2)}, 0, 1},
		{"dropped at identity, reseated, passed", []station.Event{ev("slot-1", "", station.Failed, 0), ev("slot-1", "A", station.Passed, 1)}, 1, 0},
		{"dropped at identity, reseated, failed named", []station.Event{ev("slot-1", "", station.Failed, 0), ev("slot-1", "A", station.Failed, 1)}, 0, 1},
		{"failed unnamed twice", []station.Event{ev("slot-1", "", station.Failed, 0), ev("slot-1", "", station.Failed, 0)}, 0, 1},
		{"unnamed on two slots", []station.Event{ev("slot-1", "", station.Failed, 0), ev("slot-2", "", station.Failed, 0)}, 0, 2},
		{"unnamed on one slot, passed on the other", []station.Event{ev("slot-1", "", station.Failed, 0), ev("slot-2", "B", station.Passed, 1)}, 1, 1},
		{"passed, then unnamed fail, then the next board passed", []station.Event{
			ev("slot-1", "A", station.Passed, 1), ev("slot-1", "", station.Failed, 0), ev("slot-1", "B", station.Passed, 1)}, 2, 0},
		{"named fail, unnamed fail, named pass", []station.Event{
			ev("slot-1", "A", station.Failed, 1), ev("slot-1", "", station.Failed, 0), ev("slot-1", "A", station.Passed, 2)}, 1, 0},
		{"unnamed fail pending", []station.Event{ev("slot-1", "A", station.Failed, 1), ev("slot-1", "", station.Failed, 0)}, 0, 2},
		{"one of each", []station.Event{ev("slot-1", "A", station.Passed, 1), ev("slot-2", "B", station.Failed, 1)}, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _ := renderWindow(t, &fakeUploads{})
			for _, e := range tt.events {
				w.Event(e)
			}
			w.doAndWait(func() {
				want := []string{fmt.Sprintf("passed %d", tt.passed), fmt.Sprintf("failed %d", tt.failed)}
				if got := []string{w.Passed.Text, w.Failed.Text}; got[0] != want[0] || got[1] != want[1] {
					t.Errorf("counters %q; want %q", got, want)
				}
			})
		})
	}
}

// TestEmptyAfterFailure: a slot found empty after its board failed (the
// board was taken off) offers no Retry or Skip and no longer waits for
// the operator; a possible clone's flag goes with the board.
func TestEmptyAfterFailure(t *testing.T) {
	w, _ := renderWindow(t, &fakeUploads{})
	e := event("slot-1", "ZT-0009", station.StepRecord, station.Failed, "possible clone: this board's EK is recorded for board ZT-0001")
	e.Clone = true
	w.Event(e)
	v := w.Slots["slot-1"]
	w.doAndWait(func() {
		if !v.Retry.Visible() || !v.clone || !strings.Contains(w.Attention.Text, "slot-1") {
			t.Fatalf("a failed clone: Retry shown %v, clone %v, attention %q", v.Retry.Visible(), v.clone, w.Attention.Text)
		}
	})
	empty := event("slot-1", "", "", station.Empty, "no board answers on this slot: seat the board and check its cable")
	empty.Reason = station.EmptySilent
	w.Event(empty)
	w.doAndWait(func() {
		if v.Verdict.Text != "EMPTY" {
			t.Errorf("verdict %q; want EMPTY", v.Verdict.Text)
		}
		if v.Retry.Visible() || v.Skip.Visible() {
			t.Errorf("an empty slot offers Retry (%v) or Skip (%v)", v.Retry.Visible(), v.Skip.Visible())
		}
		if v.clone {
			t.Error("an empty slot is still flagged a possible clone")
		}
		if w.Attention.Text != "" {
			t.Errorf("attention %q; want nothing waiting", w.Attention.Text)
		}
	})
}

// fakeRecords is a records store of function fields; an unset one panics.
type fakeRecords struct {
	counts map[enroll.State]int
	page   func(ctx context.Context, f records.Filter, cursor string, size int) (records.Page, error)
	audit  func(ctx context.Context, key string) ([]records.AuditEntry, error)
	export func(ctx context.Context, f records.Filter) ([]byte, int, error)
}

func (f *fakeRecords) Counts(context.Context) (map[enroll.State]int, error) { return f.counts, nil }

func (f *fakeRecords) Page(ctx context.Context, fl records.Filter, cursor string, size int) (records.Page, error) {
	return f.page(ctx, fl, cursor, size)
}

func (f *fakeRecords) Audit(ctx context.Context, key string) ([]records.AuditEntry, error) {
	return f.audit(ctx, key)
}

func (f *fakeRecords) Export(ctx context.Context, w io.Writer, _ string, fl records.Filter) (int, error) {
	b, n, err := f.export(ctx, fl)
	if err == nil {
		_, err = w.Write(b)
	}
	return n, err
}

// TestUploadHeld: the upload panel counts held enrollments.
func TestUploadHeld(t *testing.T) {
	fr := &fakeRecords{counts: map[enroll.State]int{enroll.StatePending: 1, records.StateHeld: 3}}
	w, _ := renderWindowWith(t, &fakeUploads{}, func(b *Backend) { b.Records = fr })
	w.refreshUploads()
	w.doAndWait(func() {
		if !strings.Contains(w.Queue.Text, "held 3") || !strings.Contains(w.Queue.Text, "pending 1") {
			t.Errorf("upload panel %q; want pending 1 and held 3", w.Queue.Text)
		}
	})
}

// TestFits: at 1280×720 the window's content asks for no more than the
// screen (the window never grows itself), whatever the cards say, and the
// sign-in placeholders show whole.
func TestFits(t *testing.T) {
	w, _ := renderWindow(t, &fakeUploads{err: fmt.Errorf("DPS: %s", strings.Repeat("a very long upload error ", 20))})
	long := strings.Repeat("a long message for the operator that must wrap and never widen the window ", 5)
	e := event("slot-1", "ZT-"+strings.Repeat("9", 60), station.StepWrite, station.Failed, long)
	e.Error = strings.Repeat("cause ", 100)
	w.Event(e)
	shortcut(t, w, KeyDetails)
	w.refreshUploads()
	w.doAndWait(func() {
		if min := w.Window().Content().MinSize(); min.Width > 1280 || min.Height > 720 {
			t.Errorf("the window's content asks for %v: more than 1280×720", min)
		}
		for _, e := range []*struct {
			name string
			size fyne.Size
			text string
		}{{"operator", w.Operator.Size(), w.Operator.PlaceHolder}, {"work order", w.WorkOrder.Size(), w.WorkOrder.PlaceHolder}} {
			need := fyne.MeasureText(e.text, theme.TextSize(), fyne.TextStyle{}).Width + 4*theme.InnerPadding()
			if e.size.Width < need {
				t.Errorf("the %s field is %v wide at 1280×720: its placeholder needs %v", e.name, e.size.Width, need)
			}
		}
	})
}

// TestSixteenSlots: 16 slots at 1920×1080 sit in at least six columns,
// whatever the cards show: a failure's details, shown, do not reflow
// them, and the last card is reachable by scrolling, there and at
// 1280×720 where the rows do not fit the height.
func TestSixteenSlots(t *testing.T) {
	w, _ := renderWindowWith(t, &fakeUploads{}, func(b *Backend) {
		c := *b.Config
		c.Slots = nil
		for i := range 16 {
			c.Slots = append(c.Slots, station.SlotConfig{Name: fmt.Sprintf("slot-%d", i+1), Port: fmt.Sprintf("/dev/ttyUSB%d", i)})
		}
		b.Config = &c
	})
	// columns counts the cards on the first row, as laid out.
	columns := func() int {
		cards := w.grid.Objects
		n := 0
		for n < len(cards) && cards[n].Position().Y == cards[0].Position().Y {
			n++
		}
		return n
	}
	// reachable checks that, scrolled to the bottom, the last card shows
	// whole in the scroll's view.
	reachable := func(when string) {
		t.Helper()
		w.slots.ScrollToBottom()
		last := w.grid.Objects[len(w.grid.Objects)-1]
		top := last.Position().Y - w.slots.Offset.Y
		bottom := top + last.Size().Height
		view := w.slots.Size().Height
		if last.Size().Height <= 0 || top < 0 || bottom > view {
			t.Errorf("%s: scrolled to the bottom, the last card spans %v to %v of a view %v high: want it whole in view", when, top, bottom, view)
		}
		if end := last.Position().Y + last.Size().Height; end > w.grid.Size().Height {
			t.Errorf("%s: the last card ends at %v, below the scrolled grid's %v", when, end, w.grid.Size().Height)
		}
		w.slots.ScrollToTop()
	}
	var before int
	w.doAndWait(func() {
		w.Window().Resize(fyne.NewSize(1920, 1080))
		before = columns()
		if before < 6 {
			t.Errorf("at 1920×1080, %d columns; want at least six", before)
		}
		reachable("at 1920×1080")
	})

	e := event("slot-3", "ZT-0003", station.StepWrite, station.Failed, "writing the configuration to the board failed: reseat the board and press Retry")
	e.Error = strings.Repeat("a long cause ", 30)
	w.Event(e)
	shortcut(t, w, KeyDetails)
	w.doAndWait(func() {
		if !w.Slots["slot-3"].Details.Visible() {
			t.Fatal("Alt+D does not show the failed board's details")
		}
		if after := columns(); after != before {
			t.Errorf("a failure's details, shown, change the columns from %d to %d", before, after)
		}
		reachable("with a failure's details shown")

		// Where the rows do not fit the height, the grid scrolls to them.
		w.Window().Resize(fyne.NewSize(1280, 720))
		reachable("at 1280×720")
	})
}

// TestEventQueue: events wait for Fyne's goroutine without blocking the
// station; a slot's progress replaces its progress still waiting, and
// results are all kept, in order.
func TestEventQueue(t *testing.T) {
	w, _ := renderWindow(t, &fakeUploads{})
	w.events.mu.Lock()
	w.events.scheduled = true // as if Fyne's goroutine were busy drawing
	w.events.mu.Unlock()
	run := func(slot string, p float64) station.Event {
		e := event(slot, "ZT-"+slot, station.StepWrite, station.Running, "")
		e.Progress = p
		return e
	}
	for _, e := range []station.Event{
		run("slot-1", 0.1), run("slot-2", 0.1), run("slot-1", 0.2), run("slot-1", 0.3),
		event("slot-1", "ZT-slot-1", station.StepWrite, station.Failed, "failed"),
		run("slot-2", 0.9),
	} {
		w.Event(e)
	}
	w.events.mu.Lock()
	var got []string
	for _, e := range w.events.q {
		got = append(got, fmt.Sprintf("%s %s %.1f", e.Slot, e.Result, e.Progress))
	}
	w.events.mu.Unlock()
	want := []string{"slot-1 running 0.3", "slot-2 running 0.9", "slot-1 failed 0.0"}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("queued %q; want %q", got, want)
	}
	w.doAndWait(w.showEvents)
	w.doAndWait(func() {
		if v := w.Slots["slot-1"]; v.Verdict.Text != "FAIL" || w.Failed.Text != "failed 1" {
			t.Errorf("slot-1 after the queue: %s, %s", v.Verdict.Text, w.Failed.Text)
		}
		if p := w.Slots["slot-2"].Progress.Value; p != 0.9 {
			t.Errorf("slot-2's progress %v; want the last, 0.9", p)
		}
	})
}

// TestOfflineLine: the header says the factory database is offline while
// the station's events say so, beside the slots waiting, and no longer
// once it is back.
func TestOfflineLine(t *testing.T) {
	w, _ := renderWindow(t, &fakeUploads{})
	const off = "factory database offline: 2 boards buffered"
	w.Event(station.Event{Schema: station.EventSchema, Step: station.StepRecords, Result: station.Running, Offline: off})
	w.doAndWait(func() {
		if w.Attention.Text != off {
			t.Errorf("attention %q; want %q", w.Attention.Text, off)
		}
	})
	e := event("slot-1", "ZT-0009", station.StepRecord, station.Failed, "the board stopped answering")
	e.Offline = off
	w.Event(e)
	w.doAndWait(func() {
		if !strings.HasPrefix(w.Attention.Text, off+"; ") || !strings.Contains(w.Attention.Text, "slot-1") {
			t.Errorf("attention %q; want the offline line and slot-1 waiting", w.Attention.Text)
		}
	})
	w.Event(station.Event{Schema: station.EventSchema, Step: station.StepRecords, Result: station.Running, Message: "factory database back"})
	w.doAndWait(func() {
		if strings.Contains(w.Attention.Text, "offline") {
			t.Errorf("attention %q after the database is back; want no offline line", w.Attention.Text)
		}
	})
}
