package station_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"zerotouch/board"
	"zerotouch/ca"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/internal/rawpty"
	"zerotouch/internal/tpmdev"
	"zerotouch/station"
	"zerotouch/station/records"
	"zerotouch/tpm"
)

// benchBaud is the line rate of the benchmarks: a USB-serial bridge's
// usual 115200 baud, 10 bits a byte.
const benchBaud = 115200

// BenchmarkBoard measures the station's pipeline with virtual boards at
// 115200 baud, sharing one records store (SQLite on the disk, WAL and
// synchronous=FULL) and one local CA, as the slots of a station do.
//
// mode=M provisions one fresh board at a time in attestation mode M,
// through a tap (a pseudo-terminal of the benchmark's that relays and
// counts the bytes between the station and the board), and holds its wall
// time against the link's floor:
//
//	ms/board     the board's wall time: Run(Once), port open to record
//	floor-ms     the bytes that crossed the line, both directions, at the
//	             raw byte rate (baud/10), plus the time the TPM itself
//	             needs for the commands the run sends it (the same calls
//	             timed directly on the simulator, without the link; 0 for
//	             boards without a TPM)
//	of-floor     floor-ms over ms/board: 1 is the physical limit; the
//	             target is ≥ 0.91 (per board ≤ 1.1 × floor)
//	B/board      line bytes, both directions, SMP framing included
//	req/board    SMP requests the station sent
//	tpm-ms       the TPM part of floor-ms
//
// slots=N provisions N fresh boards at once, one per slot, in
// x509-keygen mode, each iteration one Run(Once):
//
//	boards/h     boards provisioned an hour
//	scaling      boards/h over N × boards/h of one slot: 1 is perfect
//	             parallelism; the target is ≥ 0.9 for 16 slots on 2 cores
//
// The virtual boards run with NoSync: their flash files are not fsynced
// to the host's disk. A real board's flash write is the board's own work
// and outside the floor; 16 virtual boards' fsyncs queue on one disk and
// would be charged to the station. The station's own fsyncs (the records
// database) are all counted.
//
// Run with: go test -run '^$' -bench Board -benchtime 5x ./station (about
// 15 s; 1x takes about 9 s but one batch of 16 boards is a noisy sample).
func BenchmarkBoard(b *testing.B) {
	env := newBenchEnv(b)
	for _, m := range []struct{ mode, tpm string }{
		{station.ModeX509Keygen, board.TPMNone},
		{station.ModeSymmetricKey, board.TPMNone},
		{station.ModeTPM, board.TPMSim}, // the simulator is one per process: one board at a time
	} {
		b.Run("mode="+m.mode, func(b *testing.B) { benchPerBoard(b, env, m.mode, m.tpm) })
	}
	var one float64 // boards/h with one slot
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("slots=%d", n), func(b *testing.B) {
			var wall time.Duration
			for range b.N {
				wall += env.batch(b, n, true)
			}
			perHour := float64(n*b.N) / wall.Hours()
			b.ReportMetric(perHour, "boards/h")
			if n == 1 {
				one = perHour
				return
			}
			if one == 0 { // slots=1 was not run: measure one slot now
				one = 1 / env.batch(b, 1, false).Hours()
			}
			b.ReportMetric(perHour/(float64(n)*one), "scaling")
		})
	}
}

// benchPerBoard provisions b.N fresh boards, one at a time, each through a
// tap that counts the bytes on its line.
func benchPerBoard(b *testing.B, env *benchEnv, mode, tpmSpec string) {
	ctx := context.Background()
	var wall, tpmTime time.Duration
	var lineBytes, requests int64
	b.StopTimer()
	for range b.N {
		serial := env.serial()
		if tpmSpec == board.TPMSim {
			tpmTime += benchTPMTime(b, serial)
		}
		brd := env.board(b, serial, tpmSpec)
		tp := newBenchTap(b, brd.Path())
		st := env.station(b, mode, tp.path)
		b.StartTimer()
		start := time.Now()
		sum, err := st.Run(ctx, station.RunOptions{Once: true})
		wall += time.Since(start)
		b.StopTimer()
		if err != nil || sum.Passed != 1 {
			b.Fatalf("Run = %+v, %v", sum, err)
		}
		tp.Close()
		if up := tp.up.Load(); up != brd.Received() {
			b.Fatalf("tap counted %d bytes to the board, the board %d", up, brd.Received())
		}
		brd.Close()
		lineBytes += tp.up.Load() + tp.down.Load()
		requests += tp.requests.Load()
	}
	n := float64(b.N)
	floor := benchLineTime(lineBytes) + tpmTime
	b.ReportMetric(benchMS(wall)/n, "ms/board")
	b.ReportMetric(benchMS(floor)/n, "floor-ms")
	b.ReportMetric(floor.Seconds()/wall.Seconds(), "of-floor")
	b.ReportMetric(float64(lineBytes)/n, "B/board")
	b.ReportMetric(float64(requests)/n, "req/board")
	b.ReportMetric(benchMS(tpmTime)/n, "tpm-ms")
}

// benchLineTime is how long n bytes take on the line at its raw byte rate.
func benchLineTime(n int64) time.Duration {
	return time.Duration(n * 10 * int64(time.Second) / benchBaud)
}

