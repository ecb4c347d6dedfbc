package flasher_test

import (
	"fmt"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/flasher"
)

// BenchmarkUpload measures file and image uploads through a virtual board
// paced at real baud rates. It reports:
//
//	B/s      payload bytes a second
//	of-line  B/s over the line's raw byte rate (baud/10): the physical limit
//	framing  payload over bytes on the wire: what SMP's framing allows
//	busy     wire bytes a second over the raw byte rate: idle gaps show here
//
// Run with: go test -run '^$' -bench Upload -benchtime 3x ./flasher
func BenchmarkUpload(b *testing.B) {
	for _, baud := range []int{115200, 921600} {
		size := 32 << 10 * (baud / 115200) // about 3 s a transfer
		for _, kind := range []string{"fs", "image"} {
			b.Run(fmt.Sprintf("%s/baud=%d", kind, baud), func(b *testing.B) {
				brd := newTestBoard(b, board.Config{Baud: baud})
				c := newTestClient(b, brd.Path(), baud, flasher.Options{Timeout: 2 * time.Second})
				ctx := testCtx(b)
				data := testData(size, 9)
				if kind == "image" {
					data = flasher.BuildImage(flasher.ImageVersion{Major: 1}, data[:size-64])
				}
				var wire int64
				b.SetBytes(int64(len(data)))
				b.ResetTimer()
				start := time.Now()
				for range b.N {
					brd.SetFaults(board.Faults{})
					var err error
					if kind == "fs" {
						err = c.FileUpload(ctx, "/lfs/bench.bin", data, false, nil)
					} else {
						err = c.ImageUpload(ctx, 0, data, nil)
					}
					if err != nil {
						b.Fatal(err)
					}
					wire += brd.Received()
				}
				elapsed := time.Since(start).Seconds()
				raw := float64(baud) / 10
				rate := float64(len(data)*b.N) / elapsed
				b.ReportMetric(rate, "B/s")
				b.ReportMetric(rate/raw, "of-line")
				b.ReportMetric(float64(len(data)*b.N)/float64(wire), "framing")
				b.ReportMetric(float64(wire)/elapsed/raw, "busy")
			})
		}
	}
}
