package records_test

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"zerotouch/station/records"
	"zerotouch/station/records/recordstest"
)

// BenchmarkSave saves new boards' records (tpm mode, each with its
// enrollment queued) into a store on the disk, WAL and synchronous=FULL,
// from one goroutine and from 16 at once, as a station's slots do. It
// reports:
//
//	saves/s      records saved a second
//	ms/save      the wall time of one Save, as its caller sees it
//	per-commit   saves per commit: how many writes each fsync served
//
// Run with: go test -run '^$' -bench Save ./station/records
func BenchmarkSave(b *testing.B) {
	for _, slots := range []int{1, 16} {
		b.Run(fmt.Sprintf("slots=%d", slots), func(b *testing.B) {
			s, _ := newTestStore(b)
			ctx := context.Background()
			var next atomic.Int64
			var busy atomic.Int64 // summed Save wall time, ns
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := range slots {
				wg.Go(func() {
					for {
						i := int(next.Add(1))
						if i > b.N {
							return
						}
						r := tpmRecord(fmt.Sprintf("SN-%d-%07d", w, i), i)
						t0 := time.Now()
						if _, err := s.Save(ctx, r); err != nil {
							b.Error(err)
							return
						}
						busy.Add(int64(time.Since(t0)))
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "saves/s")
			b.ReportMetric(float64(busy.Load())/float64(b.N)/1e6, "ms/save")
			b.ReportMetric(float64(b.N)/float64(s.Commits()), "per-commit")
		})
	}
}

var benchRecords = flag.Int("records", 1_000_000, "records in the database BenchmarkQuery reads")

// queryGoal is the time a query of the Records tab should take at the
// database: the first page, or a search's.
const queryGoal = 10 * time.Millisecond

// BenchmarkQuery builds a records database of -records records (one
// million by default) as a station leaves it after years, with
// recordstest.Build: boards of several stations, each with a serial
// number, a registration ID and a time (the build's time includes
// creating the schema). It then opens it read-only, as `zerotouch
// records` and the window do, and times what the Records tab asks for, a
// page of 50:
//
//	first-page         the newest records
//	next-page          the page after the first, by its cursor
//	serial-substring   a serial number's inside (a few hundred matches)
//	serial-prefix      a serial number's first characters, short
//	regid-prefix       a registration ID's first characters
//	dense-substring    a substring most records have
//	dense-old-substring a substring a tenth have, none of them recent
//	no-match           a substring no record has
//
// Each reports its time (ms/query) and that time over the goal of 10 ms
// (of-10ms: under 1 meets it), and the build its seconds (build-s).
//
// Run with: go test -run '^$' -bench Query ./station/records
func BenchmarkQuery(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "zerotouch.db")
	start := time.Now()
	if err := recordstest.Build(ctx, path, *benchRecords); err != nil {
		b.Fatal(err)
	}
	build := time.Since(start)
	ro, err := records.OpenReadOnly(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer ro.Close()
	first, err := ro.Page(ctx, records.Filter{}, "", 50)
	if err != nil || len(first.Records) != 50 || first.Next == "" {
		b.Fatalf("first page: %d records, %v", len(first.Records), err)
	}
	some := first.Records[17]
	serial := some.Serial[len(some.Serial)-5:] // "ZT03-0421737": "21737"
	cases := []struct {
		name   string
		f      records.Filter
		cursor string
		min    int // records the page must hold
	}{
		{"first-page", records.Filter{}, "", 50},
		{"next-page", records.Filter{}, first.Next, 50},
		{"serial-substring", records.Filter{Search: serial}, "", 1},
		{"serial-prefix", records.Filter{Search: "zt"}, "", 50},
		{"regid-prefix", records.Filter{Search: some.RegistrationID[:8]}, "", 1},
		{"dense-substring", records.Filter{Search: "zt0"}, "", 50},
		{"dense-old-substring", records.Filter{Search: "-00"}, "", 50},
		{"no-match", records.Filter{Search: "qqq"}, "", 0},
		{"newest-100", records.Filter{}, "", 100},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				p, err := ro.Page(ctx, c.f, c.cursor, max(50, c.min))
				if err != nil || len(p.Records) < c.min {
					b.Fatalf("Page(%+v) = %d records, %v; want at least %d", c.f, len(p.Records), err, c.min)
				}
			}
			per := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(per)/1e6, "ms/query")
			b.ReportMetric(float64(per)/float64(queryGoal), "of-10ms")
			b.ReportMetric(build.Seconds(), "build-s")
			b.ReportMetric(float64(*benchRecords), "records")
		})
	}
	benchStats(b, ro, first.Records[0].UpdatedAt, build)
}

// benchStats times the per-line stats of records stats over the whole
// database and over the newest record's day, as the goal of 10 ms at the
// database asks of every query the tools make.
func benchStats(b *testing.B, s interface {
	Stats(context.Context, time.Time) ([]records.StatsRow, error)
}, newest time.Time, build time.Duration) {
	for _, c := range []struct {
		name  string
		since time.Time
	}{{"stats-all", time.Time{}}, {"stats-today", newest}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				rows, err := s.Stats(context.Background(), c.since)
				if err != nil || len(rows) == 0 {
					b.Fatalf("Stats(since %v) = %d rows, %v", c.since, len(rows), err)
				}
			}
			per := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(per)/1e6, "ms/query")
			b.ReportMetric(float64(per)/float64(queryGoal), "of-10ms")
			b.ReportMetric(build.Seconds(), "build-s")
			b.ReportMetric(float64(*benchRecords), "records")
		})
	}
}
