package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zerotouch/ca"
	"zerotouch/enroll"
	"zerotouch/enroll/device"
	"zerotouch/enroll/emulator"
)

// TestDpsGroupCommands: zerotouch dps group create, show, list and delete
// against the DPS emulator. create makes a symmetric-key group with a new
// key written to the key file (mode 0600, never printed) or from a key
// file, and an X.509 group from a CA folder; again, it finds the group
// and checks it; show and list print groups without their keys; delete
// removes one, and show then fails.
func TestDpsGroupCommands(t *testing.T) {
	ctx := context.Background()
	b := newGroupBed(t)
	conn := []string{"--connection-string-file", b.connFile, "--ca-file", b.dps.CAFile}
	dps := func(args ...string) (int, string, string) {
		t.Helper()
		return run(t, append(append([]string{"dps", "group"}, args...), conn...)...)
	}

	newKey := filepath.Join(b.dir, "new-group-key")
	code, out, errOut := dps("create", "--id", "made-key", "--symmetric-key-file", newKey)
	if code != exitOK || !strings.Contains(out, "made-key (symmetricKey) created") || !strings.Contains(out, newKey) {
		t.Fatalf("create with a new key: exit %d\n%s\n%s", code, out, errOut)
	}
	st, err := os.Stat(newKey)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new key file: %v, %v; want mode 0600", st, err)
	}
	text, _ := os.ReadFile(newKey)
	key := strings.TrimSpace(string(text))
	att, err := b.client.GroupAttestationMechanism(ctx, "made-key")
	if err != nil || att.SymmetricKey == nil || att.SymmetricKey.PrimaryKey != key {
		t.Errorf("group made-key's primary key is not the one written to %s: %+v, %v", newKey, att, err)
	}
	if k, err := base64.StdEncoding.DecodeString(key); err != nil || len(k) != 64 {
		t.Errorf("new key %d bytes, %v; want 64 bytes of base64", len(k), err)
	}

	code, out, errOut = dps("create", "--id", "line-sym", "--symmetric-key-file", b.keyFile, "--json")
	var res groupResult
	if code != exitOK || json.Unmarshal([]byte(out), &res) != nil || res.Outcome != "created" || res.KeyFile != "" || res.DPS != b.dps.HostName {
		t.Fatalf("create from a key file: exit %d %+v\n%s\n%s", code, res, out, errOut)
	}
	code, out, errOut = dps("create", "--id", "line-x509", "--ca-dir", b.caDir)
	if code != exitOK || !strings.Contains(out, "line-x509 (x509) created") {
		t.Fatalf("create an X.509 group: exit %d\n%s\n%s", code, out, errOut)
	}
	// Again: found and checked, not replaced.
	code, out, errOut = dps("create", "--id", "line-x509", "--ca-dir", b.caDir)
	if code != exitOK || !strings.Contains(out, "already in DPS") {
		t.Errorf("create again: exit %d\n%s\n%s", code, out, errOut)
	}
	// A group with other keys than the file's is not replaced: exit 1.
	code, out, errOut = dps("create", "--id", "made-key", "--symmetric-key-file", b.keyFile)
	if code != exitFailed || !strings.Contains(errOut, "holds other keys") {
		t.Errorf("create over a group with another key: exit %d, want %d\n%s\n%s", code, exitFailed, out, errOut)
	}

	chain, err := ca.ReadChain(b.caDir)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut = dps("show", "line-x509", "--json")
	var v groupView
	if code != exitOK || json.Unmarshal([]byte(out), &v) != nil || v.Attestation != enroll.AttestationX509 || len(v.SigningCertificates) != 1 ||
		v.SigningCertificates[0].SHA256 != ca.Fingerprint(chain[0]) {
		t.Errorf("show --json: exit %d %+v\n%s\n%s", code, v, out, errOut)
	}
	code, out, errOut = dps("show", "line-sym")
	if code != exitOK || !strings.Contains(out, "symmetricKey") || !strings.Contains(out, "(not shown)") {
		t.Errorf("show: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = dps("list", "--json")
	ids := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var v groupView
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("list --json line %q: %v", sc.Text(), err)
		}
		ids[v.ID] = true
	}
	if code != exitOK || len(ids) != 3 || !ids["made-key"] || !ids["line-sym"] || !ids["line-x509"] {
		t.Errorf("list --json: exit %d, groups %v\n%s", code, ids, errOut)
	}
	code, listText, _ := dps("list")
	if code != exitOK || !strings.Contains(listText, "line-x509") || !strings.Contains(listText, "CN=zerotouch Intermediate CA") {
		t.Errorf("list: exit %d\n%s", code, listText)
	}

	// No command prints a key.
	lineKey := base64.StdEncoding.EncodeToString(b.key)
	for _, id := range []string{"made-key", "line-sym"} {
		att, _ := b.client.GroupAttestationMechanism(ctx, id)
		_, showText, showErr := dps("show", id, "--json")
		for _, k := range []string{key, lineKey, att.SymmetricKey.PrimaryKey, att.SymmetricKey.SecondaryKey} {
			if strings.Contains(showText+showErr+out+listText, k) {
				t.Errorf("a key of group %s was printed", id)
			}
		}
	}

	code, out, errOut = dps("delete", "made-key")
	if code != exitOK || !strings.Contains(out, "made-key deleted") {
		t.Errorf("delete: exit %d\n%s\n%s", code, out, errOut)
	}
	code, _, errOut = dps("show", "made-key")
	if code != exitFailed || !strings.Contains(errOut, "has no enrollment group made-key") {
		t.Errorf("show after delete: exit %d, want %d\n%s", code, exitFailed, errOut)
	}
	code, _, errOut = dps("delete", "made-key")
	if code != exitFailed || !strings.Contains(errOut, "has no enrollment group made-key") {
		t.Errorf("delete again: exit %d, want %d\n%s", code, exitFailed, errOut)
	}
}

