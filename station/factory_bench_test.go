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
	"zerotouch/internal/pgtest"
	"zerotouch/station"
	"zerotouch/station/records"
)

// BenchmarkFactory holds a factory's stations on one PostgreSQL against
// stations on SQLite files of their own: 4 stations of 8 slots, each with
// its own connection to the factory database, provision fresh boards at
// 115200 baud in x509-keygen mode at once, and their boards an hour are
// held against those of 4 such stations each on its own SQLite file, and
// of one alone:
//
//	boards/h       the stations' boards an hour together
//	of-4x-sqlite   postgres-4x8's boards/h over sqlite-4x8's: what the
//	               shared database costs; the goal is ≥ 0.9
//	of-4x-alone    postgres-4x8's over 4 × sqlite-1x8's. The 4 stations
//	               and their 32 virtual boards share this machine's
//	               cores, where a factory's stations are PCs of their
//	               own, so this one measures the machine as much as the
//	               database.
//
// Run with: go test -run '^$' -bench Factory -benchtime 2x ./station
func BenchmarkFactory(b *testing.B) {
	env := newBenchEnv(b)
	const stations, slots = 4, 8
	run := func(b *testing.B, stores []records.DB) time.Duration {
		b.Helper()
		sts := make([]*station.Station, len(stores))
		var all []*board.Board
		for i, store := range stores {
			ports := make([]string, slots)
			for j := range ports {
				brd := env.board(b, env.serial(), board.TPMNone)
				all = append(all, brd)
				ports[j] = brd.Path()
			}
			sts[i] = factoryStation(b, env, store, fmt.Sprintf("st-%d", i+1), ports)
		}
		start := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, len(sts))
		passed := make([]int, len(sts))
		for i, st := range sts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sum, err := st.Run(context.Background(), station.RunOptions{Once: true})
				errs[i], passed[i] = err, sum.Passed
			}()
		}
		wg.Wait()
		wall := time.Since(start)
		for i := range sts {
			if errs[i] != nil || passed[i] != slots {
				b.Fatalf("station %d: %d of %d passed, %v", i+1, passed[i], slots, errs[i])
			}
		}
		for _, brd := range all {
			brd.Close()
		}
		return wall
	}

	var one float64 // boards/h of one SQLite station
	b.Run("sqlite-1x8", func(b *testing.B) {
		var wall time.Duration
		for range b.N {
			wall += run(b, []records.DB{env.store})
		}
		one = float64(slots*b.N) / wall.Hours()
		b.ReportMetric(one, "boards/h")
	})
	var four float64 // boards/h of 4 stations, each on a SQLite file of its own
	b.Run("sqlite-4x8", func(b *testing.B) {
		stores := make([]records.DB, stations)
		for i := range stores {
			s, err := records.Open(context.Background(), filepath.Join(b.TempDir(), "records.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			stores[i] = s
		}
		var wall time.Duration
		for range b.N {
			wall += run(b, stores)
		}
		four = float64(stations*slots*b.N) / wall.Hours()
		b.ReportMetric(four, "boards/h")
	})
	b.Run("postgres-4x8", func(b *testing.B) {
		u := pgtest.New(b)
		stores := make([]records.DB, stations)
		for i := range stores {
			s, err := records.OpenPostgres(context.Background(), u)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			stores[i] = s
		}
		var wall time.Duration
		for range b.N {
			wall += run(b, stores)
		}
		perHour := float64(stations*slots*b.N) / wall.Hours()
		b.ReportMetric(perHour, "boards/h")
		if four > 0 {
			b.ReportMetric(perHour/four, "of-4x-sqlite")
		}
		if one > 0 {
			b.ReportMetric(perHour/(stations*one), "of-4x-alone")
		}
	})
}

// factoryStation is a station of the bench's line with its own store.
func factoryStation(b *testing.B, env *benchEnv, store records.DB, name string, ports []string) *station.Station {
	b.Helper()
	var y strings.Builder
	y.WriteString("station: " + name + "\nline: line-bench\nattestation: x509-keygen\nid_scope: 0ne0001A2B3\nca:\n  dir: unused-here\nslots:\n")
	for _, p := range ports {
		y.WriteString("  - port: " + p + "\n")
	}
	fmt.Fprintf(&y, "baud: %d\n", benchBaud)
	cfg, err := station.ParseConfig([]byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	st, err := station.New(cfg, station.Deps{Store: store, Template: env.tmpl, Issuer: env.issuer})
	if err != nil {
		b.Fatal(err)
	}
	return st
}
