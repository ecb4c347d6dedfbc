package ui

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"zerotouch/station"
	"zerotouch/station/records"
	"zerotouch/station/records/recordstest"
)

// pagedRecords is a fakeRecords over n records, paged by offset.
func pagedRecords(n int) *fakeRecords {
	all := make([]records.Record, n)
	for i := range all {
		all[i] = records.Record{Serial: fmt.Sprintf("ZT-%04d", i+1), Result: records.ResultPassed}
	}
	return &fakeRecords{
		page: func(_ context.Context, f records.Filter, cursor string, size int) (records.Page, error) {
			var sel []records.Record
			for _, r := range all {
				if strings.Contains(r.Serial, f.Search) {
					sel = append(sel, r)
				}
			}
			off := 0
			if cursor != "" {
				var err error
				if off, err = strconv.Atoi(cursor); err != nil {
					return records.Page{}, err
				}
			}
			end := min(off+size, len(sel))
			p := records.Page{Records: sel[off:end]}
			if end < len(sel) {
				p.Next = strconv.Itoa(end)
			}
			return p, nil
		},
		audit: func(context.Context, string) ([]records.AuditEntry, error) { return nil, nil },
	}
}

// TestRecordsPages: Next and Previous walk the records a page at a time.
func TestRecordsPages(t *testing.T) {
	w, _ := renderWindowWith(t, &fakeUploads{}, func(b *Backend) { b.Records = pagedRecords(120) })
	page := func(want string) {
		t.Helper()
		waitUI(t, w, func() bool { return w.PageText.Text == want })
	}
	shortcut(t, w, KeyFind)
	key(w, fyne.KeyReturn)
	page("records 1 to 50")
	w.doAndWait(func() { test.Tap(w.Next) })
	page("records 51 to 100")
	w.doAndWait(func() { test.Tap(w.Next) })
	page("records 101 to 120")
	w.doAndWait(func() {
		if !w.Next.Disabled() || w.Previous.Disabled() {
			t.Error("on the last page Next should be disabled and Previous enabled")
		}
		if w.found[0].Serial != "ZT-0101" {
			t.Errorf("the last page begins with %s; want ZT-0101", w.found[0].Serial)
		}
		test.Tap(w.Previous)
	})
	page("records 51 to 100")
	w.doAndWait(func() {
		w.Search.SetText("ZT-011")
		test.Tap(w.Next) // answered after the search below: dropped
		w.search()
	})
	page("records 1 to 10")
}

// TestRecordsDoNotBlock: while the store is slow to answer a search, the
// window's calls return and the window still takes the operator's keys.
func TestRecordsDoNotBlock(t *testing.T) {
	fr := pagedRecords(3)
	asked := make(chan records.Filter, 1)
	release := make(chan struct{})
	page := fr.page
	fr.page = func(ctx context.Context, f records.Filter, cursor string, size int) (records.Page, error) {
		asked <- f
		<-release
		return page(ctx, f, cursor, size)
	}
	w, _ := renderWindowWith(t, &fakeUploads{}, func(b *Backend) { b.Records = fr })
	shortcut(t, w, KeyFind)
	typeKeys(w, "ZT")
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		key(w, fyne.KeyReturn)
	}()
	if f := <-asked; f.Search != "ZT" {
		t.Errorf("searched for %q; want ZT", f.Search)
	}
	select {
	case <-returned:
	case <-time.After(30 * time.Second):
		close(release)
		t.Fatal("the window's goroutine waits for the records store")
	}
	w.doAndWait(func() {
		test.Type(w.Operator, "ana")
		if w.Operator.Text != "ana" || !strings.Contains(w.PageText.Text, "reading") {
			t.Errorf("while the store is slow: operator %q, records %q", w.Operator.Text, w.PageText.Text)
		}
	})
	close(release)
	waitUI(t, w, func() bool { return w.PageText.Text == "records 1 to 3" })
}