// The group commands' command-line mistakes exit 2 before anything is
// sent, and a set-up that cannot work exits 3.
func TestDpsGroupErrors(t *testing.T) {
	b := newGroupBed(t)
	conn := []string{"--connection-string-file", b.connFile, "--ca-file", b.dps.CAFile}
	notKey := filepath.Join(b.dir, "not-a-key")
	os.WriteFile(notKey, []byte("not base64!\n"), 0o600)
	notCert := filepath.Join(b.dir, "not-a-cert.pem")
	os.WriteFile(notCert, []byte("hello\n"), 0o600)
	leafDir := t.TempDir()
	t.Setenv(envDPSConnectionString, "")
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no id", []string{"create", "--ca-dir", b.caDir}, exitUsage, "--id is missing"},
		{"bad id", []string{"create", "--id", "a b/c", "--ca-dir", b.caDir}, exitUsage, `--id "a b/c"`},
		{"no attestation", []string{"create", "--id", "g1"}, exitUsage, "give one of --symmetric-key-file"},
		{"two attestations", []string{"create", "--id", "g1", "--ca-dir", b.caDir, "--symmetric-key-file", b.keyFile}, exitUsage, "give one of"},
		{"key not base64", []string{"create", "--id", "g1", "--symmetric-key-file", notKey}, exitUsage, "does not hold a base64 key"},
		{"not a certificate", []string{"create", "--id", "g1", "--certificate", notCert}, exitUsage, "--certificate"},
		{"missing certificate", []string{"create", "--id", "g1", "--certificate", filepath.Join(b.dir, "none.pem")}, exitUsage, "no such file"},
		{"unknown flag", []string{"create", "--id", "g1", "--colour", "red"}, exitUsage, "unknown flag"},
		{"show without ID", []string{"show"}, exitUsage, "arg(s)"},
		{"show two IDs", []string{"show", "a", "b"}, exitUsage, "arg(s)"},
		{"show bad ID", []string{"show", "a/b"}, exitUsage, `"a/b"`},
		{"delete without ID", []string{"delete"}, exitUsage, "arg(s)"},
		{"list with an argument", []string{"list", "x"}, exitUsage, "unknown command"},
		{"no CA in --ca-dir", []string{"create", "--id", "g1", "--ca-dir", leafDir}, exitSetup, "ca init"},
	} {
		args := append(append([]string{"dps", "group"}, tt.args...), conn...)
		code, out, errOut := run(t, args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d saying %q (stdout %q)", tt.name, code, errOut, tt.code, tt.want, out)
		}
	}
	// No connection string: a command-line mistake, as for upload.
	code, _, errOut := run(t, "dps", "group", "list")
	if code != exitUsage || !strings.Contains(errOut, envDPSConnectionString) {
		t.Errorf("list without a connection string: exit %d, stderr %q; want %d naming %s", code, errOut, exitUsage, envDPSConnectionString)
	}
	// A key DPS refuses: the set-up cannot work.
	code, _, errOut = run(t, "dps", "group", "list", "--connection-string-file", wrongConnKey(t, b), "--ca-file", b.dps.CAFile)
	if code != exitSetup || !strings.Contains(errOut, "DPS refused the key (401)") {
		t.Errorf("list with a wrong key: exit %d, stderr %q; want %d", code, errOut, exitSetup)
	}
	// Not the DPS's CA: the set-up cannot work.
	code, _, errOut = run(t, "dps", "group", "show", "g1", "--connection-string-file", b.connFile)
	if code != exitSetup || !strings.Contains(errOut, "not trusted") {
		t.Errorf("show without the emulator's CA: exit %d, stderr %q; want %d", code, errOut, exitSetup)
	}
	// None of it created anything.
	if _, err := b.client.GetGroup(context.Background(), "g1"); err == nil {
		t.Error("group g1 was created")
	}
}

