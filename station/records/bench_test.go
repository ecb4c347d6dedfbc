package records_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