// TestExport writes the per-board enrollments, and no file when there is
// none (the boards enroll through a group), saying so.
func TestExport(t *testing.T) {
	for _, tt := range []struct {
		name  string
		mode  string
		n     int
		want  string
		files int
	}{
		{"per-board", station.ModeX509Keygen, 2, "exported 2 enrollments to", 1},
		{"group", station.ModeSymmetricKey, 0, "enroll through the DPS enrollment group", 0},
		{"none passed", station.ModeX509Keygen, 0, "no passed board", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fr := pagedRecords(0)
			fr.export = func(context.Context, records.Filter) ([]byte, int, error) {
				if tt.n == 0 {
					return nil, 0, nil
				}
				return []byte("registrationId\na\nb\n"), tt.n, nil
			}
			w, _ := renderWindowWith(t, &fakeUploads{}, func(b *Backend) {
				c := *b.Config
				c.Attestation, c.Records = tt.mode, filepath.Join(dir, "records.db")
				b.Config, b.Records = &c, fr
			})
			w.doAndWait(func() { test.Tap(w.Export) })
			waitUI(t, w, func() bool { return !w.Export.Disabled() && !strings.Contains(w.Detail.Text, "exporting") })
			w.doAndWait(func() {
				if !strings.Contains(w.Detail.Text, tt.want) {
					t.Errorf("after Export: %q; want %q", w.Detail.Text, tt.want)
				}
				if tt.n == 0 && strings.Contains(w.Detail.Text, "upload --from") {
					t.Errorf("after an empty export: %q offers a file to upload", w.Detail.Text)
				}
			})
			files, _ := filepath.Glob(filepath.Join(dir, "records-export-*.csv"))
			if len(files) != tt.files {
				t.Errorf("export files %v; want %d", files, tt.files)
			}
			for _, f := range files {
				if b, _ := os.ReadFile(f); string(b) != "registrationId\na\nb\n" {
					t.Errorf("%s: %q", f, b)
				}
			}
		})
	}
}

// TestRecordText: a failed record shows the operator's words and the
// engineer's cause and step.
func TestRecordText(t *testing.T) {
	r := records.Record{Serial: "ZT-1", Result: records.ResultFailed, Message: "reseat the board and press Retry",
		Cause: "upload /lfs/zerotouch/config at offset 0 of 348: fs.file: board error 10", FailedStep: "write"}
	got := recordText(&r)
	for _, want := range []string{"Result: failed reseat the board and press Retry", "Failed at step write: upload /lfs/zerotouch/config"} {
		if !strings.Contains(got, want) {
			t.Errorf("recordText = %q, want %q in it", got, want)
		}
	}
}

// printingStation is a fakeStation that prints labels again.
type printingStation struct {
	*fakeStation
	printed chan string
	err     error
}

func (p *printingStation) PrintLabel(_ context.Context, r *records.Record) (string, error) {
	p.printed <- r.Serial
	return "ZPL printer 10.0.0.5:9100", p.err
}

// TestPrintLabelAgain: a passed board's record prints its label again
// through the station, off Fyne's goroutine, and says where it went or
// that it did not; a board that has not passed offers no label.
func TestPrintLabelAgain(t *testing.T) {
	ps := &printingStation{fakeStation: &fakeStation{}, printed: make(chan string, 1)}
	recs := pagedRecords(2)
	page := recs.page
	recs.page = func(ctx context.Context, f records.Filter, cursor string, size int) (records.Page, error) {
		p, err := page(ctx, f, cursor, size)
		if len(p.Records) > 1 {
			p.Records[1].Result = records.ResultFailed
		}
		return p, err
	}
	w, _ := renderWindowWith(t, &fakeUploads{}, func(b *Backend) { b.Station, b.Records = ps, recs })
	shortcut(t, w, KeyFind)
	key(w, fyne.KeyReturn)
	waitUI(t, w, func() bool { return len(w.found) == 2 })
	w.doAndWait(func() { w.Results.Select(1) })
	w.doAndWait(func() {
		if !w.PrintLabel.Disabled() {
			t.Error("Print label is offered for a board that failed")
		}
		w.Results.Select(0)
	})
	w.doAndWait(func() {
		if w.PrintLabel.Disabled() {
			t.Fatal("Print label is not offered for a passed board")
		}
		test.Tap(w.PrintLabel)
	})
	if got := <-ps.printed; got != "ZT-0001" {
		t.Errorf("printed the label of %s, want ZT-0001", got)
	}
	waitUI(t, w, func() bool { return strings.Contains(w.PageText.Text, "printed to ZPL printer 10.0.0.5:9100") })

	ps.err = fmt.Errorf("label for board %q: ZPL printer 10.0.0.5:9100: connect: connection refused", "ZT-0001")
	w.doAndWait(func() { test.Tap(w.PrintLabel) })
	<-ps.printed
	waitUI(t, w, func() bool { return strings.Contains(w.PageText.Text, "NOT printed") })
}

