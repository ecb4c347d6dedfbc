package station_test

import (
	"context"
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"zerotouch/board"
	"zerotouch/ca"
	"zerotouch/enroll"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/flasher"
	"zerotouch/station"
	"zerotouch/station/records"
)

// groupStation is a station of the verifying line l in mode over the
// board b, its configuration changed by change before the station is made.
func groupStation(t *testing.T, l *line, mode string, b *board.Board, change func(*station.Config)) *station.Station {
	t.Helper()
	y := "station: st-test\nline: line-test\nattestation: " + mode + "\nid_scope: " + l.dps.IDScope + "\n" +
		"ca:\n  dir: unused-here\nsymmetric_key:\n  group_id: line-test-group\nslots:\n  - port: " + b.Path() + "\nbaud: 2000000\n" + l.extra
	cfg, err := station.ParseConfig([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(cfg)
	}
	tmpl, err := fwtemplates.Builtin("json")
	if err != nil {
		t.Fatal(err)
	}
	st, err := station.New(cfg, station.Deps{Store: l.store, Template: tmpl, Issuer: l.issuer, GroupKey: groupKey,
		Events: l.event, Enrolled: l.enrolled, Logger: l.log})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func chainOf(t *testing.T, issuer ca.Issuer) []*x509.Certificate {
	t.Helper()
	chain, err := issuer.Chain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return chain
}

// TestEnsureGroup: against the DPS emulator, EnsureGroup creates a
// missing group (symmetric-key with the line's key, X.509 with the CA's
// intermediate), then finds it matching; it refuses a missing group the
// line may not create, a group of the other attestation, one with
// another key or signing certificate, and a disabled one, naming the
// group and what differs.
func TestEnsureGroup(t *testing.T) {
	ctx := context.Background()
	l := newLine(t)
	chain := chainOf(t, l.issuer)
	other, err := ca.Init(ctx, filepath.Join(t.TempDir(), "other-ca"), ca.InitOptions{Password: []byte("other")})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	otherChain := chainOf(t, other)

	sym := station.LineGroup{ID: "g-sym", Attestation: enroll.AttestationSymmetricKey, Create: true,
		Setting: "symmetric_key.group_id", CreateSetting: "symmetric_key.create_group"}
	x5 := station.LineGroup{ID: "g-x509", Attestation: enroll.AttestationX509, Create: true, Setting: "ca.group_id", CreateSetting: "ca.create_group"}
	symCred := station.GroupCredential{Key: groupKey}
	x5Cred := station.GroupCredential{Chain: chain}

	for _, tt := range []struct {
		g    station.LineGroup
		cred station.GroupCredential
	}{{sym, symCred}, {x5, x5Cred}} {
		created, err := station.EnsureGroup(ctx, l.client, tt.g, tt.cred, nil)
		if err != nil || !created {
			t.Fatalf("EnsureGroup(%s) on an empty DPS = %v, %v; want created", tt.g.ID, created, err)
		}
		created, err = station.EnsureGroup(ctx, l.client, tt.g, tt.cred, nil)
		if err != nil || created {
			t.Fatalf("EnsureGroup(%s) again = %v, %v; want checked", tt.g.ID, created, err)
		}
	}
	att, err := l.client.GroupAttestationMechanism(ctx, sym.ID)
	if err != nil || att.SymmetricKey == nil || att.SymmetricKey.SecondaryKey == "" || att.SymmetricKey.PrimaryKey == att.SymmetricKey.SecondaryKey {
		t.Errorf("symmetric-key group's keys: %+v, %v; want the line's primary and another secondary", att, err)
	}
	g, err := l.client.GetGroup(ctx, x5.ID)
	if err != nil || g.Attestation.X509 == nil || g.Attestation.X509.SigningCertificates.Primary.Info == nil ||
		!strings.EqualFold(g.Attestation.X509.SigningCertificates.Primary.Info.SHA256Thumbprint, ca.Fingerprint(chain[0])) {
		t.Errorf("X.509 group %+v, %v; want the CA's intermediate as its signing certificate", g, err)
	}

	if _, err := l.client.CreateOrUpdateGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "g-off", ProvisioningStatus: "disabled",
		Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{}}}, ""); err != nil {
		t.Fatal(err)
	}
	off := sym
	off.ID = "g-off"
	missing := sym
	missing.ID, missing.Create = "g-none", false
	missingX := x5
	missingX.ID, missingX.Create = "g-none-x", false
	symAsX := x5
	symAsX.ID = sym.ID
	for _, tt := range []struct {
		name    string
		g       station.LineGroup
		cred    station.GroupCredential
		wantErr error
		want    []string
	}{
		{"missing, not to be created", missing, symCred, station.ErrGroupMissing, []string{"g-none", "symmetric_key.create_group is false"}},
		{"missing X.509, not to be created", missingX, x5Cred, station.ErrGroupMissing, []string{"g-none-x", "ca.create_group is false"}},
		{"another key", sym, station.GroupCredential{Key: []byte("another key of this line")}, station.ErrGroupMismatch, []string{"g-sym", "other keys"}},
		{"another intermediate", x5, station.GroupCredential{Chain: otherChain}, station.ErrGroupMismatch,
			[]string{"g-x509", ca.Fingerprint(chain[0]), ca.Fingerprint(otherChain[0])}},
		{"other attestation", symAsX, x5Cred, station.ErrGroupMismatch, []string{"g-sym", "is a symmetric-key group", "need an X.509 group"}},
		{"disabled", off, symCred, station.ErrGroupMismatch, []string{"g-off", "disabled"}},
	} {
		created, err := station.EnsureGroup(ctx, l.client, tt.g, tt.cred, nil)
		if !errors.Is(err, tt.wantErr) || created {
			t.Errorf("%s: EnsureGroup = %v, %v; want %v", tt.name, created, err, tt.wantErr)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", tt.name, err, w)
			}
		}
	}
	if _, err := l.client.GetGroup(ctx, "g-none"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("a group the line may not create was created: %v", err)
	}
}

