package flasher_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"zerotouch/board"
	"zerotouch/flasher"
)

// faultTimeout is the per-request timeout of the fault tests: short, so
// that fifty dropped lines take seconds, yet far above a request's time on
// the line at testBaud, even on a loaded machine.
const faultTimeout = 500 * time.Millisecond

// dropParallel bounds how many boards the drop test runs at once, so that
// a small machine answers within faultTimeout.
const dropParallel = 8

func testData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// wireBytes measures how many bytes a board receives for the upload of
// data, so that the drop test can spread its cuts over all of them.
func wireBytes(t *testing.T, data []byte) int64 {
	b := newTestBoard(t, board.Config{})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{})
	b.SetFaults(board.Faults{})
	if err := c.FileUpload(testCtx(t), "/lfs/cut.bin", data, false, nil); err != nil {
		t.Fatalf("FileUpload without faults: %v", err)
	}
	return b.Received()
}

// TestDropLine cuts the line at many byte offsets of a file upload: every
// cut must end in a timeout error, never in success, and leave the board
// in a state from which a resumed upload completes with the right hash.
func TestDropLine(t *testing.T) {
	data := testData(12_000, 1)
	total := wireBytes(t, data)
	cuts := 50
	if testing.Short() {
		cuts = 10
	}
	seen := map[int64]bool{}
	slots := make(chan struct{}, dropParallel)
	for i := range cuts {
		// Spread the cuts over the transfer, the first and last bytes
		// included.
		at := 1 + int64(i)*(total-1)/int64(cuts-1)
		if seen[at] {
			continue
		}
		seen[at] = true
		t.Run(fmt.Sprintf("at=%d", at), func(t *testing.T) {
			t.Parallel()
			slots <- struct{}{}
			defer func() { <-slots }()
			b := newTestBoard(t, board.Config{Serial: fmt.Sprintf("CUT%05d", at)})
			c := newTestClient(t, b.Path(), testBaud, flasher.Options{Timeout: faultTimeout, Retries: 1})
			ctx := testCtx(t)
			b.SetFaults(board.Faults{DropAfter: at})

			err := c.FileUpload(ctx, "/lfs/cut.bin", data, false, nil)
			if err == nil {
				t.Fatalf("FileUpload succeeded with the line cut after %d of %d bytes", at, total)
			}
			if !errors.Is(err, flasher.ErrTimeout) {
				t.Fatalf("FileUpload with the line cut: %v, want ErrTimeout", err)
			}
			if ctx.Err() != nil {
				t.Fatalf("FileUpload returned only when the test's deadline passed: %v", err)
			}

			// The line is back; the station runs the upload again.
			b.SetFaults(board.Faults{})
			c.Close()
			c = newTestClient(t, b.Path(), testBaud, flasher.Options{Timeout: 2 * time.Second})
			if err := c.FileUpload(ctx, "/lfs/cut.bin", data, true, nil); err != nil {
				t.Fatalf("resumed FileUpload: %v", err)
			}
			got, err := b.ReadFile("/lfs/cut.bin")
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(got) != sha256.Sum256(data) {
				t.Errorf("board holds %d bytes that differ from the %d sent", len(got), len(data))
			}
		})
	}
}

// TestResumeSkipsWhatTheBoardHas checks that a resumed upload starts at
// the board's file length when its bytes match, and from zero when not.
func TestResumeSkipsWhatTheBoardHas(t *testing.T) {
	b := newTestBoard(t, board.Config{})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{})
	ctx := testCtx(t)
	data := testData(20_000, 2)

	if err := c.FileUpload(ctx, "/lfs/r.bin", data[:15_000], false, nil); err != nil {
		t.Fatal(err)
	}
	var first int
	progress := func(done, total int) {
		if first == 0 {
			first = done
		}
	}
	if err := c.FileUpload(ctx, "/lfs/r.bin", data, true, progress); err != nil {
		t.Fatalf("resumed upload: %v", err)
	}
	if first <= 15_000 {
		t.Errorf("resumed upload's first chunk ended at %d, want past the 15000 bytes the board had", first)
	}

	// A different file under the same name must be rewritten whole.
	other := testData(20_000, 3)
	first = 0
	if err := c.FileUpload(ctx, "/lfs/r.bin", other, true, progress); err != nil {
		t.Fatalf("upload over a different file: %v", err)
	}
	if first > 15_000 {
		t.Errorf("upload over a different file started at %d, want from 0", first)
	}
	got, _ := b.ReadFile("/lfs/r.bin")
	if !bytes.Equal(got, other) {
		t.Errorf("board holds %d bytes that are not the second file", len(got))
	}
}

