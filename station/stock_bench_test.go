package station_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/station"
)

// BenchmarkStock measures a stock line (board.profile: stock, serial
// numbers from a sequence in the records) in symmetric-key mode at 115200
// baud, one fresh virtual stock board at a time through a tap, as
// BenchmarkBoard does: hash=true checks the files with the board's fs
// hash command, hash=false on a board without it, by reading them back.
// The metrics are BenchmarkBoard's (ms/board, floor-ms: the line bytes at
// the raw byte rate, of-floor: floor over wall time, the target ≥ 0.9;
// B/board, req/board).
//
// Run with: go test -run '^$' -bench Stock -benchtime 5x ./station
func BenchmarkStock(b *testing.B) {
	env := newBenchEnv(b)
	for _, hash := range []bool{true, false} {
		b.Run(fmt.Sprintf("mode=%s/hash=%v", station.ModeSymmetricKey, hash), func(b *testing.B) {
			ctx := context.Background()
			var wall time.Duration
			var lineBytes, requests int64
			b.StopTimer()
			for range b.N {
				brd, err := board.Start(board.Config{Serial: env.serial(), Profile: board.ProfileStock, NoFSHash: !hash,
					Dir: b.TempDir(), TPM: board.TPMNone, Baud: benchBaud, NoSync: true})
				if err != nil {
					b.Fatal(err)
				}
				tp := newBenchTap(b, brd.Path())
				st := env.stockStation(b, tp.path)
				b.StartTimer()
				start := time.Now()
				sum, err := st.Run(ctx, station.RunOptions{Once: true})
				wall += time.Since(start)
				b.StopTimer()
				if err != nil || sum.Passed != 1 {
					b.Fatalf("Run = %+v, %v", sum, err)
				}
				tp.Close()
				brd.Close()
				lineBytes += tp.up.Load() + tp.down.Load()
				requests += tp.requests.Load()
			}
			n := float64(b.N)
			floor := benchLineTime(lineBytes)
			b.ReportMetric(benchMS(wall)/n, "ms/board")
			b.ReportMetric(benchMS(floor)/n, "floor-ms")
			b.ReportMetric(floor.Seconds()/wall.Seconds(), "of-floor")
			b.ReportMetric(float64(lineBytes)/n, "B/board")
			b.ReportMetric(float64(requests)/n, "req/board")
		})
	}
}

// stockStation is a station of one stock slot in symmetric-key mode,
// its serial numbers from a sequence in the bench's records.
func (e *benchEnv) stockStation(b *testing.B, port string) *station.Station {
	b.Helper()
	var y strings.Builder
	y.WriteString("station: st-bench\nline: line-bench\nattestation: symmetric-key\nid_scope: 0ne0001A2B3\n")
	y.WriteString("symmetric_key:\n  group_id: line-bench-group\nslots:\n  - port: " + port + "\n")
	y.WriteString("board: {profile: stock, serial: {source: sequence, prefix: ZSB-}}\n")
	fmt.Fprintf(&y, "baud: %d\n", benchBaud)
	cfg, err := station.ParseConfig([]byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	st, err := station.New(cfg, station.Deps{Store: e.store, Template: e.tmpl, GroupKey: []byte("the bench group's primary key")})
	if err != nil {
		b.Fatal(err)
	}
	return st
}
