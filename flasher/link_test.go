package flasher_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"flag"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"zerotouch/board"
	"zerotouch/flasher"
)

// testBaud runs functional tests fast; timing is the benchmark's business.
const testBaud = 2_000_000

var portFlag = flag.String("port", "", "run the link tests against the real board on this serial port instead of a virtual board")

// newTestBoard starts a virtual board for the test.
func newTestBoard(t testing.TB, cfg board.Config) *board.Board {
	t.Helper()
	if cfg.Serial == "" {
		cfg.Serial = "TEST0001"
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Baud == 0 {
		cfg.Baud = testBaud
	}
	if cfg.TPM == "" {
		cfg.TPM = board.TPMNone
	}
	b, err := board.Start(cfg)
	if err != nil {
		t.Fatalf("board.Start: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// newTestClient opens the board's pseudo-terminal with go.bug.st/serial.
func newTestClient(t testing.TB, path string, baud int, opts flasher.Options) *flasher.Client {
	t.Helper()
	opts.Baud = baud
	if opts.Timeout == 0 {
		opts.Timeout = 500 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := flasher.Open(ctx, path, opts)
	if err != nil {
		t.Fatalf("flasher.Open(%s): %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEchoParamsInfoIdentity(t *testing.T) {
	b := newTestBoard(t, board.Config{Serial: "SN-ECHO", BufSize: 2048, BufCount: 3})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{})
	ctx := testCtx(t)

	if got, want := c.Params(), (flasher.Params{BufSize: 2048, BufCount: 3}); got != want {
		t.Errorf("Params() = %+v, want %+v", got, want)
	}
	for _, text := range []string{"", "hello", string(bytes.Repeat([]byte("x"), 1500))} {
		got, err := c.Echo(ctx, text)
		if err != nil || got != text {
			t.Errorf("Echo(%d bytes) = %d bytes, %v", len(text), len(got), err)
		}
	}
	info, err := c.Info(ctx, "a")
	if err != nil || !bytes.Contains([]byte(info), []byte("SN-ECHO")) {
		t.Errorf("Info(a) = %q, %v; want the node name SN-ECHO in it", info, err)
	}
	if _, err := c.Info(ctx, "q"); !errors.As(err, new(*flasher.Error)) {
		t.Errorf("Info(q) error = %v, want a board error", err)
	}
	id, err := c.Identity(ctx)
	if err != nil {
		t.Fatalf("Identity: %v", err)
	}
	if id.Serial != "SN-ECHO" || id.FW != "1.0.0" || id.Has(flasher.CapTPM) || !id.Has(flasher.CapFS) {
		t.Errorf("Identity() = %+v, want serial SN-ECHO, fw 1.0.0, fs and no tpm", id)
	}
}

func TestFileUploadDownloadHash(t *testing.T) {
	b := newTestBoard(t, board.Config{})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{})
	ctx := testCtx(t)
	for _, size := range []int{0, 1, 4 << 10, 64 << 10} {
		data := make([]byte, size)
		rand.Read(data)
		name := "/lfs/test.bin"
		var calls, last int
		err := c.FileUpload(ctx, name, data, false, func(done, total int) {
			calls++
			if done < last || total != size {
				t.Errorf("progress(%d, %d) after %d", done, total, last)
			}
			last = done
		})
		if err != nil {
			t.Fatalf("FileUpload(%d bytes): %v", size, err)
		}
		if last != size {
			t.Errorf("FileUpload(%d bytes): progress ended at %d", size, last)
		}
		stored, err := b.ReadFile(name)
		if err != nil || !bytes.Equal(stored, data) {
			t.Fatalf("board holds %d bytes (%v), want the %d uploaded", len(stored), err, size)
		}
		got, err := c.FileDownload(ctx, name, nil)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("FileDownload = %d bytes, %v; want the %d uploaded", len(got), err, size)
		}
		if size == 0 {
			continue
		}
		sum, n, err := c.FileHash(ctx, name, 0, 0)
		want := sha256.Sum256(data)
		if err != nil || n != size || !bytes.Equal(sum, want[:]) {
			t.Errorf("FileHash = %x, %d, %v; want %x, %d", sum, n, err, want, size)
		}
	}
	_, err := c.FileDownload(ctx, "/lfs/missing", nil)
	if !errors.Is(err, flasher.ErrNotFound) {
		t.Errorf("FileDownload(missing) error = %v, want ErrNotFound", err)
	}
	_, err = c.FileStatus(ctx, "/lfs/../etc/passwd")
	if !errors.Is(err, flasher.ErrInvalid) {
		t.Errorf("FileStatus(../) error = %v, want ErrInvalid", err)
	}
}

func TestImageUpload(t *testing.T) {
	b := newTestBoard(t, board.Config{})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{})
	ctx := testCtx(t)

	body := make([]byte, 256<<10-100)
	rand.Read(body)
	img := flasher.BuildImage(flasher.ImageVersion{Major: 2, Minor: 1, Revision: 7}, body)
	info, err := flasher.ParseImage(img)
	if err != nil {
		t.Fatalf("ParseImage: %v", err)
	}
	var steps, last int
	if err := c.ImageUpload(ctx, 0, img, func(done, total int) { steps++; last = done }); err != nil {
		t.Fatalf("ImageUpload: %v", err)
	}
	if last != len(img) || steps < len(img)/c.Params().BufSize {
		t.Errorf("progress: %d calls ending at %d, want about one per chunk ending at %d", steps, last, len(img))
	}
	states, err := c.ImageStates(ctx)
	if err != nil {
		t.Fatalf("ImageStates: %v", err)
	}
	if len(states) != 2 || states[1].Version != "2.1.7" || !bytes.Equal(states[1].Hash, info.Hash) {
		t.Fatalf("ImageStates() = %+v, want slot 1 holding 2.1.7 with hash %x", states, info.Hash)
	}
	if _, err := c.ImageSetPending(ctx, info.Hash, false); err != nil {
		t.Fatalf("ImageSetPending: %v", err)
	}
	if err := c.Reset(ctx, false); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if err := c.WaitReady(ctx, 200*time.Millisecond); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	id, err := c.Identity(ctx)
	if err != nil || id.FW != "2.1.7" {
		t.Fatalf("after reset Identity() = %+v, %v; want fw 2.1.7", id, err)
	}
	if st := c.Stats(); st.StrayLines == 0 {
		t.Errorf("Stats() = %+v: the boot banner should count as a stray line", st)
	}

	if err := c.ImageUpload(ctx, 0, []byte("not an image, but long enough to hold a header......"), nil); !errors.Is(err, flasher.ErrInvalid) {
		t.Errorf("ImageUpload(garbage) error = %v, want ErrInvalid", err)
	}
}

func TestTPMPassthrough(t *testing.T) {
	b := newTestBoard(t, board.Config{TPM: board.TPMSim})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{})
	ctx := testCtx(t)
	tpm := c.TPM(ctx)

	// Read the EK template's public area the way any go-tpm code would.
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tpm2.RSAEKTemplate),
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("CreatePrimary through the board: %v", err)
	}
	defer tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tpm)
	pub, err := tpm2.ReadPublic{ObjectHandle: rsp.ObjectHandle}.Execute(tpm)
	if err != nil {
		t.Fatalf("ReadPublic through the board: %v", err)
	}
	if !bytes.Equal(pub.OutPublic.Bytes(), rsp.OutPublic.Bytes()) {
		t.Errorf("ReadPublic returned a different public area than CreatePrimary")
	}
	p, err := pub.OutPublic.Contents()
	if err != nil || p.Type != tpm2.TPMAlgRSA {
		t.Errorf("EK public = %v, %v; want an RSA key", p, err)
	}
}

