package flasher_test

import (
	"context"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"zerotouch/board/hostile"
	"zerotouch/flasher"
	"zerotouch/internal/textsafe"
)

// The client's answer handling, fed arbitrary answers (FuzzDispatch's
// counterpart on the station's side): a board answers every request
// with the fuzzer's body, well framed and with the right header, so that
// what is fuzzed is what the client makes of the body. Nothing may panic
// or hang; what the client accepts keeps the bounds it promises; errors
// carry no unescaped board text.

// fuzzClient connects a client to a board that answers first to the
// first request and rest to every later one.
func fuzzClient(t *testing.T, first, rest []byte, skipParams bool) (*flasher.Client, func()) {
	// A hang is a failure too: past fuzzCtx's bound, crash with every
	// goroutine's stack, so that the fuzzer keeps the input.
	watchdog := time.AfterFunc(30*time.Second, func() {
		buf := make([]byte, 1<<20)
		panic("hang:\n" + string(buf[:runtime.Stack(buf, true)]))
	})
	t.Cleanup(func() { watchdog.Stop() })
	station, boardSide := net.Pipe()
	b := hostile.New("FUZZ-1", boardSide)
	b.OnAny(hostile.Bodies(first, rest))
	c, err := flasher.NewClient(context.Background(), station, flasher.Options{Baud: 4_000_000, Timeout: 50 * time.Millisecond,
		Retries: -1, SkipParams: skipParams})
	if err != nil {
		b.Close()
		return nil, nil
	}
	return c, func() { c.Close(); b.Close() }
}

// fuzzCtx bounds one input's work: an answer that keeps a transfer going
// one byte at a time is legal, only slow.
func fuzzCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Second)
}

func checkErr(t *testing.T, err error) {
	t.Helper()
	if err != nil && !textsafe.Printable(err.Error()) {
		t.Fatalf("error carries unescaped text: %q", err)
	}
}

func cborSeeds(f *testing.F, bodies ...map[string]any) {
	for _, b := range bodies {
		msg, err := flasher.EncodeMessage(flasher.Header{}, b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(msg[flasher.HeaderLen:], msg[flasher.HeaderLen:])
	}
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0xbf}, []byte{0xff})
}

func FuzzClientParams(f *testing.F) {
	cborSeeds(f, map[string]any{"buf_size": 4096, "buf_count": 4}, map[string]any{"buf_size": uint64(1) << 62},
		map[string]any{"buf_size": -1}, map[string]any{"rc": 8}, map[string]any{"err": map[string]any{"group": 0, "rc": 2}})
	f.Fuzz(func(t *testing.T, first, rest []byte) {
		c, done := fuzzClient(t, first, rest, true)
		defer done()
		ctx, cancel := fuzzCtx()
		defer cancel()
		_, err := c.ReadParams(ctx)
		checkErr(t, err)
		if p := c.Params(); p.BufSize < flasher.MinBufSize || p.BufSize > flasher.MaxBufSize {
			t.Fatalf("the client works with a %d-byte buffer", p.BufSize)
		}
		// Whatever it took, a request of its buffer's size frames.
		checkErr(t, c.FileWrite(ctx, "/f", make([]byte, 2*c.Params().BufSize), false, nil))
	})
}

func FuzzClientIdentity(f *testing.F) {
	cborSeeds(f, map[string]any{"serial": "SN-1", "model": "m", "hw": "1", "fw": "1.0.0", "caps": []string{"tpm", "fs"}},
		map[string]any{"serial": "SN\n1"}, map[string]any{"serial": 7}, map[string]any{"caps": []any{1, "x"}},
		map[string]any{"state": "assigned", "hub": "h", "error": "a\x1bb"})
	f.Fuzz(func(t *testing.T, first, rest []byte) {
		c, done := fuzzClient(t, first, rest, true)
		defer done()
		ctx, cancel := fuzzCtx()
		defer cancel()
		id, err := c.Identity(ctx)
		checkErr(t, err)
		if err == nil {
			if cerr := flasher.CheckIdentity(id); cerr != nil {
				t.Fatalf("Identity accepted %+v: %v", id, cerr)
			}
		}
		reg, err := c.Registration(ctx)
		checkErr(t, err)
		if err == nil {
			for _, s := range []string{reg.State, reg.RegistrationID, reg.Hub, reg.DeviceID, reg.Substatus, reg.Error} {
				if !textsafe.Printable(s) {
					t.Fatalf("Registration passed unescaped text %q", s)
				}
			}
		}
		checkErr(t, c.Commit(ctx, "", make([]byte, 32)))
		_, err = c.Keygen(ctx, flasher.AlgECDSAP256, "cn")
		checkErr(t, err)
	})
}

func FuzzClientFS(f *testing.F) {
	cborSeeds(f, map[string]any{"off": 100}, map[string]any{"off": 0, "len": 5, "data": []byte("hello")},
		map[string]any{"type": "sha256", "len": 100, "output": make([]byte, 32)}, map[string]any{"len": 1 << 40},
		map[string]any{"err": map[string]any{"group": 8, "rc": 11}})
	f.Fuzz(func(t *testing.T, first, rest []byte) {
		c, done := fuzzClient(t, first, rest, true)
		defer done()
		ctx, cancel := fuzzCtx()
		defer cancel()
		data := make([]byte, 1000)
		checkErr(t, c.FileWrite(ctx, "/lfs/f", data, true, nil))
		checkErr(t, c.VerifyFile(ctx, "/lfs/f", data))
		var got countWriter
		n, err := c.FileDownloadTo(ctx, "/lfs/f", &got, 4096, nil)
		checkErr(t, err)
		if n > 4096 || got.n != n {
			t.Fatalf("FileDownloadTo wrote %d bytes, said %d, limit 4096", got.n, n)
		}
		_, err = c.FileStatus(ctx, "/lfs/f")
		checkErr(t, err)
		_, _, err = c.FileHash(ctx, "/lfs/f", 0, 0)
		checkErr(t, err)
	})
}

func FuzzClientImage(f *testing.F) {
	cborSeeds(f, map[string]any{"off": 512}, map[string]any{"off": 2048, "match": false},
		map[string]any{"images": []any{map[string]any{"slot": 0, "version": "1.0.0", "hash": make([]byte, 32), "active": true}}},
		map[string]any{"err": map[string]any{"group": 1, "rc": 20}})
	img := flasher.BuildImage(flasher.ImageVersion{Major: 1}, make([]byte, 2000))
	f.Fuzz(func(t *testing.T, first, rest []byte) {
		c, done := fuzzClient(t, first, rest, true)
		defer done()
		ctx, cancel := fuzzCtx()
		defer cancel()
		checkErr(t, c.ImageUpload(ctx, 0, img, nil))
		_, err := c.ImageStates(ctx)
		checkErr(t, err)
		_, err = c.ImageSetPending(ctx, make([]byte, 32), true)
		checkErr(t, err)
		_, err = c.Info(ctx, "a")
		checkErr(t, err)
	})
}

type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countWriter)(nil)
