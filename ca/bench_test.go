package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"zerotouch/ca"
)

// BenchmarkIssue measures certificates issued per second for P-256 device
// CSRs with a P-256 CA, from as many goroutines as GOMAXPROCS (the station
// signs for several slots at once). of-sign is that rate as a fraction of
// the bare P-256 signatures per second the machine makes the same way:
// the ceiling for a CA that must sign once per certificate.
func BenchmarkIssue(b *testing.B) {
	ceiling := p256SignRate(b)
	// Made before the sub-benchmarks start, so that step-ca's start-up log
	// does not land inside a result line.
	for _, impl := range []struct {
		name string
		iss  ca.Issuer
	}{
		{"local/P-256", newLocal(b)},
		{"local-pkcs11/P-256", newPKCS11Local(b)},
		{"remote-step-ca/P-256", newRemote(b, newStepCA(b, ""))},
	} {
		b.Run(impl.name, func(b *testing.B) {
			iss := impl.iss
			csr := csrFor(b, ecKey(b, elliptic.P256()), "bench-device", nil)
			var failed atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := iss.Issue(context.Background(), csr, "bench-device"); err != nil {
						failed.Add(1)
					}
				}
			})
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d of %d issues failed", n, b.N)
			}
			rate := float64(b.N) / b.Elapsed().Seconds()
			b.ReportMetric(rate, "certs/s")
			b.ReportMetric(rate/ceiling, "of-sign")
		})
	}
}

// p256SignRate returns the P-256 signatures per second made by GOMAXPROCS
// goroutines for about half a second.
func p256SignRate(b *testing.B) float64 {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	digest := sha256.Sum256([]byte("certificate"))
	var n atomic.Int64
	start := time.Now()
	done := make(chan struct{})
	procs := runtime.GOMAXPROCS(0)
	for range procs {
		go func() {
			for time.Since(start) < 500*time.Millisecond {
				key.Sign(rand.Reader, digest[:], nil)
				n.Add(1)
			}
			done <- struct{}{}
		}()
	}
	for range procs {
		<-done
	}
	return float64(n.Load()) / time.Since(start).Seconds()
}
