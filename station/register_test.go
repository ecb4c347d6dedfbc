package station_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"

	"zerotouch/board"
	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
	"zerotouch/flasher"
	"zerotouch/internal/swtpm"
	"zerotouch/internal/tpmdev"
	"zerotouch/station"
	"zerotouch/station/records"
	"zerotouch/tpm"
)

// verifyingLine is a line whose stations have each board register with
// the DPS emulator at the end of the line. Before a board registers, its
// enrollment is uploaded and then passed to change, if not nil (to make
// DPS refuse the board).
func verifyingLine(t *testing.T, change func(ctx context.Context, e *enroll.Enrollment)) *line {
	t.Helper()
	l := newLine(t)
	l.extra = fmt.Sprintf("global_endpoint: %s\nverify_registration: {enabled: true, timeout: 1m}\n", l.dps.HostName)
	up, err := enroll.NewUploader(enroll.UploaderConfig{Client: l.client, Queue: l.store})
	if err != nil {
		t.Fatal(err)
	}
	l.enrolled = func(ctx context.Context, serial string) error {
		if _, err := up.Run(ctx); err != nil {
			return err
		}
		r, err := l.store.Get(ctx, serial)
		if err != nil {
			return err
		}
		if r.UploadState != enroll.StateUploaded {
			return fmt.Errorf("enrollment %s: %s", r.UploadState, r.UploadError)
		}
		if change != nil {
			e, err := l.client.Get(ctx, r.RegistrationID)
			if err != nil {
				return err
			}
			change(ctx, e)
			if _, err := l.client.CreateOrUpdate(ctx, e, e.ETag); err != nil {
				return err
			}
		}
		return nil
	}
	group := &enroll.EnrollmentGroup{EnrollmentGroupID: "line-test-group", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey,
		SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(groupKey)}}}
	if _, err := l.client.CreateOrUpdateGroup(context.Background(), group, ""); err != nil {
		t.Fatal(err)
	}
	return l
}

// dpsBoard is a board that trusts the line's DPS emulator.
func (l *line) dpsBoard(t *testing.T, serial, tpmSpec string) *board.Board {
	t.Helper()
	b, err := board.Start(board.Config{Serial: serial, Dir: t.TempDir(), TPM: tpmSpec, Baud: 2_000_000, DPSRoots: l.dps.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// startSwtpm runs a swtpm for the test and returns its board TPM spec.
func startSwtpm(t *testing.T) string {
	t.Helper()
	p, err := swtpm.Start(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return "tcp:" + p.Addr
}

// TestRegistration provisions a board in each attestation mode with the
// registration check on: each registers with the DPS emulator (the TPM
// board through swtpm, answering DPS's challenge) and is assigned, and
// its record says so.
func TestRegistration(t *testing.T) {
	for _, tt := range []struct{ mode, tpm string }{
		{station.ModeTPM, "swtpm"},
		{station.ModeX509TPM, board.TPMSim},
		{station.ModeX509Keygen, board.TPMNone},
		{station.ModeSymmetricKey, board.TPMNone},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			ctx := context.Background()
			l := verifyingLine(t, nil)
			spec := tt.tpm
			if spec == "swtpm" {
				spec = startSwtpm(t)
			}
			b := l.dpsBoard(t, "SN-REG-1", spec)
			st := l.station(t, tt.mode, b)
			res, err := st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, b.Path())
			if err != nil {
				t.Fatalf("provision: %v", err)
			}
			r, err := l.store.Get(ctx, "SN-REG-1")
			if err != nil {
				t.Fatal(err)
			}
			reg := r.Registration
			if r.Result != records.ResultPassed || reg == nil || reg.State != flasher.RegAssigned ||
				reg.AssignedHub != emulator.DefaultIoTHub || r.DeviceID != r.RegistrationID || reg.At.IsZero() {
				t.Fatalf("record: result %s, registration %+v, device %q; want passed, assigned to %s as %s",
					r.Result, reg, r.DeviceID, emulator.DefaultIoTHub, r.RegistrationID)
			}
			if res.Record.Registration == nil || !l.saw(station.StepRegister) {
				t.Error("the run did not show the register step")
			}
			audit, err := l.store.Audit(ctx, "SN-REG-1")
			if err != nil || !strings.Contains(fmt.Sprint(audit), "registration") {
				t.Errorf("audit trail lacks the registration: %v %v", audit, err)
			}
		})
	}
}

// TestRegistrationRefused: DPS refuses a board whose enrollment is
// disabled, whose enrolled EK is another TPM's, or whose symmetric key is
// not derived from the group's: the board fails at the register step
// with DPS's answer in its record.
func TestRegistrationRefused(t *testing.T) {
	otherEK := func(t *testing.T) string {
		p, err := swtpm.Start(t.TempDir(), true)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		tr, err := tpmdev.Open("tcp:"+p.Addr, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		ek, err := tpm.New(tr, tpm.Options{}).EK(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return ek.EndorsementKey()
	}
	for _, tt := range []struct {
		name, mode, tpm string
		change          func(t *testing.T) func(context.Context, *enroll.Enrollment)
		groupKey        []byte // DPS's group key, when not the station's
		state, want     string
	}{
		{name: "disabled", mode: station.ModeX509Keygen, tpm: board.TPMNone,
			change: func(*testing.T) func(context.Context, *enroll.Enrollment) {
				return func(_ context.Context, e *enroll.Enrollment) { e.ProvisioningStatus = "disabled" }
			}, state: flasher.RegDisabled, want: "disabled"},
		{name: "wrong EK", mode: station.ModeTPM, tpm: "swtpm",
			change: func(t *testing.T) func(context.Context, *enroll.Enrollment) {
				ek := otherEK(t)
				return func(_ context.Context, e *enroll.Enrollment) { e.Attestation.TPM.EndorsementKey = ek }
			}, state: flasher.RegFailed, want: "401"},
		{name: "forged SAS", mode: station.ModeSymmetricKey, tpm: board.TPMNone,
			groupKey: []byte("another group key"), state: flasher.RegFailed, want: "401"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			var change func(context.Context, *enroll.Enrollment)
			if tt.change != nil {
				change = tt.change(t)
			}
			l := verifyingLine(t, change)
			if tt.groupKey != nil {
				group := &enroll.EnrollmentGroup{EnrollmentGroupID: "line-test-group", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey,
					SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(tt.groupKey)}}}
				if _, err := l.client.CreateOrUpdateGroup(ctx, group, "*"); err != nil {
					t.Fatal(err)
				}
			}
			spec := tt.tpm
			if spec == "swtpm" {
				spec = startSwtpm(t)
			}
			b := l.dpsBoard(t, "SN-REF-1", spec)
			st := l.station(t, tt.mode, b)
			_, err := st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, b.Path())
			var be *station.BoardError
			var re *station.RegistrationError
			if !errors.As(err, &be) || be.Step != station.StepRegister || !errors.As(err, &re) || re.Reg.State != tt.state {
				t.Fatalf("provision: %v; want a failure at %s, registration %s", err, station.StepRegister, tt.state)
			}
			if !strings.Contains(be.Message, tt.want) {
				t.Errorf("operator's message %q; want it to say %q", be.Message, tt.want)
			}
			r, err := l.store.Get(ctx, "SN-REF-1")
			if err != nil {
				t.Fatal(err)
			}
			if r.Result != records.ResultFailed || r.Registration == nil || r.Registration.State != tt.state || r.Registration.Error == "" && tt.state == flasher.RegFailed {
				t.Errorf("record: %s, registration %+v; want failed, %s with DPS's answer", r.Result, r.Registration, tt.state)
			}
		})
	}
}
