package tpm_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"zerotouch/board"
	"zerotouch/tpm"
)

// countingTPM counts the commands and bytes that pass through it.
type countingTPM struct {
	transport.TPM
	cmds, bytes int64
}

func (c *countingTPM) Send(cmd []byte) ([]byte, error) {
	rsp, err := c.TPM.Send(cmd)
	c.cmds++
	c.bytes += int64(len(cmd) + len(rsp))
	return rsp, err
}

// BenchmarkEK measures reading the EK when it is persisted already and
// when it must be created and persisted first, directly on the simulator
// and through a virtual board at 115200 baud. It reports:
//
//	cmds/op    TPM commands a read takes
//	tpm-B/op   TPM command and response bytes, before SMP framing
//	of-line    the time those bytes need at the line's raw byte rate
//	           (baud/10) over the time the read took: the physical limit
//	           is 1, and the TPM's own work and SMP's framing and round
//	           trips are the rest
//
// Run with: go test -run '^$' -bench EK -benchtime 20x ./tpm
func BenchmarkEK(b *testing.B) {
	for _, via := range []string{"direct", "board=115200"} {
		for _, persisted := range []bool{true, false} {
			name := fmt.Sprintf("%s/persisted=%v", via, persisted)
			b.Run(name, func(b *testing.B) {
				var tr transport.TPM
				baud := 0
				if via == "direct" {
					tr = newSim(b, 7)
				} else {
					baud = 115200
					tb := newTestBoard(b, board.Config{Serial: "ZTB000001"}, baud)
					tr = tb.c.TPM(testCtx(b))
				}
				ctx := testCtx(b)
				if _, err := tpm.New(tr, tpm.Options{}).EK(ctx); err != nil {
					b.Fatal(err)
				}
				count := &countingTPM{TPM: tr}
				d := tpm.New(count, tpm.Options{})
				var elapsed time.Duration
				for range b.N {
					if !persisted {
						b.StopTimer()
						evict(b, tr, tpm.EKHandle)
						b.StartTimer()
					}
					start := time.Now()
					ek, err := d.EK(ctx)
					elapsed += time.Since(start)
					if err != nil {
						b.Fatal(err)
					}
					if ek.Created == persisted {
						b.Fatalf("EK created = %v with persisted = %v", ek.Created, persisted)
					}
				}
				b.ReportMetric(float64(count.cmds)/float64(b.N), "cmds/op")
				b.ReportMetric(float64(count.bytes)/float64(b.N), "tpm-B/op")
				if baud > 0 {
					line := time.Duration(float64(count.bytes) * 10 / float64(baud) * float64(time.Second))
					b.ReportMetric(line.Seconds()/elapsed.Seconds(), "of-line")
				}
			})
		}
	}
}
