package tpm_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"zerotouch/internal/dpstpm"
	"zerotouch/internal/tpmdev"
	"zerotouch/tpm"
)

// identityOf reads (making if need be) a TPM's EK and SRK, the two keys a
// DPS challenge is made for.
func identityOf(t *testing.T, tr transport.TPM) (ek, srk *tpm.Public) {
	t.Helper()
	d := tpm.New(tr, tpm.Options{})
	ek, err := d.EK(testCtx(t))
	if err != nil {
		t.Fatalf("EK: %v", err)
	}
	srk, err = d.SRK(testCtx(t))
	if err != nil {
		t.Fatalf("SRK: %v", err)
	}
	return ek, srk
}

// randomKey is a fresh HMAC key of n bytes.
func randomKey(t *testing.T, n int) []byte {
	t.Helper()
	k := make([]byte, n)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// challenge makes a DPS activation blob for ek and srk carrying key.
func challenge(t *testing.T, ek, srk *tpm.Public, key []byte) []byte {
	t.Helper()
	blob, err := dpstpm.Challenge(rand.Reader, ek.TPM2B, srk.TPM2B, key)
	if err != nil {
		t.Fatalf("Challenge: %v", err)
	}
	return blob
}

func hmacSHA256(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

// handlesOf lists the TPM's handles of one type.
func handlesOf(t *testing.T, tr transport.TPM, ht tpm2.TPMHT) []tpm2.TPMHandle {
	t.Helper()
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapHandles,
		Property:      uint32(ht) << 24,
		PropertyCount: 64,
	}.Execute(tr)
	if err != nil {
		t.Fatalf("list handles of type %#x: %v", uint8(ht), err)
	}
	h, err := rsp.CapabilityData.Data.Handles()
	if err != nil {
		t.Fatalf("list handles of type %#x: %v", uint8(ht), err)
	}
	return h.Handle
}

// checkNothingLoaded fails if a transient object or a session is left in
// the TPM.
func checkNothingLoaded(t *testing.T, tr transport.TPM, after string) {
	t.Helper()
	for _, ht := range []tpm2.TPMHT{tpm2.TPMHTTransient, tpm2.TPMHTHMACSession, tpm2.TPMHTPolicySession} {
		if h := handlesOf(t, tr, ht); len(h) > 0 {
			t.Errorf("after %s, handles of type %#x are left in the TPM: %#x", after, uint8(ht), h)
		}
	}
}

// checkIdentityHMAC checks that the TPM's identity key computes the same
// HMAC-SHA256 as key does in Go, for data of several sizes: one TPM2_HMAC
// and, beyond the TPM's input buffer, an HMAC sequence.
func checkIdentityHMAC(t *testing.T, d *tpm.Device, tr transport.TPM, key []byte) {
	t.Helper()
	sas := []byte("0ne00000001%2Fregistrations%2Fabcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwxyz\n1795424126")
	for _, data := range [][]byte{nil, sas, randomKey(t, 1024), randomKey(t, 1025), randomKey(t, 5000)} {
		got, err := d.IdentityHMAC(testCtx(t), data)
		if err != nil {
			t.Fatalf("IdentityHMAC(%d bytes): %v", len(data), err)
		}
		if want := hmacSHA256(key, data); !bytes.Equal(got, want) {
			t.Fatalf("IdentityHMAC(%d bytes) = %x, want %x", len(data), got, want)
		}
	}
	checkNothingLoaded(t, tr, "IdentityHMAC")
}

// testIdentity runs the DPS TPM challenge on tr, whose TPM is fresh, with
// other, a second TPM's EK and SRK, for the blobs that must fail.
func testIdentity(t *testing.T, tr transport.TPM, otherEK, otherSRK *tpm.Public) {
	ctx := testCtx(t)
	d := tpm.New(tr, tpm.Options{Board: "ZTI000001"})
	ek, srk := identityOf(t, tr)

	// Before any challenge there is no identity key.
	if _, err := d.IdentityHMAC(ctx, []byte("x")); !errors.Is(err, tpm.ErrNoIdentityKey) {
		t.Fatalf("IdentityHMAC before any import: %v, want ErrNoIdentityKey", err)
	}
	// Another kind of key at the handle is not used for HMACs, and the
	// import replaces it.
	persistPrimary(t, tr, tpm2.TPMRHOwner, tpm2.ECCSRKTemplate, tpm.IdentityKeyHandle)
	if _, err := d.IdentityHMAC(ctx, []byte("x")); !errors.Is(err, tpm.ErrHandleInUse) {
		t.Fatalf("IdentityHMAC with an ECC key at 0x81000100: %v, want ErrHandleInUse", err)
	}

	// The challenge for this TPM imports, and the TPM's HMAC is the key's.
	key1 := randomKey(t, 32)
	start := time.Now()
	if err := d.ImportIdentityKey(ctx, challenge(t, ek, srk, key1)); err != nil {
		t.Fatalf("ImportIdentityKey: %v", err)
	}
	t.Logf("ImportIdentityKey took %v", time.Since(start))
	checkNothingLoaded(t, tr, "ImportIdentityKey")
	persisted := persistentHandles(t, tr)
	if want := []tpm2.TPMHandle{tpm.SRKHandle, tpm.IdentityKeyHandle, tpm.EKHandle}; !slices.Equal(persisted, want) {
		t.Errorf("persistent handles after import = %#x, want %#x", persisted, want)
	}
	checkIdentityHMAC(t, d, tr, key1)

	// A second challenge replaces the key, at the same handle.
	key2 := randomKey(t, dpstpm.MaxKeySize)
	start = time.Now()
	if err := d.ImportIdentityKey(ctx, challenge(t, ek, srk, key2)); err != nil {
		t.Fatalf("second ImportIdentityKey: %v", err)
	}
	t.Logf("second ImportIdentityKey (replacing the key) took %v", time.Since(start))
	if got := persistentHandles(t, tr); !slices.Equal(got, persisted) {
		t.Errorf("persistent handles after a second import = %#x, want %#x", got, persisted)
	}
	checkIdentityHMAC(t, d, tr, key2)
	if got, _ := d.IdentityHMAC(ctx, []byte("x")); bytes.Equal(got, hmacSHA256(key1, []byte("x"))) {
		t.Errorf("the first key still signs after the second import")
	}

	// Blobs this TPM must refuse. Each leaves key2 in place and nothing
	// loaded.
	short := challenge(t, ek, srk, key1)
	bad := challenge(t, ek, srk, key1)
	bad[len(bad)/2] ^= 1 // inside the duplicate: the outer HMAC fails
	// A credential for this TPM around a key wrapped for another SRK.
	mine, err := dpstpm.Parse(challenge(t, ek, srk, key1))
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := dpstpm.Parse(challenge(t, ek, otherSRK, key1))
	if err != nil {
		t.Fatal(err)
	}
	spliced := (&dpstpm.Blob{CredentialBlob: mine.CredentialBlob, Secret: mine.Secret, Duplicate: theirs.Duplicate, InSymSeed: theirs.InSymSeed, Public: theirs.Public}).Marshal()
	for _, tt := range []struct {
		name    string
		blob    []byte
		wantErr error
	}{
		{"another TPM's EK", challenge(t, otherEK, srk, key1), tpm.ErrWrongTPM},
		{"another TPM's SRK", challenge(t, ek, otherSRK, key1), tpm.ErrWrongTPM},
		{"another TPM", challenge(t, otherEK, otherSRK, key1), tpm.ErrWrongTPM},
		{"truncated", short[:len(short)-3], dpstpm.ErrMalformed},
		{"damaged duplicate", bad, tpm.ErrBadChallenge},
		{"key wrapped for another SRK", spliced, tpm.ErrBadChallenge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := d.ImportIdentityKey(ctx, tt.blob)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ImportIdentityKey(%s) = %v, want %v", tt.name, err, tt.wantErr)
			}
			var te *tpm.Error
			if !errors.As(err, &te) || te.Board != "ZTI000001" || te.Step == "" {
				t.Errorf("ImportIdentityKey(%s) = %#v, want a *tpm.Error naming the board and the step", tt.name, err)
			}
			t.Logf("%s: %v", tt.name, err)
			checkNothingLoaded(t, tr, "a refused import")
			got, err := d.IdentityHMAC(ctx, []byte("x"))
			if err != nil || !bytes.Equal(got, hmacSHA256(key2, []byte("x"))) {
				t.Errorf("after a refused import, IdentityHMAC = %x, %v; want the previous key's HMAC", got, err)
			}
		})
	}

	// A cancelled context stops the import before the TPM is touched.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := d.ImportIdentityKey(cctx, challenge(t, ek, srk, key1)); !errors.Is(err, context.Canceled) {
		t.Errorf("ImportIdentityKey with a cancelled context = %v, want context.Canceled", err)
	}

	// A context cancelled between commands: what was loaded is flushed,
	// and the previous key stays.
	for _, cc := range []tpm2.TPMCC{tpm2.TPMCCPolicySecret, tpm2.TPMCCActivateCredential, tpm2.TPMCCImport, tpm2.TPMCCLoad, tpm2.TPMCCHMACStart, tpm2.TPMCCSequenceUpdate} {
		cctx, cancel := context.WithCancel(ctx)
		cd := tpm.New(&cancelAfter{TPM: tr, cc: cc, cancel: cancel}, tpm.Options{})
		var err error
		if cc == tpm2.TPMCCHMACStart || cc == tpm2.TPMCCSequenceUpdate {
			_, err = cd.IdentityHMAC(cctx, make([]byte, 5000))
		} else {
			err = cd.ImportIdentityKey(cctx, challenge(t, ek, srk, key1))
		}
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled after command %#x: %v, want context.Canceled", uint32(cc), err)
		}
		checkNothingLoaded(t, tr, fmt.Sprintf("cancellation after command %#x", uint32(cc)))
	}
	if got, err := d.IdentityHMAC(ctx, []byte("x")); err != nil || !bytes.Equal(got, hmacSHA256(key2, []byte("x"))) {
		t.Errorf("after cancelled imports, IdentityHMAC = %x, %v; want the previous key's HMAC", got, err)
	}
}

