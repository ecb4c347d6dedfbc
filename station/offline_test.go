package station_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/enroll"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/internal/pgtest"
	"zerotouch/station"
	"zerotouch/station/records"
)

// offlineLine is stations on a factory database of their own server,
// which the test stops and starts.
type offlineLine struct {
	srv *pgtest.Server
	l   *line // the CA; its store is unused

	mu     sync.Mutex
	events []station.Event
}

func newOfflineLine(t *testing.T) *offlineLine {
	t.Helper()
	srv, err := pgtest.Start(context.Background())
	if err != nil {
		t.Fatalf("pgtest.Start: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return &offlineLine{srv: srv, l: newLine(t)}
}

func (o *offlineLine) event(e station.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, e)
}

// offlineTexts are the Offline texts the events carried.
func (o *offlineLine) offlineTexts() map[string]bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := map[string]bool{}
	for _, e := range o.events {
		if e.Offline != "" {
			m[e.Offline] = true
		}
	}
	return m
}

// station is an x509-keygen station on store with the boards' ports and
// extra YAML; onEvent, when set, sees each event too.
func (o *offlineLine) station(t *testing.T, store station.Recorder, offline func() string, extra string, onEvent func(station.Event), boards ...*board.Board) *station.Station {
	t.Helper()
	var y strings.Builder
	y.WriteString("station: st-offline\nline: line-5\nattestation: x509-keygen\nid_scope: 0ne0001A2B3\nca:\n  dir: unused-here\nslots:\n")
	for _, b := range boards {
		y.WriteString("  - port: " + b.Path() + "\n")
	}
	y.WriteString("baud: 2000000\n" + extra)
	cfg, err := station.ParseConfig([]byte(y.String()))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := fwtemplates.Builtin("json")
	if err != nil {
		t.Fatal(err)
	}
	events := func(e station.Event) {
		o.event(e)
		if onEvent != nil {
			onEvent(e)
		}
	}
	st, err := station.New(cfg, station.Deps{Store: store, Template: tmpl, Issuer: o.l.issuer, Events: events, Offline: offline})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func startBoards(t *testing.T, prefix string, n int) []*board.Board {
	t.Helper()
	var bs []*board.Board
	for i := range n {
		bs = append(bs, startBoard(t, fmt.Sprintf("%s-%d", prefix, i), board.TPMNone))
	}
	return bs
}

func openBuffered(t *testing.T, u string, retry time.Duration) *records.Buffered {
	t.Helper()
	b, err := records.OpenBuffered(context.Background(), u, filepath.Join(t.TempDir(), "station.buffer.db"),
		records.BufferOptions{Timeout: 2 * time.Second, Retry: retry})
	if err != nil {
		t.Fatalf("OpenBuffered: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func runOnce(t *testing.T, st *station.Station, want int) {
	t.Helper()
	sum, err := st.Run(context.Background(), station.RunOptions{Once: true})
	if err != nil || sum.Passed != want || sum.Failed != 0 {
		t.Fatalf("Run = %+v, %v; want %d passed", sum, err, want)
	}
}

// TestLineKeepsPassingBoardsWhileTheFactoryDatabaseIsDown stops the
// factory's PostgreSQL (pg_ctl stop -m immediate) while four slots are
// provisioning, runs four more boards with it down, starts it again and
// waits for the buffer to forward: every board recorded once, passed,
// its enrollment queued once.
func TestLineKeepsPassingBoardsWhileTheFactoryDatabaseIsDown(t *testing.T) {
	ctx := context.Background()
	o := newOfflineLine(t)
	u, err := o.srv.CreateDB(ctx, "offline")
	if err != nil {
		t.Fatal(err)
	}
	buf := openBuffered(t, u, 100*time.Millisecond)

	first := startBoards(t, "ZT-OFF-A", 4)
	var stop sync.Once
	stopped := make(chan error, 1)
	stopMidRun := func(e station.Event) {
		if e.Step == station.StepCertificate {
			stop.Do(func() { go func() { stopped <- o.srv.Stop(pgtest.Immediate) }() })
		}
	}
	start := time.Now()
	runOnce(t, o.station(t, buf, buf.OfflineText, "", stopMidRun, first...), 4)
	t.Logf("4 boards, the database stopped mid-run: %v", time.Since(start))
	if err := <-stopped; err != nil {
		t.Fatalf("stop PostgreSQL: %v", err)
	}
	second := startBoards(t, "ZT-OFF-B", 4)
	start = time.Now()
	runOnce(t, o.station(t, buf, buf.OfflineText, "", nil, second...), 4)
	t.Logf("4 boards, the database down: %v", time.Since(start))

	n, _, off := buf.Offline()
	if !off || n == 0 {
		t.Fatalf("Offline() with the database down = %d, %v; want boards buffered, offline", n, off)
	}
	texts := o.offlineTexts()
	if !texts[records.OfflineText(n)] {
		t.Errorf("events' offline texts %v, want %q", texts, records.OfflineText(n))
	}

	if err := o.srv.Start(); err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	start = time.Now()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, _, off := buf.Offline(); !off {
			break
		}
		if time.Now().After(deadline) {
			n, _, _ := buf.Offline()
			t.Fatalf("the buffer still holds %d boards two minutes after the database returned", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("forwarded %d boards %v after the database started", n, time.Since(start))

	pg, err := records.OpenPostgres(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	all, err := pg.List(ctx, records.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 8 {
		t.Fatalf("the factory database holds %d records, want 8", len(all))
	}
	for _, r := range all {
		if r.Result != records.ResultPassed || r.UploadState != enroll.StatePending {
			t.Errorf("record %s: result %q upload %q, want passed and pending", r.Serial, r.Result, r.UploadState)
		}
		es, err := pg.Audit(ctx, r.Serial)
		if err != nil {
			t.Fatal(err)
		}
		created := 0
		for _, e := range es {
			if e.Event == records.EventCreated {
				created++
			}
		}
		if created != 1 {
			t.Errorf("record %s created %d times, want once", r.Serial, created)
		}
	}
	claimed, err := pg.Claim(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, e := range claimed {
		ids[e.RegistrationID]++
	}
	if len(claimed) != 8 || len(ids) != 8 {
		t.Errorf("the factory queue gave %d enrollments for %d registration IDs, want 8 of 8", len(claimed), len(ids))
	}
}

// TestCloneRecordedElsewhereDuringTheOutageIsFlagged: a board this
// station buffers while the database is down, and another station
// records its registration ID once the database is back and before the
// buffer forwards: the buffered board is recorded failed as a suspected
// clone, its enrollment held.
func TestCloneRecordedElsewhereDuringTheOutageIsFlagged(t *testing.T) {
	ctx := context.Background()
	o := newOfflineLine(t)
	u, err := o.srv.CreateDB(ctx, "clone")
	if err != nil {
		t.Fatal(err)
	}
	buf := openBuffered(t, u, time.Hour) // forwards when the test says
	const sameID = "registration_id: zt-same-id\n"
	if err := o.srv.Stop(pgtest.Immediate); err != nil {
		t.Fatal(err)
	}
	mine := startBoards(t, "ZT-MINE", 1)
	runOnce(t, o.station(t, buf, buf.OfflineText, sameID, nil, mine...), 1)
	if err := o.srv.Start(); err != nil {
		t.Fatal(err)
	}
	other, err := records.OpenPostgres(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	theirs := startBoards(t, "ZT-THEIRS", 1)
	runOnce(t, o.station(t, other, nil, sameID, nil, theirs...), 1)

	if _, err := buf.Forward(ctx); err != nil {
		t.Fatalf("Forward: %v", err)
	}
	r, err := other.Get(ctx, "ZT-MINE-0")
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != records.ResultFailed || r.FailedStep != records.StepForward || r.Enrollment != nil || !strings.Contains(r.Message, "ZT-THEIRS-0") {
		t.Errorf("ZT-MINE-0: result %q step %q enrollment %v message %q; want failed at forward, no enrollment, naming ZT-THEIRS-0",
			r.Result, r.FailedStep, r.Enrollment, r.Message)
	}
	es, err := other.Audit(ctx, "ZT-MINE-0")
	if err != nil {
		t.Fatal(err)
	}
	flagged := false
	for _, e := range es {
		flagged = flagged || e.Event == records.EventForwardConflict
	}
	if !flagged {
		t.Errorf("audit of ZT-MINE-0 %+v, want %q", es, records.EventForwardConflict)
	}
	c, err := other.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c[enroll.StatePending] != 1 {
		t.Errorf("factory queue %v, want one pending enrollment: ZT-THEIRS-0's, ZT-MINE-0's held", c)
	}
	if cs, err := buf.Conflicts(ctx); err != nil || len(cs) != 1 || cs[0].Serial != "ZT-MINE-0" {
		t.Errorf("Conflicts() = %v, %v; want ZT-MINE-0", cs, err)
	}
}

// TestVerifyNotMadeWhileOffline: a line that checks each board's
// registration at the end cannot while the factory database is offline
// (the enrollment reaches DPS only once the buffered record is
// forwarded): the board passes at once, and its event says the check was
// not made and why, rather than wait out verify_registration.timeout and
// fail.
func TestVerifyNotMadeWhileOffline(t *testing.T) {
	o := &offlineLine{l: newLine(t)}
	store, err := records.Open(context.Background(), filepath.Join(t.TempDir(), "records.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	offline := func() string { return records.OfflineText(1) }
	// Were the check made, it would fail: no DPS is there to register with.
	st := o.station(t, store, offline, "verify_registration: {enabled: true, timeout: 2s}\n", nil, startBoards(t, "ZT-VOFF", 1)...)
	runOnce(t, st, 1)
	o.mu.Lock()
	defer o.mu.Unlock()
	last := o.events[len(o.events)-1]
	if last.Result != station.Passed || !strings.Contains(last.Message, "registration with DPS not checked (the factory database is offline)") {
		t.Errorf("last event %+v; want passed, saying the registration was not checked and why", last)
	}
}