func TestNoTPM(t *testing.T) {
	b := newTestBoard(t, board.Config{TPM: board.TPMNone})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{})
	_, err := tpm2.GetRandom{BytesRequested: 8}.Execute(c.TPM(testCtx(t)))
	if !errors.Is(err, flasher.ErrNotSupported) || !errors.Is(err, flasher.ErrTPMLink) {
		t.Errorf("GetRandom on a board without TPM: %v, want ErrNotSupported and ErrTPMLink", err)
	}
}

func TestKeygen(t *testing.T) {
	b := newTestBoard(t, board.Config{})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{})
	ctx := testCtx(t)
	for _, alg := range []string{flasher.AlgECDSAP256, flasher.AlgRSA2048} {
		csr, err := c.Keygen(ctx, alg, "device-0001")
		if err != nil {
			t.Fatalf("Keygen(%s): %v", alg, err)
		}
		if csr.Subject.CommonName != "device-0001" {
			t.Errorf("Keygen(%s) CN = %q", alg, csr.Subject.CommonName)
		}
		pub, _ := x509.MarshalPKIXPublicKey(csr.PublicKey)
		boardPub, _ := x509.MarshalPKIXPublicKey(b.DeviceKey(alg))
		if !bytes.Equal(pub, boardPub) {
			t.Errorf("Keygen(%s): CSR key is not the key the board holds", alg)
		}
	}
	if _, ok := b.DeviceKey(flasher.AlgECDSAP256).(*ecdsa.PublicKey); !ok {
		t.Errorf("board's P-256 key is not ECDSA")
	}
	if _, err := c.Keygen(ctx, "dsa-1024", "x"); !errors.Is(err, flasher.ErrNotSupported) {
		t.Errorf("Keygen(dsa-1024) error = %v, want ErrNotSupported", err)
	}
	if _, err := c.Keygen(ctx, flasher.AlgECDSAP256, ""); !errors.Is(err, flasher.ErrInvalid) {
		t.Errorf("Keygen(empty CN) error = %v, want ErrInvalid", err)
	}
}