func TestCorruptFrames(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults board.Faults
	}{
		{"answer", board.Faults{CorruptTx: 1}},
		{"request", board.Faults{CorruptRx: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newTestBoard(t, board.Config{})
			c := newTestClient(t, b.Path(), testBaud, flasher.Options{Timeout: faultTimeout})
			ctx := testCtx(t)

			b.SetFaults(tc.faults)
			got, err := c.Echo(ctx, "through the noise")
			if err != nil {
				t.Fatalf("Echo with one corrupted frame: %v (a retry should have carried it)", err)
			}
			if got != "through the noise" {
				t.Errorf("Echo = %q", got)
			}
			st := c.Stats()
			if st.Retries != 1 {
				t.Errorf("Stats().Retries = %d, want 1", st.Retries)
			}
			if tc.faults.CorruptTx > 0 && st.BadFrames != 1 {
				t.Errorf("Stats().BadFrames = %d, want 1", st.BadFrames)
			}

			// Without retries the same fault is a timeout.
			c2 := newTestClient(t, b.Path(), testBaud, flasher.Options{Timeout: faultTimeout, Retries: -1, SkipParams: true})
			c.Close()
			b.SetFaults(tc.faults)
			if _, err := c2.Echo(ctx, "x"); !errors.Is(err, flasher.ErrTimeout) {
				t.Errorf("Echo without retries: %v, want ErrTimeout", err)
			}
		})
	}
}

// TestRetryRunsOnce checks that a request whose answer was lost is not
// carried out twice: the board answers the resent sequence number from its
// cache. A TPM counter shows it, as TPM commands are not idempotent.
func TestRetryRunsOnce(t *testing.T) {
	b := newTestBoard(t, board.Config{TPM: board.TPMSim})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{Timeout: time.Second})
	tpm := c.TPM(testCtx(t))

	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	def := tpm2.NVDefineSpace{
		AuthHandle: owner,
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex: 0x01000042,
			NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{
				OwnerWrite: true, OwnerRead: true, NoDA: true,
				NT: tpm2.TPMNTCounter,
			},
			DataSize: 8,
		}),
	}
	if _, err := def.Execute(tpm); err != nil {
		t.Fatalf("NV_DefineSpace: %v", err)
	}
	pub, err := def.PublicInfo.Contents()
	if err != nil {
		t.Fatal(err)
	}
	name, err := tpm2.NVName(pub)
	if err != nil {
		t.Fatal(err)
	}
	index := tpm2.NamedHandle{Handle: pub.NVIndex, Name: *name}

	b.SetFaults(board.Faults{CorruptTx: 1})
	if _, err := (tpm2.NVIncrement{AuthHandle: owner, NVIndex: index}).Execute(tpm); err != nil {
		t.Fatalf("NV_Increment with its answer corrupted once: %v", err)
	}
	if got := c.Stats().Retries; got != 1 {
		t.Fatalf("Stats().Retries = %d, want 1", got)
	}
	rsp, err := tpm2.NVRead{AuthHandle: owner, NVIndex: index, Size: 8}.Execute(tpm)
	if err != nil {
		t.Fatalf("NV_Read: %v", err)
	}
	if got := binary.BigEndian.Uint64(rsp.Data.Buffer); got != 1 {
		t.Errorf("counter = %d after one increment whose answer was resent, want 1", got)
	}
}

