package enroll_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"zerotouch/enroll"
	"zerotouch/enroll/device"
	"zerotouch/enroll/emulator"
	"zerotouch/internal/regid"
)

// TestCheckID: registration and group IDs as service.json states them,
// alphanumerics and - . _ : with no special character at either end.
func TestCheckID(t *testing.T) {
	for _, tt := range []struct {
		id   string
		want string // "" for valid
	}{
		{"board-1", ""},
		{"a", ""},
		{"a-b.c_d:e", ""},
		{strings.Repeat("a", 128), ""},
		{"-board", "starts with"},
		{".board", "starts with"},
		{"_board", "starts with"},
		{":board", "starts with"},
		{"board-", "ends with"},
		{"board_", "ends with"},
		{"board.", "ends with"},
		{"bo ard", "character"},
		{"", "empty"},
		{strings.Repeat("a", 129), "129 characters"},
	} {
		err := enroll.CheckID(tt.id, regid.MaxLen)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckID(%q) = %v, want nil", tt.id, err)
		case tt.want != "" && (!errors.Is(err, regid.ErrInvalid) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CheckID(%q) = %v, want regid.ErrInvalid saying %q", tt.id, err, tt.want)
		}
	}
}

// TestExistingIDs: the client reads and deletes records whose IDs the
// rule for new ones refuses (a special character at an end, as DPS's
// concept documentation allows), and refuses, sending nothing, an ID no
// record can have; a group's ID is called a group ID.
func TestExistingIDs(t *testing.T) {
	ctx := context.Background()
	_, c := newEmulator(t, emulator.Options{})
	if _, err := c.Get(ctx, "board-"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("Get(board-) = %v, want ErrNotFound", err)
	}
	if err := c.Delete(ctx, ".board", ""); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("Delete(.board) = %v, want ErrNotFound", err)
	}
	if _, err := c.GetGroup(ctx, "g-"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("GetGroup(g-) = %v, want ErrNotFound", err)
	}
	if err := c.DeleteGroup(ctx, "g_", ""); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("DeleteGroup(g_) = %v, want ErrNotFound", err)
	}
	if _, err := c.GetRegistrationState(ctx, "board-"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("GetRegistrationState(board-) = %v, want ErrNotFound", err)
	}
	if err := c.DeleteRegistrationState(ctx, "-board", ""); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("DeleteRegistrationState(-board) = %v, want ErrNotFound", err)
	}
	for _, err := range []error{
		func() error { _, err := c.Get(ctx, "a b"); return err }(),
		c.Delete(ctx, "", ""),
		func() error { _, err := c.GetRegistrationState(ctx, "a/b"); return err }(),
	} {
		if !errors.Is(err, enroll.ErrInvalid) || !errors.Is(err, regid.ErrInvalid) {
			t.Errorf("a registration ID no record can have: %v, want ErrInvalid", err)
		}
	}
	if _, err := c.GetGroup(ctx, "a b"); !errors.Is(err, enroll.ErrInvalid) || !strings.Contains(err.Error(), "invalid group ID") {
		t.Errorf("GetGroup(a b) = %v, want ErrInvalid saying group ID", err)
	}
	g := &enroll.EnrollmentGroup{EnrollmentGroupID: "g-", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey}}
	if err := g.Validate(); !errors.Is(err, enroll.ErrInvalid) || !strings.Contains(err.Error(), "invalid group ID") || strings.Contains(err.Error(), "registration ID") {
		t.Errorf("a group ID ending in a dash: Validate() = %v, want ErrInvalid saying group ID", err)
	}
}

