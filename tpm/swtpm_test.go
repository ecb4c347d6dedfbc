package tpm_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"zerotouch/board"
	"zerotouch/internal/tpmdev"
	"zerotouch/tpm"
)

// readPublicTool reads the key at handle with tpm2-tools' tpm2_readpublic
// through its swtpm TCTI, and returns the TPM2B_PUBLIC it writes.
func readPublicTool(t *testing.T, addr, handle string) []byte {
	t.Helper()
	bin, err := exec.LookPath("tpm2_readpublic")
	if err != nil {
		t.Skip("tpm2-tools is not installed (the README's install step installs it)")
	}
	host, port, _ := net.SplitHostPort(addr)
	out := filepath.Join(t.TempDir(), "key.pub")
	cmd := exec.Command(bin, "-c", handle, "-o", out, "-f", "tss")
	cmd.Env = append(os.Environ(), fmt.Sprintf("TPM2TOOLS_TCTI=swtpm:host=%s,port=%s", host, port))
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tpm2_readpublic -c %s: %v\n%s", handle, err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestSwtpmDirect persists the EK and SRK in swtpm over TCP and checks
// them against what tpm2-tools reads back.
func TestSwtpmDirect(t *testing.T) {
	// A TPM no firmware has started, as on a board whose firmware leaves
	// that to the device SDK: zerotouch starts it.
	addr := startSwtpm(t, false)
	tr, err := tpmdev.Open("tcp:"+addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: 0x81000000, PropertyCount: 1}).Execute(tr); !errors.Is(err, tpm2.TPMRCInitialize) {
		t.Fatalf("a TPM not started answers %v, want TPM_RC_INITIALIZE", err)
	}
	srk, err := tpm.New(tr, tpm.Options{}).SRK(testCtx(t))
	if err != nil {
		t.Fatalf("SRK on a TPM not started: %v", err)
	}
	ek := checkEK(t, tr, tpm.Options{})
	tr.Close() // swtpm serves one connection at a time

	checkTool(t, addr, "0x81010001", ek.TPM2B)
	checkTool(t, addr, "0x81000001", srk.TPM2B)
}

func checkTool(t *testing.T, addr, handle string, want []byte) {
	t.Helper()
	got := readPublicTool(t, addr, handle)
	if !bytes.Equal(got, want) {
		t.Fatalf("tpm2_readpublic -c %s gives %d bytes %x...,\nzerotouch read %d bytes %x...", handle, len(got), got[:min(16, len(got))], len(want), want[:min(16, len(want))])
	}
	// The registration ID follows from the bytes the tool read.
	sum := sha256.Sum256(got)
	if handle == "0x81010001" && tpm.RegistrationID(got) != base32Lower(sum[:]) {
		t.Errorf("registration ID of the tool's bytes differs")
	}
}

// TestSwtpmThroughBoard does the same through a virtual board whose TPM
// is swtpm, and checks that the signing key outlives the connection.
func TestSwtpmThroughBoard(t *testing.T) {
	addr := startSwtpm(t, true)
	tb := newTestBoard(t, board.Config{Serial: "ZTS000001", TPM: "tcp:" + addr}, testBaud)
	ctx := testCtx(t)
	ek := checkEK(t, tb.c.TPM(ctx), tpm.Options{Board: tb.cfg.Serial})
	s, err := tpm.New(tb.c.TPM(ctx), tpm.Options{Board: tb.cfg.Serial}).SigningKey(ctx, tpm.RSA2048, tpm.DefaultKeyHandle)
	if err != nil {
		t.Fatal(err)
	}
	tb.c.Close()
	tb.b.Close()

	checkTool(t, addr, "0x81010001", ek.TPM2B)

	// Another board on the same TPM: the persisted key still signs.
	tb2 := newTestBoard(t, board.Config{Serial: "ZTS000001", TPM: "tcp:" + addr}, testBaud)
	s2, err := tpm.New(tb2.c.TPM(ctx), tpm.Options{Board: tb2.cfg.Serial}).LoadSigner(ctx, tpm.DefaultKeyHandle)
	if err != nil {
		t.Fatalf("LoadSigner on the reopened TPM: %v", err)
	}
	if !s2.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(s.Public()) {
		t.Fatal("the reopened TPM has another key at the handle")
	}
	csr, err := tpm.CSR(s2, "zt-swtpm")
	if err != nil {
		t.Fatal(err)
	}
	checkCSR(t, csr, "zt-swtpm", s.Public())
}