// wrongConnKey writes the bed's connection string with another key.
func wrongConnKey(t *testing.T, b *groupBed) string { return wrongConnectionString(t, b.dir, b.dps) }

// registerSym registers the symmetric-key device id, signing with key,
// through srv's device API, and polls until it is assigned.
func registerSym(t *testing.T, srv *emulator.Server, id string, key []byte) {
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

// TestDpsRecordCommands: zerotouch dps enrollment list, show and delete,
// and dps registration list, show and delete, against the DPS emulator:
// list and show print the records (never a key), delete removes one,
// and a delete with a stale etag deletes nothing: exit 1, saying so and
// what to do.
func TestDpsRecordCommands(t *testing.T) {
	ctx := context.Background()
	b := newGroupBed(t)
	conn := []string{"--connection-string-file", b.connFile, "--ca-file", b.dps.CAFile}
	dps := func(args ...string) (int, string, string) {
		t.Helper()
		return run(t, append(append([]string{"dps"}, args...), conn...)...)
	}
	devKey := make([]byte, 32)
	rand.Read(devKey)
	sym := &enroll.Enrollment{RegistrationID: "board-1", DeviceID: "dev-1", CredentialPolicyName: "ops-certs", Attestation: enroll.Attestation{
		Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(devKey)}}}
	if _, err := b.client.CreateOrUpdate(ctx, sym, ""); err != nil {
		t.Fatal(err)
	}
	tpm, err := b.client.CreateOrUpdate(ctx, &enroll.Enrollment{RegistrationID: "board-2", Attestation: enroll.Attestation{
		Type: enroll.AttestationTPM, TPM: &enroll.TPMAttestation{EndorsementKey: "AToAAQALAAMA"}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.CreateOrUpdateGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "line-g", Attestation: enroll.Attestation{
		Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(b.key)}}}, ""); err != nil {
		t.Fatal(err)
	}
	registerSym(t, b.dps, "board-1", devKey)
	m := hmac.New(sha256.New, b.key)
	m.Write([]byte("member-1"))
	registerSym(t, b.dps, "member-1", m.Sum(nil))

	// Enrollments.
	code, out, errOut := dps("enrollment", "list")
	if code != exitOK || !strings.Contains(out, "board-1") || !strings.Contains(out, "board-2") || !strings.Contains(out, "ops-certs") {
		t.Errorf("enrollment list: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = dps("enrollment", "list", "--json")
	ids := map[string]enrollmentView{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var v enrollmentView
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("enrollment list --json line %q: %v", l, err)
		}
		ids[v.RegistrationID] = v
	}
	if code != exitOK || len(ids) != 2 || ids["board-2"].Attestation != enroll.AttestationTPM || ids["board-1"].CredentialPolicyName != "ops-certs" {
		t.Errorf("enrollment list --json: exit %d, %+v\n%s", code, ids, errOut)
	}
	code, showText, errOut := dps("enrollment", "show", "board-1")
	if code != exitOK || !strings.Contains(showText, "registered   assigned to ") || !strings.Contains(showText, "(not shown)") || !strings.Contains(showText, "etag") {
		t.Errorf("enrollment show: exit %d\n%s\n%s", code, showText, errOut)
	}
	if strings.Contains(out+showText, base64.StdEncoding.EncodeToString(devKey)) {
		t.Error("enrollment list or show printed the device's key")
	}
	code, out, errOut = dps("enrollment", "delete", "board-2", "--etag", `"stale"`)
	if code != exitFailed || !strings.Contains(errOut, "did not delete enrollment board-2") || !strings.Contains(errOut, "(412)") ||
		!strings.Contains(errOut, "zerotouch dps enrollment show board-2") {
		t.Errorf("enrollment delete with a stale etag: exit %d, want %d\n%s\n%s", code, exitFailed, out, errOut)
	}
	// An etag pasted into a shell loses its quotes: they are put back,
	// as the emulator's 412 shows (If-Match as it came).
	code, out, errOut = dps("enrollment", "delete", "board-2", "--etag", "stale")
	if code != exitFailed || !strings.Contains(errOut, `If-Match "stale" does not match`) {
		t.Errorf("enrollment delete with a stale etag without its quotes: exit %d, want %d and If-Match \"stale\"\n%s\n%s", code, exitFailed, out, errOut)
	}
	if _, err := b.client.Get(ctx, "board-2"); err != nil {
		t.Errorf("board-2 after a delete with a stale etag: %v, want it kept", err)
	}
	code, out, errOut = dps("enrollment", "delete", "board-2", "--etag", tpm.ETag, "--json")
	var del deleteResult
	if code != exitOK || json.Unmarshal([]byte(out), &del) != nil || del != (deleteResult{Kind: "enrollment", ID: "board-2", DPS: b.dps.HostName, Outcome: "deleted"}) {
		t.Errorf("enrollment delete with its etag: exit %d %+v\n%s\n%s", code, del, out, errOut)
	}
	code, _, errOut = dps("enrollment", "show", "board-2")
	if code != exitFailed || !strings.Contains(errOut, "has no enrollment board-2") {
		t.Errorf("enrollment show after delete: exit %d, want %d\n%s", code, exitFailed, errOut)
	}

	// Registrations.
	code, out, errOut = dps("registration", "list")
	if code != exitOK || !strings.Contains(out, "member-1") || !strings.Contains(out, "line-g") || !strings.Contains(out, "assigned") {
		t.Errorf("registration list: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = dps("registration", "list", "--group", "line-g", "--json")
	var row registrationRow
	if code != exitOK || json.Unmarshal([]byte(out), &row) != nil || row.Group != "line-g" || row.RegistrationState == nil || row.RegistrationID != "member-1" {
		t.Errorf("registration list --group --json: exit %d %+v\n%s\n%s", code, row, out, errOut)
	}
	code, out, errOut = dps("registration", "show", "board-1", "--json")
	var st enroll.RegistrationState
	if code != exitOK || json.Unmarshal([]byte(out), &st) != nil || st.Status != "assigned" || st.ETag == "" {
		t.Fatalf("registration show --json: exit %d %+v\n%s\n%s", code, st, out, errOut)
	}
	// A registration state's etag is base64 with no quotes: sent as given.
	code, out, errOut = dps("registration", "delete", "board-1", "--etag", "c3RhbGU=")
	if code != exitFailed || !strings.Contains(errOut, "did not delete registration board-1") || !strings.Contains(errOut, "zerotouch dps registration show board-1") ||
		!strings.Contains(errOut, "If-Match c3RhbGU= does not match") {
		t.Errorf("registration delete with a stale etag: exit %d, want %d\n%s\n%s", code, exitFailed, out, errOut)
	}
	code, out, errOut = dps("registration", "delete", "board-1", "--etag", st.ETag)
	if code != exitOK || !strings.Contains(out, "registration board-1 deleted") {
		t.Errorf("registration delete with its etag: exit %d\n%s\n%s", code, out, errOut)
	}
	code, _, errOut = dps("registration", "show", "board-1")
	if code != exitFailed || !strings.Contains(errOut, "has no registration board-1") {
		t.Errorf("registration show after delete: exit %d, want %d\n%s", code, exitFailed, errOut)
	}
	if _, err := b.client.Get(ctx, "board-1"); err != nil {
		t.Errorf("enrollment board-1 after its registration was deleted: %v, want it kept", err)
	}

	// A group with a stale etag is not deleted either; with the etag show
	// prints, it is.
	code, _, errOut = dps("group", "delete", "line-g", "--etag", `"stale"`)
	if code != exitFailed || !strings.Contains(errOut, "did not delete enrollment group line-g") {
		t.Errorf("group delete with a stale etag: exit %d, want %d\n%s", code, exitFailed, errOut)
	}
	code, out, errOut = dps("group", "show", "line-g")
	etag := ""
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "etag" {
			etag = f[1]
		}
	}
	if code != exitOK || etag == "" {
		t.Fatalf("group show: exit %d, no etag line\n%s\n%s", code, out, errOut)
	}
	// Its quotes lost in a shell, the etag still deletes the group.
	if !strings.HasPrefix(etag, `"`) {
		t.Errorf("group show printed etag %s, want it in quotes", etag)
	}
	if code, out, errOut = dps("group", "delete", "line-g", "--etag", strings.Trim(etag, `"`)); code != exitOK {
		t.Errorf("group delete with the etag show printed, without its quotes: exit %d\n%s\n%s", code, out, errOut)
	}

	// An ID the rule for new records refuses (a special character at an
	// end) can still be looked at and deleted: DPS's concept
	// documentation lets the last character be a dash.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"enrollment", "show", "board-"}, "has no enrollment board-"},
		{[]string{"enrollment", "delete", ".board"}, "has no enrollment .board"},
		{[]string{"registration", "show", "board-"}, "has no registration board-"},
		{[]string{"registration", "delete", "board_"}, "has no registration board_"},
		{[]string{"group", "show", "line-"}, "has no enrollment group line-"},
		{[]string{"group", "delete", "line:"}, "has no enrollment group line:"},
		{[]string{"registration", "list", "--group", "line-"}, "no registrations through enrollment group line-"},
	} {
		code, out, errOut := dps(tt.args...)
		want := exitFailed
		if tt.args[1] == "list" {
			want = exitOK
		}
		if code != want || !strings.Contains(errOut, tt.want) {
			t.Errorf("dps %s: exit %d, want %d saying %q\n%s\n%s", strings.Join(tt.args, " "), code, want, tt.want, out, errOut)
		}
	}

	// Command-line mistakes: nothing sent.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"enrollment", "show"}, "arg(s)"},
		{[]string{"enrollment", "show", "board/1"}, `invalid registration ID "board/1"`},
		{[]string{"registration", "delete", "a b"}, `invalid registration ID "a b"`},
		{[]string{"group", "show", "a b"}, `invalid group ID "a b"`},
		{[]string{"registration", "list", "--group", "a b"}, `--group "a b": invalid group ID`},
		{[]string{"enrollment", "list", "extra"}, "unknown command"},
	} {
		if code, out, errOut := dps(tt.args...); code != exitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("dps %s: exit %d, want %d saying %q\n%s\n%s", strings.Join(tt.args, " "), code, exitUsage, tt.want, out, errOut)
		}
	}
}

// TestDpsETagQuotes: --etag as the delete commands send it: an
// enrollment's or a group's etag in quotes, put back when a shell took
// them; a registration state's (base64) as given.
func TestDpsETagQuotes(t *testing.T) {
	for _, tt := range []struct {
		k        recordKind
		in, want string
	}{
		{kindEnrollment, `"abc"`, `"abc"`},
		{kindEnrollment, `abc`, `"abc"`},
		{kindGroup, `abc`, `"abc"`},
		{kindGroup, ` "abc" `, `"abc"`},
		{kindGroup, `"abc`, `"abc"`},
		{kindEnrollment, `*`, `*`},
		{kindEnrollment, `W/"abc"`, `W/"abc"`},
		{kindEnrollment, ``, ``},
		{kindRegistration, `IjEyMyI=`, `IjEyMyI=`},
		{kindRegistration, `"abc"`, `"abc"`},
	} {
		if got := tt.k.ifMatch(tt.in); got != tt.want {
			t.Errorf("%s ifMatch(%q) = %q, want %q", tt.k.noun, tt.in, got, tt.want)
		}
	}
}
