package tpm_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"zerotouch/board"
	"zerotouch/internal/tpmdev"
	"zerotouch/tpm"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// base32Lower is RFC 4648 base32 written out bit by bit, lower case and
// unpadded: the registration ID rule, computed apart from the package.
func base32Lower(b []byte) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var out []byte
	var acc, bits uint
	for _, c := range b {
		acc = acc<<8 | uint(c)
		bits += 8
		for bits >= 5 {
			out = append(out, alphabet[acc>>(bits-5)&31])
			bits -= 5
		}
	}
	if bits > 0 {
		out = append(out, alphabet[acc<<(5-bits)&31])
	}
	return string(out)
}

// checkEK runs the EK read twice on tpm: the first creates and persists
// the EK and the SRK's absence is left alone; the second finds the same
// key and makes nothing.
func checkEK(t *testing.T, tr transport.TPM, opts tpm.Options) *tpm.Public {
	t.Helper()
	before := persistentHandles(t, tr)
	if slices.Contains(before, tpm.EKHandle) {
		t.Fatalf("a fresh TPM already has an EK persisted: %v", before)
	}
	d := tpm.New(tr, opts)
	ek, err := d.EK(testCtx(t))
	if err != nil {
		t.Fatalf("EK on a fresh TPM: %v", err)
	}
	if !ek.Created || ek.Handle != tpm.EKHandle {
		t.Errorf("EK = handle %#x, created %v; want created at 0x81010001", uint32(ek.Handle), ek.Created)
	}
	after := persistentHandles(t, tr)
	if want := append(slices.Clone(before), tpm.EKHandle); !slices.Equal(after, want) {
		t.Errorf("persistent handles after EK = %v, want %v", after, want)
	}

	again, err := tpm.New(tr, opts).EK(testCtx(t))
	if err != nil {
		t.Fatalf("second EK read: %v", err)
	}
	if again.Created || !bytes.Equal(again.TPM2B, ek.TPM2B) {
		t.Errorf("second EK read: created %v, same bytes %v; want the persisted key, not a new one", again.Created, bytes.Equal(again.TPM2B, ek.TPM2B))
	}
	if got := persistentHandles(t, tr); !slices.Equal(got, after) {
		t.Errorf("persistent handles after a second read = %v, want %v (no second object)", got, after)
	}

	// The TPM2B is a 2-byte size, then the TPMT_PUBLIC.
	if n := int(ek.TPM2B[0])<<8 | int(ek.TPM2B[1]); n != len(ek.TPM2B)-2 {
		t.Errorf("TPM2B size prefix %d, with %d bytes after it", n, len(ek.TPM2B)-2)
	}
	sum := sha256.Sum256(ek.TPM2B)
	if got, want := ek.RegistrationID(), base32Lower(sum[:]); got != want || len(got) != 52 {
		t.Errorf("RegistrationID() = %q, want %q (52 characters)", got, want)
	}
	if got, want := ek.EndorsementKey(), base64.StdEncoding.EncodeToString(ek.TPM2B); got != want {
		t.Errorf("EndorsementKey() = %q, want %q", got, want)
	}
	if len(ek.Fingerprint()) != 64 {
		t.Errorf("Fingerprint() = %q, want 64 hex digits", ek.Fingerprint())
	}
	return ek
}

func TestEKSimulator(t *testing.T) {
	sim := newSim(t, 1)
	ek := checkEK(t, sim, tpm.Options{})

	// The Azure template, built independently from go-tpm-tools' TCG
	// template with its unique field emptied, makes the same key; the
	// TCG template unchanged makes another one.
	legacy := client.DefaultEKTemplateRSA()
	legacy.RSAParameters.ModulusRaw = nil
	enc, err := legacy.Encode()
	if err != nil {
		t.Fatal(err)
	}
	azure := createPrimaryTPM2B(t, sim, tpm2.BytesAs2B[tpm2.TPMTPublic](enc))
	if !bytes.Equal(azure, ek.TPM2B) {
		t.Errorf("EK differs from the key of go-tpm-tools' EK template with an empty unique")
	}
	tcg := createPrimaryTPM2B(t, sim, tpm2.New2B(tpm2.RSAEKTemplate))
	if bytes.Equal(tcg, ek.TPM2B) {
		t.Errorf("EK equals the TCG template's key: the Azure template must differ")
	}
}

