package ui

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"zerotouch/station"
	"zerotouch/station/records"
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
