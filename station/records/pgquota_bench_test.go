package records_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
	"zerotouch/internal/pgtest"
	"zerotouch/station/records"
)

// BenchmarkUploadShared drains one queue in PostgreSQL with four
// uploaders, each with its own store and DPS client, that share the DPS
// emulator's quota of Q operations a minute through the database
// (PGQuota at Q × the default share, 0.97). The physical limit is 10·Q
// enrollments a minute (bulk requests of 10, one operation each); of-10Q
// is the fraction the four reach together, throttled the share of their
// requests answered 429. Each iteration queues 3,000 enrollments: 18
// seconds' worth at Q = 1,000 (DPS's documented quota), 3 at 6,000.
//
// At 6,000 the four reach what the queue's round trips allow rather than
// the quota: each batch is one Claim and one Settle transaction of about
// twenty statements, and on a busy machine of two cores that caps them
// at 35 to 60 requests a second, paced or not (100 would be the limit).
//
// Run with: go test -run '^$' -bench UploadShared -benchtime 1x ./station/records
func BenchmarkUploadShared(b *testing.B) {
	const uploaders, share = 4, 0.97
	for _, q := range []int{1000, 6000} {
		b.Run(fmt.Sprintf("quota=%d", q), func(b *testing.B) {
			ctx := context.Background()
			srv, err := emulator.Start(ctx, "127.0.0.1:0", filepath.Join(b.TempDir(), "dps"), emulator.Options{Quota: q, Synchronous: "NORMAL"})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			cs, err := enroll.ParseConnectionString(srv.ConnectionString)
			if err != nil {
				b.Fatal(err)
			}
			const n = 3000
			var enrollments, requests, throttled int
			var minutes float64
			iter := 0
			for b.Loop() {
				b.StopTimer()
				u := pgtest.New(b)
				fill, err := records.OpenPostgres(ctx, u)
				if err != nil {
					b.Fatal(err)
				}
				if err := saveQueued(ctx, fill, fmt.Sprintf("it%d-", iter), iter*n, n); err != nil {
					b.Fatal(err)
				}
				fill.Close()
				iter++
				ups := make([]*enroll.Uploader, uploaders)
				for i := range ups {
					s, err := records.OpenPostgres(ctx, u)
					if err != nil {
						b.Fatal(err)
					}
					defer s.Close()
					pace, _, err := s.SharedQuota(ctx, cs.HostName, float64(q)*share)
					if err != nil {
						b.Fatal(err)
					}
					client, err := enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: srv.CAFile})
					if err != nil {
						b.Fatal(err)
					}
					if ups[i], err = enroll.NewUploader(enroll.UploaderConfig{Client: client, Queue: s, Quota: q, Pacer: pace}); err != nil {
						b.Fatal(err)
					}
				}
				stats := make([]enroll.Stats, uploaders)
				errs := make([]error, uploaders)
				var wg sync.WaitGroup
				b.StartTimer()
				start := time.Now()
				for i, up := range ups {
					wg.Go(func() { stats[i], errs[i] = up.Run(ctx) })
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				uploaded := 0
				for i := range stats {
					if errs[i] != nil {
						b.Fatalf("uploader %d: %+v, %v", i, stats[i], errs[i])
					}
					uploaded += stats[i].Uploaded
					requests += stats[i].Requests
					throttled += stats[i].Throttled
				}
				if uploaded != n {
					b.Fatalf("the uploaders uploaded %d together, want %d", uploaded, n)
				}
				enrollments += uploaded
				minutes += elapsed.Minutes()
				b.StartTimer()
			}
			rate := float64(enrollments) / minutes
			b.ReportMetric(rate, "enrollments/min")
			b.ReportMetric(rate/float64(10*q), "of-10Q")
			b.ReportMetric(float64(throttled)/float64(requests), "throttled")
			b.ReportMetric(float64(requests)/float64(b.N), "requests/op")
			b.ReportMetric(uploaders, "uploaders")
		})
	}
}

// saveQueued saves n passed boards, serials prefix and a number, their
// enrollments queued; the EKs are fakeEK(first+i).
func saveQueued(ctx context.Context, s *records.PGStore, prefix string, first, n int) error {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if _, err := s.Save(ctx, tpmRecord(fmt.Sprintf("%s%06d", prefix, i), first+i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}
