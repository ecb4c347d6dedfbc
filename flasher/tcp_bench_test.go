package flasher_test

import (
	"fmt"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/flasher"
	"zerotouch/internal/ser2nettest"
)

// BenchmarkUploadTCP measures uploads as BenchmarkUpload does, at 115200
// baud, with the board reached over the network: a virtual board served
// on TCP (tcp), and a board's pseudo-terminal behind Debian's ser2net,
// raw (ser2net-tcp) and over RFC 2217 (ser2net-rfc2217); pty is the
// pseudo-terminal alone, for comparison. The ser2net cases skip without
// ser2net. of-line is the figure to compare.
//
// Run with: go test -run '^$' -bench UploadTCP -benchtime 3x ./flasher
func BenchmarkUploadTCP(b *testing.B) {
	const baud = 115200
	const size = 32 << 10
	for _, kind := range []string{"fs", "image"} {
		for _, via := range []string{"pty", "tcp", "ser2net-tcp", "ser2net-rfc2217"} {
			b.Run(fmt.Sprintf("%s/%s/baud=%d", kind, via, baud), func(b *testing.B) {
				var brd *board.Board
				var port string
				switch via {
				case "pty":
					brd = newTestBoard(b, board.Config{Baud: baud})
					port = brd.Path()
				case "tcp":
					brd = newTCPBoard(b, board.Config{Baud: baud})
					port = brd.Path()
				case "ser2net-tcp", "ser2net-rfc2217":
					brd = newTestBoard(b, board.Config{Baud: baud})
					scheme := flasher.SchemeTCP
					if via == "ser2net-rfc2217" {
						scheme = flasher.SchemeRFC2217
					}
					port = ser2nettest.Start(b, brd.Path(), baud, scheme == flasher.SchemeRFC2217).URL(scheme)
				}
				c := newTestClient(b, port, baud, flasher.Options{Timeout: 2 * time.Second})
				benchUploads(b, brd, c, kind, baud, size)
			})
		}
	}
}

// benchUploads uploads size bytes b.N times through c to brd and reports
// the figures BenchmarkUpload reports.
func benchUploads(b *testing.B, brd *board.Board, c *flasher.Client, kind string, baud, size int) {
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
}