func createPrimaryTPM2B(t *testing.T, tr transport.TPM, tmpl tpm2.TPM2BPublic) []byte {
	t.Helper()
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tmpl,
	}.Execute(tr)
	if err != nil {
		t.Fatalf("create primary: %v", err)
	}
	tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tr)
	return tpm2.Marshal(rsp.OutPublic)
}

func TestEKThroughBoard(t *testing.T) {
	tb := newTestBoard(t, board.Config{}, testBaud)
	ek := checkEK(t, tb.c.TPM(testCtx(t)), tpm.Options{Board: tb.cfg.Serial})

	// The board's simulator has the seed the board's serial gives it: the
	// same EK comes out of a simulator opened directly with that seed.
	tb.b.Close()
	sim := newSim(t, board.SimulatorSeed(tb.cfg.Serial))
	direct, err := tpm.New(sim, tpm.Options{}).EK(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(direct.TPM2B, ek.TPM2B) {
		t.Errorf("EK through the board differs from the EK read directly")
	}
}

// golden is the identity of the simulator with seed 20261123, pinned so
// that any change to the template or the encoding shows.
type golden struct {
	Seed           int64  `json:"seed"`
	RegistrationID string `json:"registrationId"`
	EndorsementKey string `json:"endorsementKey"`
	SRK            string `json:"storageRootKey"`
}

func TestEKGolden(t *testing.T) {
	const seed = 20261123
	sim := newSim(t, seed)
	d := tpm.New(sim, tpm.Options{})
	ek, err := d.EK(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	srk, err := d.SRK(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	got := golden{Seed: seed, RegistrationID: ek.RegistrationID(), EndorsementKey: ek.EndorsementKey(), SRK: srk.EndorsementKey()}
	path := filepath.Join("testdata", "golden-ek.json")
	if *update {
		data, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	var want golden
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("identity of seed %d =\n%+v\nwant\n%+v", seed, got, want)
	}
	// The golden registration ID follows from the golden key bytes.
	raw, _ := base64.StdEncoding.DecodeString(want.EndorsementKey)
	if tpm.RegistrationID(raw) != want.RegistrationID {
		t.Errorf("golden registration ID does not follow from the golden EK")
	}
}

// TestRegistrationIDVector pins the derivation on fixed bytes.
func TestRegistrationIDVector(t *testing.T) {
	tests := []struct{ in, want string }{
		// SHA-256 of the empty string, e3b0c442..., in base32.
		{"", "4oymiquy7qobjgx36tejs35zeqt24qpemsnzgtfeswmrw6csxbkq"},
		{"\x00\x01a", base32Lower(sha(string([]byte{0, 1, 'a'})))},
	}
	for _, tt := range tests {
		if got := tpm.RegistrationID([]byte(tt.in)); got != tt.want {
			t.Errorf("RegistrationID(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func sha(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

func TestEKNoCreate(t *testing.T) {
	sim := newSim(t, 2)
	_, err := tpm.New(sim, tpm.Options{Board: "ZT42", NoCreate: true}).EK(testCtx(t))
	var te *tpm.Error
	if !errors.Is(err, tpm.ErrNoEK) || !errors.As(err, &te) || te.Board != "ZT42" || te.Step != "read EK at 0x81010001" {
		t.Fatalf("EK with NoCreate on an empty TPM = %v, want ErrNoEK naming board ZT42 and the step", err)
	}
	if h := persistentHandles(t, sim); len(h) != 0 {
		t.Errorf("NoCreate persisted %v", h)
	}
	// A vendor-provisioned EK (the TCG template's) is read and kept.
	persistPrimary(t, sim, tpm2.TPMRHEndorsement, tpm2.RSAEKTemplate, tpm.EKHandle)
	ek, err := tpm.New(sim, tpm.Options{NoCreate: true}).EK(testCtx(t))
	if err != nil || ek.Created {
		t.Fatalf("EK with NoCreate on a provisioned TPM = %v, %v", ek, err)
	}
}

func TestNotEK(t *testing.T) {
	sim := newSim(t, 3)
	persistPrimary(t, sim, tpm2.TPMRHOwner, tpm2.ECCSRKTemplate, tpm.EKHandle)
	_, err := tpm.New(sim, tpm.Options{Board: "ZT43"}).EK(testCtx(t))
	if !errors.Is(err, tpm.ErrNotEK) {
		t.Fatalf("EK over an ECC storage key = %v, want ErrNotEK", err)
	}
	for _, want := range []string{"board ZT43", "read EK at 0x81010001", "ECC", "not the EK policy"} {
		if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	// Nothing was replaced.
	rp, err := tpm2.ReadPublic{ObjectHandle: tpm.EKHandle}.Execute(sim)
	if pub, _ := rp.OutPublic.Contents(); err != nil || pub.Type != tpm2.TPMAlgECC {
		t.Errorf("the key at 0x81010001 changed: %v, %v", pub, err)
	}

	// An EK where the SRK should be.
	persistPrimary(t, sim, tpm2.TPMRHEndorsement, tpm2.RSAEKTemplate, tpm.SRKHandle)
	if _, err := tpm.New(sim, tpm.Options{}).SRK(testCtx(t)); !errors.Is(err, tpm.ErrHandleInUse) {
		t.Errorf("SRK over an EK = %v, want ErrHandleInUse", err)
	}
}

func TestGarbageThroughBoard(t *testing.T) {
	tb := newTestBoard(t, board.Config{Serial: "ZTG000001"}, testBaud)
	d := tpm.New(tb.c.TPM(testCtx(t)), tpm.Options{Board: tb.cfg.Serial})
	for n := 1; n <= 2; n++ { // a good header over garbage, then a random header
		tb.b.SetFaults(board.Faults{TPMGarbage: n})
		_, err := d.EK(testCtx(t))
		var te *tpm.Error
		if !errors.Is(err, tpm.ErrMalformed) || !errors.As(err, &te) || te.Board != "ZTG000001" || te.Step == "" {
			t.Fatalf("EK with %d garbage responses = %v, want ErrMalformed naming the board and step", n, err)
		}
		t.Logf("garbage %d: %v", n, err)
	}
	// Once the TPM answers properly again, the read succeeds.
	tb.b.SetFaults(board.Faults{})
	if _, err := d.EK(testCtx(t)); err != nil {
		t.Fatalf("EK after the fault cleared: %v", err)
	}
}

func TestTransportError(t *testing.T) {
	tb := newTestBoard(t, board.Config{Serial: "ZTL000001"}, testBaud)
	d := tpm.New(tb.c.TPM(testCtx(t)), tpm.Options{Board: tb.cfg.Serial})
	tb.b.SetFaults(board.Faults{RC: map[string]int{"prov.tpm": 3}})
	_, err := d.EK(testCtx(t))
	if !errors.Is(err, tpm.ErrTransport) || !bytes.Contains([]byte(err.Error()), []byte("board ZTL000001: read EK")) {
		t.Fatalf("EK with the passthrough failing = %v, want ErrTransport naming board and step", err)
	}
}

// TestRealTPM reads the identity of the TPM named by -tpm.
func TestRealTPM(t *testing.T) {
	if *realTPM == "" {
		t.Skip("no -tpm given")
	}
	tr, err := tpmdev.Open(*realTPM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	d := tpm.New(tr, tpm.Options{})
	ek, err := d.EK(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.SRK(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	cert, err := d.EKCertificate(testCtx(t), ek, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("registration ID %s, EK certificate %s (%v)", ek.RegistrationID(), cert.Status, cert.Err)
}

// busyTPM answers the first n commands with TPM_RC_RETRY, as a busy TPM
// does, then passes them on.
type busyTPM struct {
	transport.TPM
	n, sent int
}

func (b *busyTPM) Send(cmd []byte) ([]byte, error) {
	b.sent++
	if b.n > 0 {
		b.n--
		return []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x22}, nil
	}
	return b.TPM.Send(cmd)
}

func TestRetry(t *testing.T) {
	busy := &busyTPM{TPM: newSim(t, 6), n: 3}
	if _, err := tpm.New(busy, tpm.Options{}).EK(testCtx(t)); err != nil {
		t.Fatalf("EK with a TPM that asks for 3 retries: %v", err)
	}
	// A TPM that never stops asking gives up with the TPM's code.
	busy.n = 1000
	_, err := tpm.New(busy, tpm.Options{}).EK(testCtx(t))
	if !errors.Is(err, tpm2.TPMRCRetry) {
		t.Fatalf("EK with a TPM that always asks for a retry = %v, want TPM_RC_RETRY", err)
	}
}
