package enroll_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
)

// BenchmarkUploadDPS uploads enrollments to an emulator whose quota is Q
// operations a minute, with the uploader told that quota and its default
// share. The physical limit is 10·Q enrollments a minute (bulk requests
// of 10, one operation each); of-10Q is the fraction reached, throttled
// the share of requests answered 429. Each iteration uploads about ten
// seconds' worth at that limit.
func BenchmarkUploadDPS(b *testing.B) {
	for _, q := range []int{1000, 6000} {
		b.Run(fmt.Sprintf("quota=%d", q), func(b *testing.B) {
			ctx := context.Background()
			srv, _ := newEmulator(b, emulator.Options{Quota: q})
			client := newClient(b, srv, enroll.Config{})
			n := q * 10 / 6
			var enrollments, requests, throttled int
			var minutes float64
			iter := 0
			for b.Loop() {
				b.StopTimer()
				es := make([]enroll.Enrollment, n)
				for i := range es {
					es[i] = tpm(fmt.Sprintf("b%d-%06d", iter, i), iter*n+i)
				}
				iter++
				state, err := enroll.OpenStateFile(ctx, filepath.Join(b.TempDir(), "state.db"))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := state.Add(ctx, es); err != nil {
					b.Fatal(err)
				}
				up, err := enroll.NewUploader(enroll.UploaderConfig{Client: client, Queue: state, Quota: q})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				stats, err := up.Run(ctx)
				b.StopTimer()
				state.Close()
				if err != nil || stats.Uploaded != n {
					b.Fatalf("Run = %+v, %v; want %d uploaded", stats, err, n)
				}
				enrollments += stats.Uploaded
				requests += stats.Requests
				throttled += stats.Throttled
				minutes += stats.Elapsed.Minutes()
				b.StartTimer()
			}
			rate := float64(enrollments) / minutes
			b.ReportMetric(rate, "enrollments/min")
			b.ReportMetric(rate/float64(10*q), "of-10Q")
			b.ReportMetric(float64(throttled)/float64(requests), "throttled")
			b.ReportMetric(float64(requests)/float64(b.N), "requests/op")
		})
	}
}