// watchedRecords is a real records store as the window sees it, with a
// watch on the window: each Page and Audit holds its answer until the
// operator's action that asked has returned and a call on the window's
// goroutine, made when the query began, has run. A window that waited
// for the store would never see the answer: after a minute the query
// fails, saying so, instead. It keeps each query's time at the database.
type watchedRecords struct {
	Records
	w *Window // set before the first action

	mu       sync.Mutex
	returned chan struct{} // closed when the current action has returned
	took     []string      // each query's time at the database, since the last step
	longest  time.Duration // the longest wait of a call on the window's goroutine
}

func (r *watchedRecords) Page(ctx context.Context, f records.Filter, cursor string, size int) (records.Page, error) {
	var p records.Page
	what := fmt.Sprintf("page %q", f.Search)
	if cursor != "" {
		what += " after a cursor"
	}
	err := r.watch(what, func() (err error) {
		p, err = r.Records.Page(ctx, f, cursor, size)
		return err
	})
	return p, err
}

func (r *watchedRecords) Audit(ctx context.Context, key string) ([]records.AuditEntry, error) {
	var a []records.AuditEntry
	err := r.watch("audit of "+key, func() (err error) {
		a, err = r.Records.Audit(ctx, key)
		return err
	})
	return a, err
}

// watch runs query, meanwhile a call on the window's goroutine, and
// returns query's error once the call has run and the current action has
// returned.
func (r *watchedRecords) watch(what string, query func() error) error {
	r.mu.Lock()
	returned := r.returned
	r.mu.Unlock()
	ran := make(chan struct{})
	go func() {
		start := time.Now()
		r.w.doAndWait(func() {})
		r.mu.Lock()
		r.longest = max(r.longest, time.Since(start))
		r.mu.Unlock()
		close(ran)
	}()
	start := time.Now()
	err := query()
	took := time.Since(start)
	guard := time.NewTimer(time.Minute)
	defer guard.Stop()
	for _, c := range []chan struct{}{returned, ran} {
		select {
		case <-c:
		case <-guard.C:
			return fmt.Errorf("%s: the store answered in %v, but a minute later the window's goroutine had not run: it waits for the store", what, took)
		}
	}
	r.mu.Lock()
	r.took = append(r.took, fmt.Sprintf("%s %.2f ms", what, float64(took)/1e6))
	r.mu.Unlock()
	return err
}

// step does what the operator does, action, on a goroutine of its own
// (the window's calls it makes must return while the store works), and
// waits until the window shows what shown recognises. It returns how long
// that took, and the queries' times at the database.
func (r *watchedRecords) step(t *testing.T, action func(), shown func() bool) (time.Duration, []string) {
	t.Helper()
	returned := make(chan struct{})
	r.mu.Lock()
	r.returned, r.took = returned, nil
	r.mu.Unlock()
	start := time.Now()
	go func() {
		defer close(returned)
		action()
	}()
	guard := time.Now().Add(2 * time.Minute) // a hung window, not a slow one
	for {
		var ok bool
		var detail string
		r.w.doAndWait(func() { ok, detail = shown(), r.w.Detail.Text })
		if ok {
			break
		}
		if strings.Contains(detail, "cannot read the records") || time.Now().After(guard) {
			t.Fatalf("the window does not show the answer: %q", detail)
		}
		time.Sleep(time.Millisecond)
	}
	took := time.Since(start)
	<-returned
	r.mu.Lock()
	defer r.mu.Unlock()
	return took, r.took
}

// serials are the serial numbers of the window's list.
func serials(w *Window) []string {
	var s []string
	for _, r := range w.found {
		s = append(s, r.Serial)
	}
	return s
}

// generated are the serial numbers of recordstest's boards n down to 1
// that keep says to, skipping the first skip of them and listing up to
// size.
func generated(n, skip, size int, keep func(string) bool) []string {
	var s []string
	for i := n; i >= 1 && len(s) < size; i-- {
		if serial := recordstest.Serial(i); keep(serial) {
			if skip > 0 {
				skip--
				continue
			}
			s = append(s, serial)
		}
	}
	return s
}

