package flasher_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"zerotouch/board/hostile"
	"zerotouch/flasher"
)

// hostileClient connects a client to a hostile board over an in-memory
// pipe; set makes the board hostile before the client reads its params.
func hostileClient(t *testing.T, opts flasher.Options, set func(b *hostile.Board)) (*flasher.Client, *hostile.Board) {
	t.Helper()
	station, boardSide := net.Pipe()
	b := hostile.New("HOSTILE-1", boardSide)
	t.Cleanup(func() { b.Close() })
	if set != nil {
		set(b)
	}
	c, err := flasher.NewClient(context.Background(), station, opts)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c, b
}

// A board's buffer claim is taken down to what the client can frame and
// what crosses the line in 2 s, whatever it says, and the wait for an
// answer is bounded by that.
func TestBufferClaimsBounded(t *testing.T) {
	attempt := regexp.MustCompile(`attempts of ([0-9.]+m?s)`)
	for _, tt := range []struct {
		claim any
		baud  int
		max   int // the buffer the client may use
	}{
		{65540, 115200, 17_000},
		{100_000, 115200, 17_000},
		{uint64(1) << 62, 115200, 17_000},
		{1_000_000, 4_000_000, flasher.MaxBufSize},
		{2048, 9600, 2048},
		{384, 115200, 384},
	} {
		c, b := hostileClient(t, flasher.Options{Baud: tt.baud, Timeout: 100 * time.Millisecond, Retries: -1}, func(b *hostile.Board) {
			b.On(hostile.Params, hostile.Answer(map[string]any{"buf_size": tt.claim, "buf_count": 4}))
		})
		got := c.Params().BufSize
		if got > tt.max || got < flasher.MinBufSize || got > flasher.MaxBufSize {
			t.Errorf("claim %v at %d baud: the client uses a %d-byte buffer, want at most %d", tt.claim, tt.baud, got, tt.max)
		}
		// A request the size of that buffer frames without error.
		if err := c.FileWrite(context.Background(), "/lfs/f", make([]byte, 3*got), false, nil); err != nil {
			t.Errorf("claim %v: upload of %d bytes = %v", tt.claim, 3*got, err)
		}
		// A silent board: the one attempt waits its timeout plus at most
		// two frames' wire time (the request's and the answer's).
		b.OnAny(hostile.Silent())
		_, err := c.Echo(context.Background(), "hi")
		m := attempt.FindStringSubmatch(fmt.Sprint(err))
		if !errors.Is(err, flasher.ErrTimeout) || m == nil {
			t.Fatalf("claim %v: Echo to a silent board = %v, want a timeout saying its wait", tt.claim, err)
		}
		wait, _ := time.ParseDuration(m[1])
		if bound := 100*time.Millisecond + 4*time.Second + 50*time.Millisecond; wait <= 0 || wait > bound {
			t.Errorf("claim %v at %d baud: one attempt waits %v, want at most %v", tt.claim, tt.baud, wait, bound)
		}
	}
}

