package device_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"testing"

	"zerotouch/enroll"
	"zerotouch/enroll/device"
	"zerotouch/enroll/emulator"
	"zerotouch/internal/tpmdev"
	"zerotouch/tpm"
)

// tpmAdapter is package tpm's Device as registration uses it: the EK and
// SRK read once, the identity key imported and used inside the TPM.
type tpmAdapter struct {
	d        *tpm.Device
	ek, srk  *tpm.Public
	imported int
}

var _ device.TPM = (*tpmAdapter)(nil)

func newTPMAdapter(ctx context.Context, d *tpm.Device) (*tpmAdapter, error) {
	ek, err := d.EK(ctx)
	if err != nil {
		return nil, err
	}
	srk, err := d.SRK(ctx)
	if err != nil {
		return nil, err
	}
	return &tpmAdapter{d: d, ek: ek, srk: srk}, nil
}

func (a *tpmAdapter) EndorsementKey() []byte { return a.ek.TPM2B }
func (a *tpmAdapter) StorageRootKey() []byte { return a.srk.TPM2B }

func (a *tpmAdapter) ImportIdentityKey(ctx context.Context, blob []byte) error {
	a.imported++
	return a.d.ImportIdentityKey(ctx, blob)
}

func (a *tpmAdapter) IdentityHMAC(ctx context.Context, data []byte) ([]byte, error) {
	return a.d.IdentityHMAC(ctx, data)
}

// TestTPM registers the go-tpm-tools simulator's TPM end to end: the
// emulator's challenge (internal/dpstpm) is imported by the TPM (package
// tpm), the token signed inside it, and the device key of the final
// answer imported too. The simulator is one per process: not parallel.
func TestTPM(t *testing.T) {
	ctx := testCtx(t)
	sim, err := tpmdev.Open(tpmdev.Sim, 42)
	if err != nil {
		t.Fatalf("open the TPM simulator: %v", err)
	}
	t.Cleanup(func() { sim.Close() })
	tp, err := newTPMAdapter(ctx, tpm.New(sim, tpm.Options{Board: "ZTD000001"}))
	if err != nil {
		t.Fatalf("read the EK and SRK: %v", err)
	}
	regID := tp.ek.RegistrationID()

	dps := newTestDPS(t, emulator.Options{})
	dps.put("/enrollments/"+regID, enroll.Enrollment{RegistrationID: regID, Attestation: enroll.Attestation{
		Type: enroll.AttestationTPM, TPM: &enroll.TPMAttestation{EndorsementKey: tp.ek.EndorsementKey()}}})

	cfg := dps.config("") // the registration ID is derived from the EK
	cfg.TPM = tp
	res, err := device.Register(ctx, cfg)
	if err != nil {
		t.Fatalf("Register: %v", err)
	}
	if res.RegistrationID != regID || res.Status != "assigned" || res.DeviceID != regID || res.AssignedHub != emulator.DefaultIoTHub {
		t.Errorf("Register = %+v, want %s assigned to %s", res, regID, emulator.DefaultIoTHub)
	}
	if tp.imported != 2 {
		t.Errorf("%d blobs imported, want 2: the challenge and the device key", tp.imported)
	}
	if st := dps.e.Stats(); st.Challenges != 1 || st.Unauthorized != 0 {
		t.Errorf("stats %+v: want one challenge and no refusal", st)
	}
	// The status lookup, signed with the key imported.
	if look, err := device.Lookup(ctx, cfg); err != nil || look.Status != "assigned" || look.ETag != res.ETag || look.TPM == nil {
		t.Errorf("Lookup = %+v, %v; want the registration, with its tpm part", look, err)
	}
	// The device key is in the TPM and signs.
	sig, err := tp.IdentityHMAC(ctx, []byte("hub token"))
	if err != nil || len(sig) != sha256.Size {
		t.Errorf("IdentityHMAC with the device key = %x, %v", sig, err)
	}

	// Registering again after a restart: a fresh challenge, the same
	// hub, re-provisioned.
	dps.restart()
	cfg = dps.config(regID)
	cfg.TPM = tp
	again, err := device.Register(ctx, cfg)
	if err != nil || again.Substatus != "reprovisionedToInitialAssignment" || again.AssignedHub != res.AssignedHub {
		t.Errorf("Register after a restart = %+v, %v; want reprovisionedToInitialAssignment to %s", again, err, res.AssignedHub)
	}

	// An enrollment holding another endorsement key: 401, no challenge.
	const wrong = "tpm-wrong-ek"
	dps.put("/enrollments/"+wrong, enroll.Enrollment{RegistrationID: wrong, Attestation: enroll.Attestation{
		Type: enroll.AttestationTPM, TPM: &enroll.TPMAttestation{EndorsementKey: tp.srk.EndorsementKey()}}})
	before := dps.e.Stats()
	cfg = dps.config(wrong)
	cfg.TPM = tp
	_, err = device.Register(ctx, cfg)
	var de *device.Error
	if !errors.Is(err, device.ErrUnauthorized) || !errors.As(err, &de) || de.Code != enroll.CodeUnauthorized {
		t.Errorf("Register against another EK = %v, want ErrUnauthorized with errorCode %d", err, enroll.CodeUnauthorized)
	}
	if after := dps.e.Stats(); after.Challenges != before.Challenges {
		t.Errorf("a wrong EK got a challenge")
	}
	if status, _ := dps.registrationState(wrong); status != http.StatusNotFound {
		t.Errorf("GET /registrations/%s = %d, want 404", wrong, status)
	}

	// No enrollment at all: DPS's 404, with its status and code, so that
	// the station can tell the operator which.
	cfg = dps.config("tpm-not-enrolled")
	cfg.TPM = tp
	_, err = device.Register(ctx, cfg)
	if !errors.Is(err, device.ErrNotFound) || !errors.As(err, &de) || de.Status != http.StatusNotFound {
		t.Errorf("Register with no enrollment = %v, want ErrNotFound as a *device.Error", err)
	}
}
