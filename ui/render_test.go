package ui

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"golang.org/x/crypto/bcrypt"

	"zerotouch/station"
	"zerotouch/station/records"
)

// fakeStation records what the window asks of it. The render tests need
// no boards: they feed the window the station's events themselves.
type fakeStation struct {
	mu      sync.Mutex
	retries []string
	skips   []string
	op, wo  string
	runs    int
	once    bool // Run returns at once, as a run with RunOptions.Once over no boards
}

func (f *fakeStation) Run(ctx context.Context, _ station.RunOptions) (station.Summary, error) {
	f.mu.Lock()
	f.runs++
	once := f.once
	f.mu.Unlock()
	if once {
		return station.Summary{}, nil
	}
	<-ctx.Done()
	return station.Summary{}, nil
}

func (f *fakeStation) Retry(slot string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retries = append(f.retries, slot)
	return nil
}

func (f *fakeStation) Skip(slot string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.skips = append(f.skips, slot)
	return nil
}

func (f *fakeStation) SetOperator(op, wo string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.op, f.wo = op, wo
}

type fakeUploads struct{ err error }

func (f *fakeUploads) Now()             {}
func (f *fakeUploads) LastError() error { return f.err }

const renderConfig = `station: st-7
line: line-b
attestation: x509-keygen
id_scope: 0ne0001A2B3
ca:
  dir: ca
slots:
  - port: /dev/ttyFIXTURE1
  - port: /dev/ttyFIXTURE2
gui:
  supervisor_password_hash: "%s"
`

// renderWindow makes a window over a fake station and a real, empty
// records store, on Fyne's test driver, at a fixed size and clock.
func renderWindow(t *testing.T, up Uploads) (*Window, *fakeStation) {
	t.Helper()
	return renderWindowWith(t, up, nil)
}