// cancelAfter is a transport that cancels a context once the TPM has
// answered a command with code cc.
type cancelAfter struct {
	transport.TPM
	cc     tpm2.TPMCC
	cancel context.CancelFunc
}

func (c *cancelAfter) Send(cmd []byte) ([]byte, error) {
	rsp, err := c.TPM.Send(cmd)
	if len(cmd) >= 10 && tpm2.TPMCC(binary.BigEndian.Uint32(cmd[6:])) == c.cc {
		c.cancel()
	}
	return rsp, err
}

func TestIdentitySimulator(t *testing.T) {
	// Another TPM: the simulator with another seed.
	other := newSim(t, 2)
	otherEK, otherSRK := identityOf(t, other)
	other.Close()

	sim := newSim(t, 1)
	testIdentity(t, sim, otherEK, otherSRK)
}

func TestIdentitySwtpm(t *testing.T) {
	otherAddr := startSwtpm(t, true)
	other, err := tpmdev.Open("tcp:"+otherAddr, 0)
	if err != nil {
		t.Fatal(err)
	}
	otherEK, otherSRK := identityOf(t, other)
	other.Close()

	addr := startSwtpm(t, true)
	tr, err := tpmdev.Open("tcp:"+addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	testIdentity(t, tr, otherEK, otherSRK)
	tr.Close() // swtpm serves one connection at a time

	// Other software finds the key where the device SDK looks for it:
	// tpm2-tools computes the same HMAC with it.
	tr, err = tpmdev.Open("tcp:"+addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	d := tpm.New(tr, tpm.Options{})
	ek, srk := identityOf(t, tr)
	key := randomKey(t, 32)
	if err := d.ImportIdentityKey(testCtx(t), challenge(t, ek, srk, key)); err != nil {
		t.Fatal(err)
	}
	tr.Close()
	data := []byte("0ne00000001/registrations/dev-1\n1795424126")
	if got, want := hmacTool(t, addr, data), hmacSHA256(key, data); !bytes.Equal(got, want) {
		t.Errorf("tpm2_hmac -c 0x81000100 = %x, want %x", got, want)
	}
}

// hmacTool computes an HMAC with the key at IdentityKeyHandle with
// tpm2-tools' tpm2_hmac through its swtpm TCTI.
func hmacTool(t *testing.T, addr string, data []byte) []byte {
	t.Helper()
	bin, err := exec.LookPath("tpm2_hmac")
	if err != nil {
		t.Skip("tpm2-tools is not installed (the README's install step installs it)")
	}
	host, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "data"), filepath.Join(dir, "hmac")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", fmt.Sprintf("%#x", uint32(tpm.IdentityKeyHandle)), "-g", "sha256", "-o", out, in)
	cmd.Env = append(os.Environ(), fmt.Sprintf("TPM2TOOLS_TCTI=swtpm:host=%s,port=%s", host, port))
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tpm2_hmac: %v\n%s", err, strings.TrimSpace(string(msg)))
	}
	sum, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}