// A download the board says is longer than the limit is refused before
// any of it is read; a long one within the limit streams through without
// the client holding it.
func TestDownloadBounded(t *testing.T) {
	ctx := context.Background()
	huge := func(total int64, chunk int) func(b *hostile.Board) {
		return func(b *hostile.Board) {
			b.On(hostile.File, func(_ <-chan struct{}, req flasher.Message, w io.Writer) {
				var rq struct {
					Off int64 `cbor:"off"`
				}
				flasher.DecodeBody(req.Body, &rq)
				n := min(int64(chunk), total-rq.Off)
				w.Write(hostile.Frame(req, map[string]any{"off": rq.Off, "len": total, "data": make([]byte, n)}))
			})
		}
	}
	c, b := hostileClient(t, flasher.Options{Baud: 4_000_000}, huge(1<<40, 1000))
	start := time.Now()
	_, err := c.FileDownload(ctx, "/lfs/big", nil)
	if !errors.Is(err, flasher.ErrTooLarge) {
		t.Errorf("FileDownload of a 1 TiB file = %v, want ErrTooLarge", err)
	}
	n, err := c.FileDownloadTo(ctx, "/lfs/big", io.Discard, 1<<30, nil)
	if !errors.Is(err, flasher.ErrTooLarge) || n != 0 || b.Requests() != 3 {
		t.Errorf("FileDownloadTo(limit 1 GiB) of a 1 TiB file = %d, %v after %d requests; want ErrTooLarge at the first answer", n, err, b.Requests())
	}
	t.Logf("refused in %v", time.Since(start).Round(time.Microsecond))

	// 32 MiB in 32 KiB answers to io.Discard: the heap does not grow with it.
	const total = 32 << 20
	c, _ = hostileClient(t, flasher.Options{Baud: 4_000_000}, huge(total, 32<<10))
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n, err = c.FileDownloadTo(ctx, "/lfs/big", io.Discard, total, nil)
	runtime.ReadMemStats(&after)
	if err != nil || n != total {
		t.Fatalf("FileDownloadTo = %d, %v; want all %d bytes", n, err, total)
	}
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("32 MiB streamed; heap in use grew %.1f MB", float64(grew)/(1<<20))
	if grew > 16<<20 {
		t.Errorf("the heap grew %d MB while streaming 32 MiB: the download is held in memory", grew>>20)
	}

	// Lengths and offsets that cannot be.
	for name, body := range map[string]map[string]any{
		"negative length": {"off": 0, "len": -1, "data": []byte("x")},
		"past its length": {"off": 0, "len": 2, "data": []byte("xyz")},
		"wrong offset":    {"off": 7, "len": 20, "data": []byte("x")},
	} {
		c, _ := hostileClient(t, flasher.Options{Baud: 4_000_000}, func(b *hostile.Board) { b.On(hostile.File, hostile.Answer(body)) })
		if _, err := c.FileDownload(ctx, "/lfs/f", nil); !errors.Is(err, flasher.ErrProtocol) {
			t.Errorf("%s: FileDownload = %v, want ErrProtocol", name, err)
		}
	}
}

// Identities are checked where they enter: every class of character the
// rule refuses, each refusal naming the serial escaped.
func TestIdentityChecked(t *testing.T) {
	good := []string{"SN-0001", "ZT:42_a.b", "Ünï-7", strings.Repeat("x", flasher.MaxSerialLen)}
	for _, s := range good {
		if err := flasher.CheckSerial(s); err != nil {
			t.Errorf("CheckSerial(%q) = %v, want it accepted", s, err)
		}
	}
	bad := []string{"", ".", "..", "a/b", `a\b`, "a b", "a\tb", "a\nb", "a\rb", "\x1b[2J", "a\x00", "a\u0085b", "a\u200bb",
		"a\u202eb", "\xff", strings.Repeat("x", flasher.MaxSerialLen+1)}
	for _, s := range bad {
		err := flasher.CheckSerial(s)
		if !errors.Is(err, flasher.ErrBadIdentity) {
			t.Errorf("CheckSerial(%q) = %v, want ErrBadIdentity", s, err)
			continue
		}
		for _, r := range err.Error() {
			if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
				t.Errorf("CheckSerial(%q) error %q carries a control character", s, err)
				break
			}
		}
	}
	c, _ := hostileClient(t, flasher.Options{Baud: 4_000_000}, func(b *hostile.Board) {
		b.On(hostile.Identity, hostile.Answer(map[string]any{"serial": "SN-9\nFAKE LOG LINE", "model": "m"}))
	})
	if _, err := c.Identity(context.Background()); !errors.Is(err, flasher.ErrBadIdentity) || strings.Contains(err.Error(), "\n") {
		t.Errorf("Identity with a newline in the serial = %v, want ErrBadIdentity on one line", err)
	}
}
