package flasher_test

import (
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"zerotouch/board"
	"zerotouch/flasher"
	"zerotouch/internal/swtpm"
)

// startSwtpm runs swtpm on loopback and returns the board's TPM spec
// for it.
func startSwtpm(t *testing.T) string {
	t.Helper()
	p, err := swtpm.Start(t.TempDir(), true)
	if errors.Is(err, swtpm.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return "tcp:" + p.Addr
}

// TestTPMSwtpm runs the passthrough against swtpm over TCP, as a station
// without the simulator's cgo would.
func TestTPMSwtpm(t *testing.T) {
	spec := startSwtpm(t)
	b := newTestBoard(t, board.Config{TPM: spec})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{})
	tpm := c.TPM(testCtx(t))
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tpm2.ECCEKTemplate),
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("CreatePrimary through the board to swtpm: %v", err)
	}
	tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tpm)
	pub, err := rsp.OutPublic.Contents()
	if err != nil || pub.Type != tpm2.TPMAlgECC {
		t.Errorf("EK public = %v, %v; want an ECC key", pub, err)
	}
	id, err := c.Identity(testCtx(t))
	if err != nil || !id.Has(flasher.CapTPM) {
		t.Errorf("Identity = %+v, %v; want the tpm capability", id, err)
	}
}