// renderWindowWith is renderWindow with the backend changed by set, when
// not nil, before the window is made.
func renderWindowWith(t *testing.T, up Uploads, set func(*Backend)) (*Window, *fakeStation) {
	t.Helper()
	test.NewTempApp(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("supervisor"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := station.ParseConfig([]byte(fmtConfig(string(hash))))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg.GUI.Labels = filepath.Join(dir, "labels")
	store, err := records.Open(context.Background(), filepath.Join(dir, "records.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	clock := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	fs := &fakeStation{}
	b := Backend{Station: fs, Config: cfg, Records: store, Uploads: up, Poll: time.Hour,
		Now: func() time.Time { clock = clock.Add(30 * time.Minute); return clock }}
	if set != nil {
		set(&b)
	}
	w := New(fyne.CurrentApp(), b)
	t.Cleanup(w.Close)
	w.Window().Resize(fyne.NewSize(1280, 720))
	waitUI(t, w, func() bool { return w.Queue.Text != "upload queue: -" }) // the first poll has shown
	return w, fs
}

func fmtConfig(hash string) string {
	return fmt.Sprintf(renderConfig, hash)
}

// waitUI waits until cond, read on Fyne's goroutine, holds.
func waitUI(t *testing.T, w *Window, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ok bool
		w.doAndWait(func() { ok = cond() })
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the window")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func event(slot, serial, step, result, msg string) station.Event {
	return station.Event{Time: time.Date(2026, 11, 23, 8, 1, 0, 0, time.UTC), Slot: slot, Port: "/dev/ttyFIXTURE" + slot[len(slot)-1:],
		Serial: serial, RegistrationID: "reg-" + serial, Step: step, Result: result, Message: msg}
}

// TestRender compares the window, in each state an operator meets, with
// its markup under testdata/.
func TestRender(t *testing.T) {
	tests := []struct {
		name   string
		up     Uploads
		events []station.Event
		after  func(w *Window)
	}{
		{name: "idle", up: &fakeUploads{}},
		{name: "running", up: &fakeUploads{}, events: []station.Event{
			event("slot-1", "ZT-0001", station.StepWrite, station.Running, ""),
			{Slot: "slot-1", Step: station.StepWrite, Progress: 0.5, Result: station.Running},
		}},
		{name: "pass", up: &fakeUploads{}, events: []station.Event{
			event("slot-1", "ZT-0001", station.StepConnect, station.Running, ""),
			func() station.Event {
				e := event("slot-1", "ZT-0001", station.StepRecord, station.Passed, "provisioned: take the board off the fixture")
				e.Label = "folder labels"
				return e
			}(),
		}},
		{name: "fail", up: &fakeUploads{}, events: []station.Event{
			event("slot-2", "ZT-0002", station.StepWrite, station.Running, ""),
			event("slot-2", "ZT-0002", station.StepWrite, station.Failed, "writing the configuration to the board failed: reseat the board and press Retry"),
		}},
		{name: "clone", up: &fakeUploads{}, events: []station.Event{
			func() station.Event {
				e := event("slot-1", "ZT-0009", station.StepRecord, station.Failed, "possible clone: this board's EK is recorded for board ZT-0001")
				e.Clone = true
				return e
			}(),
		}},
		{name: "upload-error", up: &fakeUploads{err: errors.New("DPS: 401 Unauthorized: the connection string's key is wrong")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _ := renderWindow(t, tt.up)
			for _, e := range tt.events {
				w.Event(e)
			}
			if tt.name == "pass" {
				waitUI(t, w, func() bool { return w.LabelText.Text != "no label yet" })
			}
			w.doAndWait(func() {
				test.AssertRendersToMarkup(t, tt.name+".xml", w.Window().Canvas())
			})
		})
	}
}

// TestBegin signs in and starts without the keyboard, as the demo does;
// when the run ends by itself, Start is offered again.
func TestBegin(t *testing.T) {
	w, fs := renderWindow(t, &fakeUploads{})
	fs.mu.Lock()
	fs.once = true
	fs.mu.Unlock()
	w.Begin("demo", "WO-DEMO")
	waitUI(t, w, func() bool { return !w.Start.Disabled() && w.Stop.Disabled() })
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.runs != 1 || fs.op != "demo" || fs.wo != "WO-DEMO" {
		t.Errorf("runs %d as %q, %q; want one run as demo, WO-DEMO", fs.runs, fs.op, fs.wo)
	}
	if !strings.Contains(w.SignedIn.Text, "demo") {
		t.Errorf("signed in: %q", w.SignedIn.Text)
	}
}

// TestRecordsSearchFails: a search the store cannot answer leaves the
// page shown as it was: Next then pages the shown search, with its own
// cursor, not the search that failed.
func TestRecordsSearchFails(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	fr := &fakeRecords{
		page: func(_ context.Context, f records.Filter, cursor string, size int) (records.Page, error) {
			mu.Lock()
			asked = append(asked, fmt.Sprintf("%q at %q", f.Search, cursor))
			mu.Unlock()
			if f.Search == "ZT-00" {
				return records.Page{}, errors.New("database is locked")
			}
			off := 0
			if cursor != "" {
				off = 50
			}
			var p records.Page
			for i := off; i < min(off+size, 120); i++ {
				p.Records = append(p.Records, records.Record{Serial: fmt.Sprintf("ZT-%04d", i+1), Result: records.ResultPassed})
			}
			if off == 0 {
				p.Next = "page 2"
			}
			return p, nil
		},
		audit: func(context.Context, string) ([]records.AuditEntry, error) { return nil, nil },
	}
	w, _ := renderWindowWith(t, &fakeUploads{}, func(b *Backend) { b.Records = fr })
	w.doAndWait(w.search)
	waitUI(t, w, func() bool { return w.PageText.Text == "records 1 to 50" })
	w.doAndWait(func() {
		w.Search.SetText("ZT-00")
		w.search()
	})
	waitUI(t, w, func() bool { return strings.Contains(w.Detail.Text, "cannot read the records") })
	w.doAndWait(func() {
		if w.Next.Disabled() {
			t.Fatal("after a failed search, Next no longer pages the records shown")
		}
		test.Tap(w.Next)
	})
	waitUI(t, w, func() bool { return w.PageText.Text != "reading the records..." })
	w.doAndWait(func() {
		first := ""
		if len(w.found) > 0 {
			first = w.found[0].Serial
		}
		if w.PageText.Text != "records 51 to 100" || first != "ZT-0051" {
			t.Errorf("Next after a failed search shows %q, from %q; want records 51 to 100, from ZT-0051", w.PageText.Text, first)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	want := []string{`"" at ""`, `"ZT-00" at ""`, `"" at "page 2"`}
	if strings.Join(asked, ", ") != strings.Join(want, ", ") {
		t.Errorf("the store was asked for %s; want %s", strings.Join(asked, ", "), strings.Join(want, ", "))
	}
}
