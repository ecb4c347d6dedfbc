package records_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"zerotouch/internal/pgtest"
	"zerotouch/station/records"
	"zerotouch/station/records/recordstest"
)

// BenchmarkPGSave is BenchmarkSave on PostgreSQL (the test server: fsync
// off, so it measures the store and the round trips, not the disk).
//
// Run with: go test -run '^$' -bench PGSave ./station/records
func BenchmarkPGSave(b *testing.B) {
	for _, slots := range []int{1, 16} {
		b.Run(fmt.Sprintf("slots=%d", slots), func(b *testing.B) {
			s, err := records.OpenPostgres(context.Background(), pgtest.New(b))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			var next atomic.Int64
			var busy atomic.Int64
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
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "saves/s")
			b.ReportMetric(float64(busy.Load())/float64(b.N)/1e6, "ms/save")
		})
	}
}

// pgFill adds n records to the records database at u in one statement,
// as recordstest.Build does to a SQLite file: serial numbers
// recordstest.Serial(i), times recordstest.Time(i), one in fifty failed.
func pgFill(ctx context.Context, u string, n int) error {
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	// One statement of n rows: the yield trigger, made for a board a
	// transaction, would update one row of daily_yield n times over in it;
	// the table is counted once instead, as its migration does.
	if _, err := conn.Exec(ctx, `ALTER TABLE records DISABLE TRIGGER records_yield_insert`); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `INSERT INTO records (serial, model, attestation, registration_id, station, slot, operator, result, message,
		enrollment, upload_state, created_at, updated_at)
		SELECT 'ZT' || lpad((n % $2)::text, 2, '0') || '-' || lpad(n::text, 7, '0'), 'zt-1', 'tpm', md5(random()::text || n), 'st-1', '1', 'ana',
			CASE WHEN n % 50 = 0 THEN 'failed' ELSE 'passed' END, CASE WHEN n % 50 = 0 THEN 'no answer' ELSE '' END,
			CASE WHEN n % 50 = 0 THEN NULL ELSE '{}' END, CASE WHEN n % 50 = 0 THEN '' ELSE 'uploaded' END,
			$3::timestamptz + n * interval '100 milliseconds', $3::timestamptz + n * interval '100 milliseconds'
		FROM generate_series(1, $1) n`, n, recordstest.Stations, recordstest.Time(0)); err != nil {
		return fmt.Errorf("fill %d records: %w", n, err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO daily_yield (day, line, station, work_order, result, boards)
		SELECT (updated_at AT TIME ZONE 'UTC')::date, line, station, work_order, result, count(*) FROM records GROUP BY 1, 2, 3, 4, 5`); err != nil {
		return fmt.Errorf("count the yield of %d records: %w", n, err)
	}
	if _, err := conn.Exec(ctx, `ALTER TABLE records ENABLE TRIGGER records_yield_insert`); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, `ANALYZE records`)
	return err
}

// BenchmarkPGQuery is BenchmarkQuery on PostgreSQL: the same -records
// records (one million by default), the same pages and searches.
//
// Run with: go test -run '^$' -bench PGQuery ./station/records
func BenchmarkPGQuery(b *testing.B) {
	ctx := context.Background()
	u := pgtest.New(b)
	s, err := records.OpenPostgres(ctx, u)
	if err != nil {
		b.Fatal(err)
	}
	s.Close()
	start := time.Now()
	if err := pgFill(ctx, u, *benchRecords); err != nil {
		b.Fatal(err)
	}
	build := time.Since(start)
	ro, err := records.OpenPostgresReadOnly(ctx, u)
	if err != nil {
		b.Fatal(err)
	}
	defer ro.Close()
	first, err := ro.Page(ctx, records.Filter{}, "", 50)
	if err != nil || len(first.Records) != 50 || first.Next == "" {
		b.Fatalf("first page: %d records, %v", len(first.Records), err)
	}
	some := first.Records[17]
	serial := some.Serial[len(some.Serial)-5:]
	cases := []struct {
		name   string
		f      records.Filter
		cursor string
		min    int
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
		{"failed", records.Filter{Result: records.ResultFailed}, "", 50},
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