// TestSupportsCredentialPolicy: the one predicate of certificate
// issuance, for the service side and the device side alike.
func TestSupportsCredentialPolicy(t *testing.T) {
	for v, want := range map[string]bool{
		"2019-03-31": false, "2021-06-01": false, enroll.APIVersion2021: false,
		enroll.APIVersionPreview2025: true, enroll.APIVersion2026: true, "2027-01-01": true,
	} {
		if got := enroll.SupportsCredentialPolicy(v); got != want {
			t.Errorf("SupportsCredentialPolicy(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestValidateSpec: what Validate refuses as service.json states it,
// before anything is sent.
func TestValidateSpec(t *testing.T) {
	tpm := func(mod func(*enroll.Enrollment)) *enroll.Enrollment {
		e := &enroll.Enrollment{RegistrationID: "board-1", Attestation: enroll.Attestation{Type: enroll.AttestationTPM, TPM: &enroll.TPMAttestation{EndorsementKey: "ZWs="}}}
		mod(e)
		return e
	}
	for _, tt := range []struct {
		name string
		e    *enroll.Enrollment
		want string
	}{
		{"allocation policy bogus", tpm(func(e *enroll.Enrollment) { e.AllocationPolicy = "bogus" }), `allocationPolicy "bogus"`},
		{"allocation policy case", tpm(func(e *enroll.Enrollment) { e.AllocationPolicy = "GeoLatency" }), `allocationPolicy "GeoLatency"`},
		{"custom without webhook", tpm(func(e *enroll.Enrollment) { e.AllocationPolicy = enroll.AllocationCustom }), "customAllocationDefinition"},
		{"webhook without URL", tpm(func(e *enroll.Enrollment) {
			e.CustomAllocationDefinition = &enroll.CustomAllocation{APIVersion: "2021-10-01"}
		}), "webhookUrl"},
		{"status case", tpm(func(e *enroll.Enrollment) { e.ProvisioningStatus = "Disabled" }), `provisioningStatus "Disabled"`},
		{"ID end", tpm(func(e *enroll.Enrollment) { e.RegistrationID = "board-1-" }), "ends with"},
		{"attestation type", tpm(func(e *enroll.Enrollment) { e.Attestation.Type = "TPM" }), "want tpm, x509, symmetricKey or none"},
	} {
		if err := tt.e.Validate(); !errors.Is(err, enroll.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v, want ErrInvalid saying %q", tt.name, err, tt.want)
		}
	}
	for _, e := range []*enroll.Enrollment{
		tpm(func(e *enroll.Enrollment) { e.Attestation = enroll.Attestation{Type: enroll.AttestationNone} }),
		tpm(func(e *enroll.Enrollment) {
			e.AllocationPolicy = enroll.AllocationCustom
			e.CustomAllocationDefinition = &enroll.CustomAllocation{WebhookURL: "https://x", APIVersion: "2021-10-01"}
		}),
		tpm(func(e *enroll.Enrollment) { e.AllocationPolicy = enroll.AllocationGeoLatency }),
	} {
		if err := e.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", e, err)
		}
	}
	g := &enroll.EnrollmentGroup{EnrollmentGroupID: "line-1", Attestation: enroll.Attestation{Type: enroll.AttestationNone}, AllocationPolicy: "Static"}
	if err := g.Validate(); !errors.Is(err, enroll.ErrInvalid) || !strings.Contains(err.Error(), `allocationPolicy "Static"`) {
		t.Errorf("group Validate() = %v, want ErrInvalid for the allocation policy", err)
	}
}

// TestDifferencesPolicy: an enrollment DPS holds without the credential
// policy asked for, or with another, is not the one asked for.
func TestDifferencesPolicy(t *testing.T) {
	want := &enroll.Enrollment{RegistrationID: "b", Attestation: enroll.Attestation{Type: enroll.AttestationNone}, CredentialPolicyName: "ops"}
	for got, n := range map[string]int{"ops": 0, "": 1, "other": 1} {
		g := *want
		g.CredentialPolicyName = got
		if d := enroll.Differences(want, &g); len(d) != n {
			t.Errorf("Differences(policy ops, held %q) = %v, want %d", got, d, n)
		}
	}
}

// TestClientPolicyVersion: credentialPolicyName goes out under
// 2026-04-01 (the default) and comes back; a client on 2021-10-01
// refuses to send it, since DPS would drop it silently.
func TestClientPolicyVersion(t *testing.T) {
	ctx := context.Background()
	srv, c := newEmulator(t, emulator.Options{})
	if c.APIVersion() != enroll.APIVersion2026 {
		t.Errorf("default APIVersion() = %q, want %q", c.APIVersion(), enroll.APIVersion2026)
	}
	e := &enroll.Enrollment{RegistrationID: "board-1", Attestation: enroll.Attestation{Type: enroll.AttestationNone}, CredentialPolicyName: "ops"}
	got, err := c.CreateOrUpdate(ctx, e, "")
	if err != nil || got.CredentialPolicyName != "ops" {
		t.Fatalf("CreateOrUpdate = %+v, %v; want credentialPolicyName ops", got, err)
	}
	g := &enroll.EnrollmentGroup{EnrollmentGroupID: "line-1", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey}, CredentialPolicyName: "ops"}
	if gg, err := c.CreateOrUpdateGroup(ctx, g, ""); err != nil || gg.CredentialPolicyName != "ops" {
		t.Fatalf("CreateOrUpdateGroup = %+v, %v; want credentialPolicyName ops", gg, err)
	}
	old := newClient(t, srv, enroll.Config{APIVersion: enroll.APIVersion2021})
	if _, err := old.CreateOrUpdate(ctx, e, ""); !errors.Is(err, enroll.ErrInvalid) || !strings.Contains(err.Error(), enroll.APIVersion2026) {
		t.Errorf("CreateOrUpdate with a policy under 2021-10-01 = %v, want ErrInvalid naming %s", err, enroll.APIVersion2026)
	}
	if _, err := old.BulkGroups(ctx, enroll.ModeUpdate, []enroll.EnrollmentGroup{*g}); !errors.Is(err, enroll.ErrInvalid) {
		t.Errorf("BulkGroups with a policy under 2021-10-01 = %v, want ErrInvalid", err)
	}
	held, err := old.Get(ctx, "board-1")
	if err != nil || held.CredentialPolicyName != "" {
		t.Errorf("Get under 2021-10-01 = %+v, %v; want no credentialPolicyName (that version has none)", held, err)
	}
}

// register registers the symmetric-key device id with key through srv's
// device API, and polls until it is assigned.
func register(t *testing.T, srv *emulator.Server, id string, key []byte) {
	t.Helper()
	pool, err := enroll.LoadCAFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	res, err := device.Register(t.Context(), device.Config{GlobalEndpoint: srv.URL, IDScope: srv.IDScope, RegistrationID: id,
		SymmetricKey: key, TLS: &tls.Config{RootCAs: pool}})
	if err != nil || res.Status != "assigned" {
		t.Fatalf("register %s: %+v, %v; want assigned", id, res, err)
	}
}

// TestClientRegistrationStates: get, query per group (paged) and delete
// with If-Match, a stale etag refused with ErrPrecondition.
func TestClientRegistrationStates(t *testing.T) {
	ctx := context.Background()
	srv, c := newEmulator(t, emulator.Options{})
	groupKey := []byte("a group key of some thirty bytes")
	if _, err := c.CreateOrUpdateGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "line-1", Attestation: enroll.Attestation{
		Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(groupKey)}}}, ""); err != nil {
		t.Fatal(err)
	}
	ids := []string{"dev-1", "dev-2", "dev-3"}
	for _, id := range ids {
		m := hmac.New(sha256.New, groupKey)
		m.Write([]byte(id))
		register(t, srv, id, m.Sum(nil))
	}
	var seen []string
	for st, err := range c.RegistrationStates(ctx, "line-1", 2) {
		if err != nil {
			t.Fatalf("RegistrationStates: %v", err)
		}
		seen = append(seen, st.RegistrationID)
	}
	if strings.Join(seen, ",") != strings.Join(ids, ",") {
		t.Errorf("RegistrationStates(line-1) = %v, want %v", seen, ids)
	}
	p, err := c.QueryRegistrationStates(ctx, "line-1", 2, "")
	if err != nil || len(p.Items) != 2 || p.Continuation == "" {
		t.Errorf("QueryRegistrationStates page 1 = %+v, %v; want 2 and a continuation", p, err)
	}
	st, err := c.GetRegistrationState(ctx, "dev-2")
	if err != nil || st.Status != "assigned" || st.ETag == "" || st.AssignedHub == "" {
		t.Fatalf("GetRegistrationState = %+v, %v; want assigned with an etag and a hub", st, err)
	}
	if err := c.DeleteRegistrationState(ctx, "dev-2", base64.StdEncoding.EncodeToString([]byte(`"stale"`))); !errors.Is(err, enroll.ErrPrecondition) {
		t.Errorf("DeleteRegistrationState with a stale etag = %v, want ErrPrecondition", err)
	}
	if err := c.DeleteRegistrationState(ctx, "dev-2", st.ETag); err != nil {
		t.Errorf("DeleteRegistrationState with its etag = %v", err)
	}
	if _, err := c.GetRegistrationState(ctx, "dev-2"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("GetRegistrationState after delete = %v, want ErrNotFound", err)
	}
	if err := c.DeleteRegistrationState(ctx, "dev-2", ""); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("DeleteRegistrationState again = %v, want ErrNotFound", err)
	}
}