func TestCommit(t *testing.T) {
	b := newTestBoard(t, board.Config{})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{})
	ctx := testCtx(t)
	cfg := []byte(`{"idScope":"0ne0001A2B3"}`)
	sum := sha256.Sum256(cfg)

	if err := c.Commit(ctx, "/lfs/dps.json", sum[:]); !errors.Is(err, flasher.ErrNotFound) {
		t.Errorf("Commit before the config is written: %v, want ErrNotFound", err)
	}
	if err := c.FileUpload(ctx, "/lfs/dps.json", cfg, false, nil); err != nil {
		t.Fatal(err)
	}
	wrong := sha256.Sum256([]byte("something else"))
	if err := c.Commit(ctx, "/lfs/dps.json", wrong[:]); !errors.Is(err, flasher.ErrMismatch) {
		t.Errorf("Commit(wrong hash) = %v, want ErrMismatch", err)
	}
	if b.Provisioned() {
		t.Fatalf("board provisioned after a commit with the wrong hash")
	}
	if err := c.Commit(ctx, "/lfs/dps.json", sum[:]); err != nil {
		t.Fatalf("Commit(right hash): %v", err)
	}
	if !b.Provisioned() {
		t.Errorf("board not provisioned after a commit with the right hash")
	}
}

// TestRealBoard runs the link's basic round trip against a board on a
// fixture: go test ./flasher -run TestRealBoard -port /dev/ttyACM0. It
// writes /lfs/zerotouch-test.bin on the board.
func TestRealBoard(t *testing.T) {
	if *portFlag == "" {
		t.Skip("no -port given")
	}
	m, err := flasher.ParseMatch(*portFlag)
	if err != nil {
		t.Fatal(err)
	}
	path, err := m.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	c := newTestClient(t, path, 115200, flasher.Options{Timeout: 3 * time.Second})
	ctx := testCtx(t)
	t.Logf("params: %+v", c.Params())
	if got, err := c.Echo(ctx, "zerotouch"); err != nil || got != "zerotouch" {
		t.Fatalf("Echo = %q, %v", got, err)
	}
	id, err := c.Identity(ctx)
	if errors.Is(err, flasher.ErrNotSupported) {
		t.Logf("board has no provisioning group")
	} else if err != nil {
		t.Fatal(err)
	} else {
		t.Logf("identity: %+v", id)
	}
	data := make([]byte, 4096)
	rand.Read(data)
	if err := c.FileUpload(ctx, "/lfs/zerotouch-test.bin", data, false, nil); err != nil {
		t.Fatal(err)
	}
	back, err := c.FileDownload(ctx, "/lfs/zerotouch-test.bin", nil)
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("FileDownload = %d bytes, %v; want the 4096 written", len(back), err)
	}
}