func TestSlowBoard(t *testing.T) {
	b := newTestBoard(t, board.Config{})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{Timeout: faultTimeout, Retries: -1})
	ctx := testCtx(t)

	b.SetFaults(board.Faults{Delay: faultTimeout / 3})
	if _, err := c.Echo(ctx, "slow"); err != nil {
		t.Errorf("Echo from a board slower than usual but inside the timeout: %v", err)
	}
	b.SetFaults(board.Faults{Delay: 2 * faultTimeout})
	if _, err := c.Echo(ctx, "too slow"); !errors.Is(err, flasher.ErrTimeout) {
		t.Errorf("Echo from a board slower than the timeout: %v, want ErrTimeout", err)
	}
	// The late answer arrives after the client gave up; it must not be
	// taken for the answer to the next request.
	b.SetFaults(board.Faults{})
	time.Sleep(2 * faultTimeout)
	if got, err := c.Echo(ctx, "next"); err != nil || got != "next" {
		t.Errorf("Echo after a late answer = %q, %v; want \"next\"", got, err)
	}
}

func TestBoardErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		protocol int
		want     func(*flasher.Error) bool
	}{
		{2, func(e *flasher.Error) bool {
			return e.Group == flasher.GroupFS && e.GroupRC == flasher.FSRCFileNotFound
		}},
		{1, func(e *flasher.Error) bool { return e.RC == flasher.RC(flasher.FSRCFileNotFound) && e.GroupRC == 0 }},
	} {
		t.Run(fmt.Sprintf("v%d", tc.protocol), func(t *testing.T) {
			b := newTestBoard(t, board.Config{})
			c := newTestClient(t, b.Path(), testBaud, flasher.Options{Protocol: tc.protocol})
			ctx := testCtx(t)
			b.SetFaults(board.Faults{RC: map[string]int{"fs.file": flasher.FSRCFileNotFound}})
			err := c.FileUpload(ctx, "/lfs/x", []byte("data"), false, nil)
			var be *flasher.Error
			if !errors.As(err, &be) || !tc.want(be) {
				t.Fatalf("FileUpload with an injected error: %v (%#v)", err, be)
			}
			if be.Command != "fs.file" {
				t.Errorf("error's command = %q, want fs.file", be.Command)
			}
			// Other commands are not touched.
			if _, err := c.Echo(ctx, "ok"); err != nil {
				t.Errorf("Echo: %v", err)
			}
		})
	}
}

func TestResetMidTransfer(t *testing.T) {
	b := newTestBoard(t, board.Config{BootTime: 50 * time.Millisecond})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{Timeout: faultTimeout})
	ctx := testCtx(t)
	img := flasher.BuildImage(flasher.ImageVersion{Major: 3}, testData(40_000, 4))
	b.SetFaults(board.Faults{ResetAfter: 20_000})
	err := c.ImageUpload(ctx, 0, img, nil)
	if err == nil {
		// A retry may land after the reboot; the board then asks for the
		// upload from the start, which the client follows.
		t.Logf("upload went on across the reset")
	} else if !errors.Is(err, flasher.ErrTimeout) && !errors.Is(err, flasher.ErrInvalid) {
		t.Fatalf("ImageUpload across a reset: %v, want a timeout or the board refusing the offset", err)
	}
	if err := c.WaitReady(ctx, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := c.ImageUpload(ctx, 0, img, nil); err != nil {
		t.Fatalf("ImageUpload after the reset: %v", err)
	}
	states, err := c.ImageStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) < 2 || states[1].Version != "3.0.0" {
		t.Errorf("image slots after upload: %+v, want 3.0.0 in slot 1", states)
	}
}

func TestBoardGone(t *testing.T) {
	b := newTestBoard(t, board.Config{})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{Timeout: 5 * time.Second})
	ctx := testCtx(t)
	b.SetFaults(board.Faults{Delay: time.Second})
	go func() {
		time.Sleep(100 * time.Millisecond)
		b.Close()
	}()
	_, err := c.Echo(ctx, "anyone?")
	if !errors.Is(err, flasher.ErrDisconnected) {
		t.Fatalf("Echo to a board that went away: %v, want ErrDisconnected", err)
	}
	if _, err := c.Echo(ctx, "again"); !errors.Is(err, flasher.ErrDisconnected) {
		t.Errorf("Echo after the port hung up: %v, want ErrDisconnected", err)
	}
	c.Close()
	if _, err := c.Echo(ctx, "closed"); !errors.Is(err, flasher.ErrClosed) {
		t.Errorf("Echo on a closed client: %v, want ErrClosed", err)
	}
}