// TestClientBulkGroups: a bulk operation on groups, one item failing in
// the answer, and the group attestation mechanism with its keys.
func TestClientBulkGroups(t *testing.T) {
	ctx := context.Background()
	_, c := newEmulator(t, emulator.Options{})
	gs := []enroll.EnrollmentGroup{
		{EnrollmentGroupID: "g-1", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey}},
		{EnrollmentGroupID: "g-2", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey}},
	}
	res, err := c.BulkGroups(ctx, enroll.ModeCreate, gs)
	if err != nil || !res.IsSuccessful {
		t.Fatalf("BulkGroups create = %+v, %v", res, err)
	}
	res, err = c.BulkGroups(ctx, enroll.ModeCreate, gs[:1])
	if err != nil || res.IsSuccessful || len(res.Errors) != 1 || res.Errors[0].EnrollmentGroupID != "g-1" || !res.Errors[0].Failed() || res.Errors[0].ErrorCode != enroll.CodeConflict {
		t.Errorf("BulkGroups create of an existing group = %+v, %v; want g-1 failed with %d", res, err, enroll.CodeConflict)
	}
	att, err := c.GroupAttestationMechanism(ctx, "g-2")
	if err != nil || att.SymmetricKey == nil || att.SymmetricKey.PrimaryKey == "" {
		t.Errorf("GroupAttestationMechanism(g-2) = %+v, %v; want the keys DPS made", att, err)
	}
	if res, err := c.BulkGroups(ctx, enroll.ModeDelete, gs); err != nil || !res.IsSuccessful {
		t.Errorf("BulkGroups delete = %+v, %v", res, err)
	}
	if _, err := c.GetGroup(ctx, "g-1"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("GetGroup after bulk delete = %v, want ErrNotFound", err)
	}
	for _, tt := range []struct {
		mode string
		gs   []enroll.EnrollmentGroup
		want string
	}{
		{"upsert", gs, "bulk mode"},
		{enroll.ModeCreate, nil, "1 to 10"},
		{enroll.ModeCreate, make([]enroll.EnrollmentGroup, 11), "1 to 10"},
		{enroll.ModeCreate, []enroll.EnrollmentGroup{{EnrollmentGroupID: "g-", Attestation: enroll.Attestation{Type: enroll.AttestationNone}}}, "ends with"},
	} {
		if _, err := c.BulkGroups(ctx, tt.mode, tt.gs); !errors.Is(err, enroll.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("BulkGroups(%s, %d groups) = %v, want ErrInvalid saying %q", tt.mode, len(tt.gs), err, tt.want)
		}
	}
}

// TestBulkFailed: a bulk item failed unless its code is a 2xx status,
// for enrollments and groups alike.
func TestBulkFailed(t *testing.T) {
	for code, failed := range map[int]bool{0: true, 200: false, 204: false, 299: false, 300: true, 409: true, enroll.CodeConflict: true, 400004: true} {
		if got := (enroll.BulkError{ErrorCode: code}).Failed(); got != failed {
			t.Errorf("BulkError{%d}.Failed() = %v, want %v", code, got, failed)
		}
		if got := (enroll.BulkGroupError{ErrorCode: code}).Failed(); got != failed {
			t.Errorf("BulkGroupError{%d}.Failed() = %v, want %v", code, got, failed)
		}
	}
}
