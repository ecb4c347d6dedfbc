package tpm_test

import (
	"context"
	"errors"
	"flag"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"zerotouch/board"
	"zerotouch/flasher"
	"zerotouch/internal/swtpm"
	"zerotouch/internal/tpmdev"
)

// The simulator is one per process: tests that use it do not run in
// parallel.

var realTPM = flag.String("tpm", "", "also run the read-only identity test against this TPM (tcp:HOST:PORT or /dev/tpmrm0); it may create and persist the EK and SRK")

// testBaud is fast enough to keep the suite short; the benchmarks run at
// real line rates.
const testBaud = 2_000_000

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newSim opens the simulator with a fixed seed, fresh from manufacture.
func newSim(t testing.TB, seed int64) transport.TPMCloser {
	t.Helper()
	sim, err := tpmdev.Open(tpmdev.Sim, seed)
	if err != nil {
		t.Fatalf("open simulator: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	return sim
}

// testBoard is a virtual board on a pseudo-terminal and a client on it.
type testBoard struct {
	b   *board.Board
	c   *flasher.Client
	cfg board.Config
}

// newTestBoard starts a virtual board with cfg's TPM (the simulator by
// default) and connects to it at baud.
func newTestBoard(t testing.TB, cfg board.Config, baud int) *testBoard {
	t.Helper()
	if cfg.Serial == "" {
		cfg.Serial = "ZTT000001"
	}
	if cfg.TPM == "" {
		cfg.TPM = board.TPMSim
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	cfg.Baud = baud
	b, err := board.Start(cfg)
	if err != nil {
		t.Fatalf("start board: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	tb := &testBoard{b: b, cfg: cfg}
	tb.c = tb.connect(t)
	return tb
}

func (tb *testBoard) connect(t testing.TB) *flasher.Client {
	t.Helper()
	c, err := flasher.Open(testCtx(t), tb.b.Path(), flasher.Options{Name: tb.cfg.Serial, Baud: tb.cfg.Baud, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("connect to board: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// persistentHandles lists the TPM's persistent objects.
func persistentHandles(t testing.TB, tpm transport.TPM) []tpm2.TPMHandle {
	t.Helper()
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapHandles,
		Property:      uint32(tpm2.TPMHTPersistent) << 24,
		PropertyCount: 64,
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("list persistent handles: %v", err)
	}
	h, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatalf("list persistent handles: %v", err)
	}
	return h.Handle
}

// evict removes the persistent object at h.
func evict(t testing.TB, tpm transport.TPM, h tpm2.TPMHandle) {
	t.Helper()
	rp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(tpm)
	if err != nil {
		t.Fatalf("read %#x: %v", uint32(h), err)
	}
	_, err = tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     &tpm2.NamedHandle{Handle: h, Name: rp.Name},
		PersistentHandle: h,
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("evict %#x: %v", uint32(h), err)
	}
}

// persistPrimary creates a primary key from tmpl and persists it at h, as
// other software on a board might have.
func persistPrimary(t testing.TB, tpm transport.TPM, hierarchy tpm2.TPMHandle, tmpl tpm2.TPMTPublic, h tpm2.TPMHandle) {
	t.Helper()
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: hierarchy, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("create primary: %v", err)
	}
	defer tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tpm)
	_, err = tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     &tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name},
		PersistentHandle: h,
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("persist at %#x: %v", uint32(h), err)
	}
}

// startSwtpm runs swtpm on loopback and returns its command port's
// address. With startup false, its TPM waits for TPM2_Startup.
func startSwtpm(t testing.TB, startup bool) string {
	t.Helper()
	p, err := swtpm.Start(t.TempDir(), startup)
	if errors.Is(err, swtpm.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p.Addr
}