// TestRecordsMillion drives the Records tab from the keyboard over a real
// store of 1,000,000 records (recordstest.Build): Alt+F and Enter list
// the newest records and Next the page after them; a typed search and
// Enter list the records whose serial number contains it, newest first,
// and Next the page after; a serial number typed in lower case finds its
// one board and its audit trail; the start of a registration ID finds its
// board. Each answer is the right one, and reaches the window only once
// the window has been seen free while the store worked (watchedRecords).
// It logs the build's time and each step's time as the window sees it
// (from the key to the answer shown) and at the database.
func TestRecordsMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a records database of 1,000,000 records")
	}
	const n = 1_000_000
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "records.db")
	start := time.Now()
	if err := recordstest.Build(ctx, path, n); err != nil {
		t.Fatal(err)
	}
	t.Logf("built %d records in %.1f s", n, time.Since(start).Seconds())
	store, err := records.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	wr := &watchedRecords{Records: store, returned: make(chan struct{})}
	close(wr.returned)
	w, _ := renderWindowWith(t, &fakeUploads{}, func(b *Backend) { b.Records = wr })
	wr.w = w

	all := func(string) bool { return true }
	page := func(text string, want []string) func() bool {
		return func() bool { return w.PageText.Text == text && slices.Equal(serials(w), want) }
	}
	report := func(what string, took time.Duration, db []string) {
		t.Logf("%-44s window %6.2f ms; database: %s", what, float64(took)/1e6, strings.Join(db, ", "))
	}
	shortcut(t, w, KeyFind)
	w.doAndWait(func() {
		if w.Window().Canvas().Focused() != w.Search {
			t.Fatal("Alt+F does not put the focus on the search")
		}
	})
	newest := generated(n, 0, PageSize, all)
	took, db := wr.step(t, func() { key(w, fyne.KeyReturn) }, page("records 1 to 50", newest))
	report("Enter: the newest records", took, db)
	var some records.Record // a record of the first page, for its registration ID
	w.doAndWait(func() { some = w.found[17] })

	tabTo(t, w, w.Next)
	took, db = wr.step(t, func() { key(w, fyne.KeySpace) }, page("records 51 to 100", generated(n, PageSize, PageSize, all)))
	report("Next", took, db)

	const q = "-0999" // the boards 999000 to 999999
	in := func(s string) bool { return strings.Contains(s, q) }
	shortcut(t, w, KeyFind)
	typeKeys(w, q)
	took, db = wr.step(t, func() { key(w, fyne.KeyReturn) }, page("records 1 to 50", generated(n, 0, PageSize, in)))
	report("search "+q+", Enter", took, db)
	w.doAndWait(func() {
		if want := "records matching " + q; !strings.Contains(w.Detail.Text, want) {
			t.Errorf("after the search: %q; want %q", w.Detail.Text, want)
		}
	})
	tabTo(t, w, w.Next)
	took, db = wr.step(t, func() { key(w, fyne.KeySpace) }, page("records 51 to 100", generated(n, PageSize, PageSize, in)))
	report("search "+q+", Next", took, db)

	// A serial number typed in lower case: its board, shown with its
	// audit trail (none: the generated boards have no audit rows).
	one := recordstest.Serial(421737)
	shortcut(t, w, KeyFind)
	for range len(q) {
		key(w, fyne.KeyBackspace)
	}
	typeKeys(w, strings.ToLower(one))
	took, db = wr.step(t, func() { key(w, fyne.KeyReturn) }, func() bool {
		return w.PageText.Text == "records 1 to 1" && slices.Equal(serials(w), []string{one}) &&
			strings.HasPrefix(w.Detail.Text, "Board "+one) && strings.HasSuffix(w.Detail.Text, "\nAudit trail:\n")
	})
	report("search "+strings.ToLower(one)+", Enter", took, db)

	// The start of a registration ID: its board, and any other whose
	// registration ID begins with it or serial number contains it.
	prefix := some.RegistrationID[:8]
	shortcut(t, w, KeyFind)
	for range len(one) {
		key(w, fyne.KeyBackspace)
	}
	typeKeys(w, prefix)
	took, db = wr.step(t, func() { key(w, fyne.KeyReturn) }, func() bool {
		return strings.HasPrefix(w.PageText.Text, "records 1 to ") && slices.Contains(serials(w), some.Serial)
	})
	report("search "+prefix+", Enter", took, db)
	w.doAndWait(func() {
		for _, r := range w.found {
			if !strings.HasPrefix(r.RegistrationID, prefix) && !strings.Contains(strings.ToLower(r.Serial), prefix) {
				t.Errorf("search %s finds %s, registration ID %s", prefix, r.Serial, r.RegistrationID)
			}
		}
	})
	wr.mu.Lock()
	t.Logf("the longest wait of a call on the window's goroutine while the store worked: %.2f ms", float64(wr.longest)/1e6)
	wr.mu.Unlock()
}