func benchMS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// benchTPMTime times, directly on the TPM simulator of the board with
// this serial number and in the state a fresh board's TPM is in, the TPM
// calls the station makes in tpm mode: the TPM's own part of the floor.
func benchTPMTime(b *testing.B, serial string) time.Duration {
	b.Helper()
	ctx := context.Background()
	sim, err := tpmdev.Open(tpmdev.Sim, board.SimulatorSeed(serial))
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	d := tpm.New(sim, tpm.Options{Board: serial})
	start := time.Now()
	ek, err := d.EK(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := d.SRK(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := d.EKCertificate(ctx, ek, nil); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	if !ek.Created {
		b.Fatalf("the simulator for %s already held its EK: not a fresh board's TPM", serial)
	}
	return elapsed
}

// benchEnv is what the benchmarks' stations share: one records store and
// one CA, as on a line.
type benchEnv struct {
	store  *records.Store
	issuer ca.Issuer
	tmpl   *fwtemplates.Template
	n      atomic.Int64
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	store, err := records.Open(ctx, filepath.Join(dir, "records.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	issuer, err := ca.Init(ctx, filepath.Join(dir, "ca"), ca.InitOptions{Password: []byte("bench password")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { issuer.Close() })
	tmpl, err := fwtemplates.Builtin("json")
	if err != nil {
		b.Fatal(err)
	}
	env := &benchEnv{store: store, issuer: issuer, tmpl: tmpl}
	env.batch(b, 1, false) // warm up the store, the CA and the code
	return env
}

func (e *benchEnv) serial() string { return fmt.Sprintf("ZTB%06d", e.n.Add(1)) }

func (e *benchEnv) board(b *testing.B, serial, tpmSpec string) *board.Board {
	b.Helper()
	brd, err := board.Start(board.Config{Serial: serial, Dir: b.TempDir(), TPM: tpmSpec, Baud: benchBaud, NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { brd.Close() })
	return brd
}

func (e *benchEnv) station(b *testing.B, mode string, ports ...string) *station.Station {
	b.Helper()
	var y strings.Builder
	y.WriteString("station: st-bench\nline: line-bench\nattestation: " + mode + "\nid_scope: 0ne0001A2B3\n")
	y.WriteString("ca:\n  dir: unused-here\nsymmetric_key:\n  group_id: line-bench-group\nslots:\n")
	for _, p := range ports {
		y.WriteString("  - port: " + p + "\n")
	}
	fmt.Fprintf(&y, "baud: %d\n", benchBaud)
	cfg, err := station.ParseConfig([]byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	st, err := station.New(cfg, station.Deps{Store: e.store, Template: e.tmpl, Issuer: e.issuer,
		GroupKey: []byte("the bench group's primary key")})
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// batch provisions n fresh boards at once in x509-keygen mode, one per
// slot, and returns the wall time of the Run; timed says whether the
// benchmark's timer runs during it.
func (e *benchEnv) batch(b *testing.B, n int, timed bool) time.Duration {
	b.Helper()
	b.StopTimer()
	boards := make([]*board.Board, n)
	ports := make([]string, n)
	for i := range boards {
		boards[i] = e.board(b, e.serial(), board.TPMNone)
		ports[i] = boards[i].Path()
	}
	st := e.station(b, station.ModeX509Keygen, ports...)
	if timed {
		b.StartTimer()
	}
	start := time.Now()
	sum, err := st.Run(context.Background(), station.RunOptions{Once: true})
	wall := time.Since(start)
	b.StopTimer()
	if err != nil || sum.Passed != n {
		b.Fatalf("Run = %+v, %v; want %d passed", sum, err, n)
	}
	for _, brd := range boards {
		brd.Close()
	}
	b.StartTimer()
	return wall
}

// benchTap sits between the station and a board: a pseudo-terminal of its
// own, whose bytes it relays to and from the board's, counting them. It
// adds a copy each way and no pacing: the board paces the line.
type benchTap struct {
	path             string
	master, tty, brd *os.File
	up, down         atomic.Int64 // bytes to the board, bytes from it
	requests         atomic.Int64 // SMP packets to the board (each starts 0x06 0x09)
	wg               sync.WaitGroup
	once             sync.Once
}

func newBenchTap(b testing.TB, boardPath string) *benchTap {
	b.Helper()
	master, tty, err := rawpty.Open()
	if err != nil {
		b.Fatal(err)
	}
	brd, err := os.OpenFile(boardPath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		b.Fatal(err)
	}
	tp := &benchTap{path: tty.Name(), master: master, tty: tty, brd: brd}
	tp.wg.Add(2)
	go tp.relay(tp.brd, tp.master, &tp.up, true)
	go tp.relay(tp.master, tp.brd, &tp.down, false)
	b.Cleanup(tp.Close)
	return tp
}

func (tp *benchTap) relay(dst, src *os.File, count *atomic.Int64, up bool) {
	defer tp.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			count.Add(int64(n))
			if up {
				for _, c := range buf[:n] {
					if c == 0x06 {
						tp.requests.Add(1)
					}
				}
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close stops the relay; it is safe to call more than once.
func (tp *benchTap) Close() {
	tp.once.Do(func() {
		tp.master.Close()
		tp.brd.Close()
		tp.wg.Wait()
		tp.tty.Close()
	})
}