func TestContextCancel(t *testing.T) {
	b := newTestBoard(t, board.Config{})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{Timeout: 10 * time.Second})
	b.SetFaults(board.Faults{Delay: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	if _, err := c.Echo(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("Echo with a cancelled context: %v, want context.Canceled", err)
	}
}

// TestResentChunkWithoutReplay runs an upload against a board that, like
// stock MCUmgr, carries out a resent chunk again: it refuses the offset it
// has already passed, and the client goes on from the board's length.
func TestResentChunkWithoutReplay(t *testing.T) {
	b := newTestBoard(t, board.Config{})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{Timeout: faultTimeout})
	ctx := testCtx(t)
	data := testData(30_000, 5)
	chunks := 0
	progress := func(done, total int) {
		chunks++
		if chunks == 1 {
			// Lose the answer to the second chunk.
			b.SetFaults(board.Faults{CorruptTx: 1, NoReplay: true})
		}
	}
	if err := c.FileUpload(ctx, "/lfs/nr.bin", data, false, progress); err != nil {
		t.Fatalf("FileUpload with a resent chunk and no replay: %v", err)
	}
	if c.Stats().Retries != 1 {
		t.Errorf("Stats().Retries = %d, want 1", c.Stats().Retries)
	}
	got, _ := b.ReadFile("/lfs/nr.bin")
	if !bytes.Equal(got, data) {
		t.Errorf("board holds %d bytes that differ from the %d sent", len(got), len(data))
	}
}

// tamperLink changes one data byte of the second image upload chunk on
// its way to the board, and frames it again with a valid CRC: damage the
// line's checks cannot see.
type tamperLink struct {
	flasher.Link
	dec   flasher.Decoder
	line  []byte
	count int
}

func (l *tamperLink) Write(p []byte) (int, error) {
	var out []byte
	for _, c := range p {
		l.line = append(l.line, c)
		if c != '\n' {
			continue
		}
		msg, _ := l.dec.Line(l.line[:len(l.line)-1])
		if flasher.ClassifyLine(l.line) == flasher.LineOther {
			out = append(out, l.line...)
		}
		l.line = l.line[:0]
		if msg == nil {
			continue
		}
		if m, err := flasher.ParseMessage(msg); err == nil && m.Group == flasher.GroupImage && m.ID == flasher.CmdImageUpload {
			l.count++
			if l.count == 2 {
				msg[len(msg)-1] ^= 0xff // the body ends with the data
			}
		}
		out = mustFrame(out, msg)
	}
	if _, err := l.Link.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func TestImageDamagedInTransit(t *testing.T) {
	b := newTestBoard(t, board.Config{})
	port, err := flasher.OpenPort(b.Path(), testBaud)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	c, err := flasher.NewClient(ctx, &tamperLink{Link: port}, flasher.Options{Baud: testBaud})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	img := flasher.BuildImage(flasher.ImageVersion{Major: 4}, testData(20_000, 6))
	if err := c.ImageUpload(ctx, 0, img, nil); !errors.Is(err, flasher.ErrVerify) {
		t.Fatalf("ImageUpload of an image damaged on the way: %v, want ErrVerify", err)
	}
}

// TestCloseDuringReset closes a board while the answer to a reset is on
// the line: Close must return.
func TestCloseDuringReset(t *testing.T) {
	b := newTestBoard(t, board.Config{Baud: 1200})
	c := newTestClient(t, b.Path(), 1200, flasher.Options{Timeout: 2 * time.Second, SkipParams: true})
	go c.Reset(testCtx(t), false)
	time.Sleep(280 * time.Millisecond) // at 1200 baud: the request is in, the answer going out
	done := make(chan struct{})
	go func() {
		b.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("board.Close did not return while its reset answer was being sent")
	}
}

// mustFrame is flasher.AppendFrame for messages a test knows to fit.
func mustFrame(dst, msg []byte) []byte {
	out, err := flasher.AppendFrame(dst, msg)
	if err != nil {
		panic(err)
	}
	return out
}
