package ui

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"zerotouch/board"
	"zerotouch/ca"
	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/station"
	"zerotouch/station/records"
)

// uploads runs a real enroll.Uploader on each Now, one run at a time.
type uploads struct {
	u    *enroll.Uploader
	mu   sync.Mutex
	err  error
	wg   sync.WaitGroup
	busy sync.Mutex
}

func (u *uploads) Now() {
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		u.busy.Lock()
		defer u.busy.Unlock()
		_, err := u.u.Run(context.Background())
		u.mu.Lock()
		u.err = err
		u.mu.Unlock()
	}()
}

func (u *uploads) LastError() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.err
}

// TestDrive taps the window's buttons as an operator does, over a real
// station with two virtual boards (x509-keygen), a records database, a
// CA and the DPS emulator: Sign in, Start; one board passes, the other's
// flash corrupts the write and it fails; Retry passes it; Upload now puts
// both enrollments in DPS.
func TestDrive(t *testing.T) {
	test.NewTempApp(t)
	ctx := context.Background()
	dir := t.TempDir()
	store, err := records.Open(ctx, filepath.Join(dir, "records.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	issuer, err := ca.Init(ctx, filepath.Join(dir, "ca"), ca.InitOptions{Password: []byte("test password")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { issuer.Close() })
	dps, err := emulator.Start(ctx, "127.0.0.1:0", filepath.Join(dir, "dps"), emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dps.Close() })
	cs, _ := enroll.ParseConnectionString(dps.ConnectionString)
	client, err := enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: dps.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	u, err := enroll.NewUploader(enroll.UploaderConfig{Client: client, Queue: store})
	if err != nil {
		t.Fatal(err)
	}
	up := &uploads{u: u}

	var boards []*board.Board
	var y strings.Builder
	y.WriteString("station: st-gui\nline: line-gui\nattestation: x509-keygen\nid_scope: 0ne0001A2B3\nca:\n  dir: unused\nbaud: 2000000\nslots:\n")
	for i := range 2 {
		b, err := board.Start(board.Config{Serial: fmt.Sprintf("ZT-GUI-%d", i+1), Dir: t.TempDir(), TPM: board.TPMNone, Baud: 2_000_000})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		boards = append(boards, b)
		fmt.Fprintf(&y, "  - port: %s\n", b.Path())
	}
	boards[1].SetFaults(board.Faults{CorruptWrite: 1})
	cfg, err := station.ParseConfig([]byte(y.String()))
	if err != nil {
		t.Fatal(err)
	}
	cfg.GUI.Labels = filepath.Join(dir, "labels")
	tmpl, err := fwtemplates.Builtin("json")
	if err != nil {
		t.Fatal(err)
	}
	var w *Window
	st, err := station.New(cfg, station.Deps{Store: store, Template: tmpl, Issuer: issuer,
		Events: func(e station.Event) { w.Event(e) }})
	if err != nil {
		t.Fatal(err)
	}
	w = New(fyne.CurrentApp(), Backend{Station: st, Config: cfg, Records: store, Uploads: up})
	t.Cleanup(func() {
		w.Close()
		up.wg.Wait()
	})

	w.doAndWait(func() {
		test.Tap(w.Start) // disabled until someone signs in
		test.Type(w.Operator, "ana")
		test.Type(w.WorkOrder, "wo-77")
		test.Tap(w.SignIn)
		test.Tap(w.Start)
	})
	waitUI(t, w, func() bool {
		return w.Slots["slot-1"].Verdict.Text == "PASS" && w.Slots["slot-2"].Verdict.Text == "FAIL"
	})
	var msg string
	w.doAndWait(func() {
		msg = w.Slots["slot-2"].Message.Text
		test.Tap(w.Slots["slot-2"].Retry)
	})
	if !strings.Contains(msg, "not what was written") {
		t.Errorf("slot-2's message %q; want the verify step's", msg)
	}
	waitUI(t, w, func() bool { return w.Slots["slot-2"].Verdict.Text == "PASS" })
	for _, b := range boards {
		r, err := store.Get(ctx, b.Serial())
		if err != nil || r.Result != records.ResultPassed || r.Operator != "ana" || r.WorkOrder != "wo-77" {
			t.Errorf("record of %s: %+v, %v; want passed, by ana on wo-77", b.Serial(), r, err)
		}
	}
	waitUI(t, w, func() bool { return w.Passed.Text == "passed 2" && w.Failed.Text == "failed 0" })

	w.doAndWait(func() { test.Tap(w.UploadNow) })
	up.wg.Wait()
	w.refreshUploads()
	waitUI(t, w, func() bool { return strings.Contains(w.Queue.Text, "uploaded 2") })
	for _, b := range boards {
		r, _ := store.Get(ctx, b.Serial())
		if _, err := client.Get(ctx, r.RegistrationID); err != nil {
			t.Errorf("enrollment of %s in DPS: %v", b.Serial(), err)
		}
	}

	// The records tab finds a board by a scanned label.
	w.doAndWait(func() {
		test.Type(w.Search, "ZT1:sn=ZT-GUI-2&rid=x")
		w.Search.TypedKey(&fyne.KeyEvent{Name: fyne.KeyReturn})
	})
	waitUI(t, w, func() bool {
		return strings.Contains(w.Detail.Text, "Board ZT-GUI-2") && strings.Contains(w.Detail.Text, "Audit trail")
	})

	w.doAndWait(func() { test.Tap(w.Stop) })
	waitUI(t, w, func() bool { return !w.Start.Disabled() })
}

// Once the window is closed, updates from the station's goroutines are
// dropped: Fyne's loop may have ended with the window, and a late update
// would run off its goroutine.
func TestNoUpdateAfterClose(t *testing.T) {
	w, _ := renderWindowWith(t, &fakeUploads{}, nil)
	w.doAndWait(func() { test.Tap(w.Start) })
	w.Close()
	ran := false
	w.do(func() { ran = true })
	w.doAndWait(func() {}) // anything queued before has run
	if ran {
		t.Error("an update ran after Close")
	}
}