// TestGroupRegistration: an X.509 line with ca.group_id enrolls its board
// through the group: the record carries no individual enrollment, and
// the board registers and is assigned once the group is there. Without
// the group, the register step fails with a message naming the group;
// an individual enrollment that is missing is named by its registration
// ID.
func TestGroupRegistration(t *testing.T) {
	ctx := context.Background()
	l := verifyingLine(t, nil)
	group := func(c *station.Config) { c.CA.GroupID = "line-x509-group" }

	// No group in DPS yet: 404 naming it.
	b := l.dpsBoard(t, "SN-GRP-1", board.TPMNone)
	_, err := groupStation(t, l, station.ModeX509Keygen, b, group).Provision(ctx, station.SlotConfig{Name: "slot-1"}, b.Path())
	var be *station.BoardError
	if !errors.As(err, &be) || be.Step != station.StepRegister ||
		!strings.Contains(be.Message, "DPS has no enrollment group line-x509-group for this board (404)") || !strings.Contains(be.Message, "ca.create_group") {
		t.Fatalf("provision without the group: %v; want a 404 at register naming the group", err)
	}

	g := station.LineGroup{ID: "line-x509-group", Attestation: enroll.AttestationX509, Create: true}
	if _, err := station.EnsureGroup(ctx, l.client, g, station.GroupCredential{Chain: chainOf(t, l.issuer)}, nil); err != nil {
		t.Fatal(err)
	}
	b2 := l.dpsBoard(t, "SN-GRP-2", board.TPMNone)
	if _, err := groupStation(t, l, station.ModeX509Keygen, b2, group).Provision(ctx, station.SlotConfig{Name: "slot-1"}, b2.Path()); err != nil {
		t.Fatalf("provision with the group: %v", err)
	}
	r, err := l.store.Get(ctx, "SN-GRP-2")
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != records.ResultPassed || r.Registration == nil || r.Registration.State != flasher.RegAssigned || r.Enrollment != nil || r.CertificateChain == "" {
		t.Errorf("record: result %s, registration %+v, enrollment %v; want passed, assigned, no individual enrollment, a certificate",
			r.Result, r.Registration, r.Enrollment)
	}
	if _, err := l.client.Get(ctx, r.RegistrationID); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("DPS holds an individual enrollment for %s: %v", r.RegistrationID, err)
	}

	// A symmetric-key line whose group is not in DPS.
	if err := l.client.DeleteGroup(ctx, "line-test-group", ""); err != nil {
		t.Fatal(err)
	}
	b3 := l.dpsBoard(t, "SN-GRP-3", board.TPMNone)
	_, err = groupStation(t, l, station.ModeSymmetricKey, b3, nil).Provision(ctx, station.SlotConfig{Name: "slot-1"}, b3.Path())
	if !errors.As(err, &be) || !strings.Contains(be.Message, "DPS has no enrollment group line-test-group for this board (404)") ||
		!strings.Contains(be.Message, "symmetric_key.create_group") {
		t.Errorf("symmetric-key line without its group: %v; want a 404 naming the group", err)
	}

	// An individual enrollment that is not in DPS (deleted after upload).
	l2 := verifyingLine(t, nil)
	up := l2.enrolled
	l2.enrolled = func(ctx context.Context, serial string) error {
		if err := up(ctx, serial); err != nil {
			return err
		}
		r, err := l2.store.Get(ctx, serial)
		if err != nil {
			return err
		}
		return l2.client.Delete(ctx, r.RegistrationID, "")
	}
	b4 := l2.dpsBoard(t, "SN-GRP-4", board.TPMNone)
	_, err = groupStation(t, l2, station.ModeX509Keygen, b4, nil).Provision(ctx, station.SlotConfig{Name: "slot-1"}, b4.Path())
	if !errors.As(err, &be) || !strings.Contains(be.Message, "DPS has no individual enrollment for registration ID sn-grp-4 (404)") {
		t.Errorf("individual enrollment missing: %v; want a 404 naming the registration ID", err)
	}
}
