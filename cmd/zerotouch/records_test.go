package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"zerotouch/enroll"
	"zerotouch/station/records"
)

// newRecordsDB makes a records database with three boards that passed
// (TPM) and one that failed, and leaves it open, as a running station
// would. It returns the path.
func newRecordsDB(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "zerotouch.db")
	s, err := records.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i := range 3 {
		ek := append([]byte{0, 32}, fmt.Sprintf("cmd-test-ek-%020d", i)...)
		sum := sha256.Sum256(ek)
		id := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
		r := &records.Record{Serial: fmt.Sprintf("SN-%d", i), Model: "zt-1", Attestation: records.AttestationTPM,
			RegistrationID: id, EKPublic: ek, Station: "st-1", Slot: fmt.Sprint(i + 1), Operator: "ana", Result: records.ResultPassed,
			Enrollment: &enroll.Enrollment{RegistrationID: id, Attestation: enroll.Attestation{Type: enroll.AttestationTPM,
				TPM: &enroll.TPMAttestation{EndorsementKey: base64.StdEncoding.EncodeToString(ek)}}}}
		if _, err := s.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	failed := &records.Record{Serial: "SN-BAD", Attestation: records.AttestationTPM, Result: records.ResultFailed,
		Message: "Board on slot 4 stopped answering: reseat it and press Retry", Slot: "4",
		Cause: testCause, FailedStep: "config", ConfigSHA256: testConfigSum[:]}
	if _, err := s.Save(ctx, failed); err != nil {
		t.Fatal(err)
	}
	return path
}

// testCause is a failed board's cause, as the station records it.
const testCause = "upload /lfs/zerotouch/config at offset 0 of 348: on D: fs.file: board error 10 of group 8"

var testConfigSum = sha256.Sum256([]byte("config"))

func TestRecordsCommands(t *testing.T) {
	db := newRecordsDB(t)

	code, out, errOut := run(t, "records", "list", "--db", db)
	if code != exitOK {
		t.Fatalf("records list: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"SERIAL", "SN-0", "SN-1", "SN-2", "SN-BAD", "pending", "failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("records list does not show %q:\n%s", want, out)
		}
	}

	tests := []struct {
		args []string
		want []string // serials, in order
	}{
		{[]string{"--result", "failed"}, []string{"SN-BAD"}},
		{[]string{"--state", "pending", "--limit", "2"}, []string{"SN-2", "SN-1"}},
		{[]string{"--search", "sn-1"}, []string{"SN-1"}},
		{nil, []string{"SN-BAD", "SN-2", "SN-1", "SN-0"}},
	}
	for _, tt := range tests {
		args := append([]string{"records", "list", "--db", db, "--json"}, tt.args...)
		code, out, errOut := run(t, args...)
		if code != exitOK {
			t.Errorf("%q: exit %d: %s", args, code, errOut)
			continue
		}
		var got []string
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			var l recordLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("%q: line %q is not JSON: %v", args, sc.Text(), err)
			}
			got = append(got, l.Serial)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%q = %q, want %q", args, got, tt.want)
		}
	}

	code, out, errOut = run(t, "records", "show", "SN-1", "--db", db)
	if code != exitOK {
		t.Fatalf("records show: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"SN-1", "registration ID", "pending", "audit:", records.EventCreated, "ana"} {
		if !strings.Contains(out, want) {
			t.Errorf("records show does not show %q:\n%s", want, out)
		}
	}
	_, out, _ = run(t, "records", "list", "--db", db, "--json", "--search", "SN-2")
	var l recordLine
	if err := json.Unmarshal([]byte(out), &l); err != nil || l.RegistrationID == "" {
		t.Fatalf("records list --search SN-2 --json = %q (%v), want SN-2's line", out, err)
	}
	code, out, errOut = run(t, "records", "show", strings.ToUpper(l.RegistrationID), "--db", db, "--json")
	if code != exitOK {
		t.Fatalf("records show REGID --json: exit %d: %s", code, errOut)
	}
	var shown recordShow
	if err := json.Unmarshal([]byte(out), &shown); err != nil || shown.Record == nil || shown.Record.Serial != "SN-2" ||
		len(shown.Audit) == 0 || shown.Record.Enrollment == nil {
		t.Errorf("records show --json = %s (%v), want SN-2's record, enrollment and audit", out, err)
	}
	if code, _, errOut := run(t, "records", "show", "SN-9", "--db", db); code != exitFailed || !strings.Contains(errOut, "SN-9") {
		t.Errorf("records show of an unknown board: exit %d, %q; want %d naming it", code, errOut, exitFailed)
	}

	// Exports: to standard output, and to a file; both read back.
	code, out, errOut = run(t, "records", "export", "--format", "csv", "--db", db)
	if code != exitOK {
		t.Fatalf("records export csv: exit %d: %s", code, errOut)
	}
	if es, err := enroll.ReadFile(strings.NewReader(out), "out.csv"); err != nil || len(es) != 3 {
		t.Errorf("records export csv read back: %d enrollments, %v; want 3\n%s", len(es), err, out)
	}
	file := filepath.Join(t.TempDir(), "enrollments.json")
	code, out, errOut = run(t, "records", "export", "--format", "json", "--db", db, "--out", file, "--result", "passed")
	if code != exitOK {
		t.Fatalf("records export json: exit %d: %s", code, errOut)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if es, err := enroll.ReadFile(f, file); err != nil || len(es) != 3 {
		t.Errorf("records export json read back: %d enrollments, %v; want 3", len(es), err)
	}
	if out != "" || !strings.Contains(errOut, "3 enrollments") {
		t.Errorf("records export --out: stdout %q stderr %q; want a count on stderr", out, errOut)
	}
}

func TestRecordsErrors(t *testing.T) {
	db := newRecordsDB(t)
	missing := filepath.Join(t.TempDir(), "nothing-here.db")
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{[]string{"records", "list", "--db", missing}, exitUsage, "no records database"},
		{[]string{"records", "show", "SN-0", "--db", missing}, exitUsage, "no records database"},
		{[]string{"records", "export", "--format", "json", "--db", missing}, exitUsage, "no records database"},
		{[]string{"records", "export", "--format", "xml", "--db", db}, exitUsage, "--format"},
		{[]string{"records", "export", "--db", db}, exitUsage, "--format"},
		{[]string{"records", "list", "--db", db, "--result", "ok"}, exitUsage, "--result"},
		{[]string{"records", "list", "--db", db, "--state", "done"}, exitUsage, "--state"},
		{[]string{"records", "list", "--db", db, "--limit", "-1"}, exitUsage, "--limit"},
		{[]string{"records", "show", "--db", db}, exitUsage, "arg"},
	}
	for _, tt := range tests {
		code, _, errOut := run(t, tt.args...)
		if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
			t.Errorf("%q: exit %d, %q; want %d and %q", tt.args, code, errOut, tt.wantCode, tt.wantErr)
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a read command created %s", missing)
	}
}

// Records hold text that came from boards (and, written by an older
// zerotouch or another tool, it may break today's rules): list and show
// print it escaped, so that it can neither forge a line nor drive the
// terminal. A board left in progress says so, and that its enrollment
// is held.
func TestRecordsPrintEscaped(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "zerotouch.db")
	s, err := records.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	hostile := "SN-9\nFAKE LOG LINE: board SN-9 passed\x1b[31m"
	if _, err := s.Save(ctx, &records.Record{Serial: hostile, Attestation: records.AttestationTPM, Result: records.ResultFailed,
		Message: "line one\rline two", Operator: "op\x1b]0;title\x07"}); err != nil {
		t.Fatal(err)
	}
	passed := &records.Record{Serial: "SN-IP", Attestation: records.AttestationSymmetricKey, RegistrationID: "sn-ip", Result: records.ResultPassed,
		Enrollment: &enroll.Enrollment{RegistrationID: "sn-ip", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey,
			SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: "cHJpbWFyeWtleXByaW1hcnlrZXlwcmltYXJ5a2V5MTI=", SecondaryKey: "c2Vjb25kYXJ5a2V5c2Vjb25kYXJ5a2V5c2Vjb25kMTI="}}}}
	if _, err := s.Save(ctx, passed); err != nil {
		t.Fatal(err)
	}
	if err := s.Begin(ctx, &records.Record{Serial: "SN-IP", Attestation: records.AttestationSymmetricKey}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"records", "list", "--db", path}, {"records", "show", hostile, "--db", path}} {
		code, out, errOut := run(t, args...)
		if code != exitOK {
			t.Fatalf("%q: exit %d: %s", args, code, errOut)
		}
		for _, bad := range []string{"\nFAKE LOG LINE", "\x1b", "\r", "\a"} {
			if strings.Contains(out, bad) {
				t.Errorf("%q prints %q raw:\n%s", args, bad, out)
			}
		}
		if !strings.Contains(out, `SN-9\nFAKE LOG LINE`) {
			t.Errorf("%q does not show the serial escaped:\n%s", args, out)
		}
	}
	_, out, _ := run(t, "records", "show", "SN-IP", "--db", path)
	for _, want := range []string{"in progress (was passed)", "provision it again", "held until the board passes again"} {
		if !strings.Contains(out, want) {
			t.Errorf("records show of a board in progress lacks %q:\n%s", want, out)
		}
	}
	_, out, _ = run(t, "records", "list", "--db", path, "--result", "in_progress", "--json")
	if !strings.Contains(out, `"SN-IP"`) || strings.Contains(out, "FAKE") {
		t.Errorf("records list --result in_progress = %s, want SN-IP alone", out)
	}
}

// A failed board's step is in the list and its cause in show, text and
// JSON, with the configuration's hash as hex in both; every line of
// --json output, errors included, is JSON.
func TestRecordsShowTheCause(t *testing.T) {
	db := newRecordsDB(t)
	code, out, errOut := run(t, "records", "list", "--db", db)
	if code != exitOK || !strings.Contains(out, "failed at config") {
		t.Errorf("records list: exit %d, %q (%s); want SN-BAD failed at config", code, out, errOut)
	}
	code, out, errOut = run(t, "records", "show", "SN-BAD", "--db", db)
	hexSum := fmt.Sprintf("%x", testConfigSum)
	for _, want := range []string{"failed step", "config", "cause", testCause, "reseat it", "sha256 " + hexSum, "step: config; cause: " + testCause} {
		if code != exitOK || !strings.Contains(out, want) {
			t.Errorf("records show SN-BAD: exit %d (%s) lacks %q:\n%s", code, errOut, want, out)
		}
	}

	code, out, errOut = run(t, "records", "show", "SN-BAD", "--db", db, "--json")
	if code != exitOK {
		t.Fatalf("records show --json: exit %d: %s", code, errOut)
	}
	var shown struct {
		Record map[string]any `json:"record"`
		Audit  []struct {
			Detail string `json:"detail"`
		} `json:"audit"`
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("records show --json = %q: %v", out, err)
	}
	if shown.Record["cause"] != testCause || shown.Record["failedStep"] != "config" || shown.Record["configSha256"] != hexSum {
		t.Errorf("records show --json: cause %v, failedStep %v, configSha256 %v; want %q, config, %s",
			shown.Record["cause"], shown.Record["failedStep"], shown.Record["configSha256"], testCause, hexSum)
	}
	if len(shown.Audit) == 0 || !strings.Contains(shown.Audit[len(shown.Audit)-1].Detail, testCause) {
		t.Errorf("records show --json: audit %+v, want the cause in the failed save's row", shown.Audit)
	}

	_, out, _ = run(t, "records", "list", "--db", db, "--json", "--result", "failed")
	var l recordLine
	if err := json.Unmarshal([]byte(out), &l); err != nil || l.FailedStep != "config" || l.Cause != testCause {
		t.Errorf("records list --json --result failed = %q (%v); want SN-BAD with its step and cause", out, err)
	}

	// Errors under --json are JSON too, on every line.
	for _, args := range [][]string{
		{"records", "show", "SN-9", "--db", db, "--json"},
		{"records", "list", "--db", db, "--json", "--result", "ok"},
		{"records", "list", "--db", filepath.Join(t.TempDir(), "none.db"), "--json"},
	} {
		code, out, errOut := run(t, args...)
		if code == exitOK {
			t.Errorf("%q: exit 0, want an error", args)
		}
		for _, l := range strings.Split(strings.TrimSpace(out+errOut), "\n") {
			if l != "" && !json.Valid([]byte(l)) {
				t.Errorf("%q: line %q is not JSON", args, l)
			}
		}
	}
}

// A symmetric-key line's boards enroll through the enrollment group:
// export has nothing of theirs to write, writes nothing (no header-only
// file `zerotouch upload --from` would take), leaves a file already
// there as it was, says why, and exits 1.
func TestRecordsExportNothing(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "zerotouch.db")
	s, err := records.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 2 {
		r := &records.Record{Serial: fmt.Sprintf("SK-%d", i), Attestation: records.AttestationSymmetricKey,
			RegistrationID: fmt.Sprintf("sk-%d", i), Result: records.ResultPassed}
		if _, err := s.Save(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	kept := filepath.Join(dir, "earlier.csv")
	if err := os.WriteFile(kept, []byte("an earlier export\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "new.csv")
	for _, tt := range []struct {
		args []string
		file string
		want string // the file's content after; "" for no file
	}{
		{[]string{"--format", "csv"}, "", ""},
		{[]string{"--format", "json", "--out", fresh, "--json"}, fresh, ""},
		{[]string{"--format", "csv", "--out", fresh}, fresh, ""},
		{[]string{"--format", "csv", "--out", kept}, kept, "an earlier export\n"},
		{[]string{"--format", "json", "--out", kept, "--json"}, kept, "an earlier export\n"},
	} {
		args := append([]string{"records", "export", "--db", path}, tt.args...)
		code, out, errOut := run(t, args...)
		if code != exitFailed || out != "" {
			t.Errorf("%q: exit %d, stdout %q; want %d and nothing", args, code, out, exitFailed)
		}
		if !strings.Contains(errOut, "enrollment group") || !strings.Contains(errOut, "nothing to upload per board") {
			t.Errorf("%q: stderr %q; want it to say the group enrolls them", args, errOut)
		}
		if slices.Contains(args, "--json") {
			for _, l := range strings.Split(strings.TrimSpace(errOut), "\n") {
				if !json.Valid([]byte(l)) {
					t.Errorf("%q: stderr line %q is not JSON", args, l)
				}
			}
		}
		if tt.file == "" {
			continue
		}
		b, err := os.ReadFile(tt.file)
		switch {
		case tt.want == "" && !os.IsNotExist(err):
			t.Errorf("%q: %s exists (%q, %v); want no file", args, tt.file, b, err)
		case tt.want != "" && string(b) != tt.want:
			t.Errorf("%q: %s holds %q (%v); want it kept as %q", args, tt.file, b, err, tt.want)
		}
	}
}

// TestRecordsShowIssuedChain: the operational certificate chain DPS issued
// at a board's registration is in records show, as text and in --json.
func TestRecordsShowIssuedChain(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "zerotouch.db")
	s, err := records.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Save(ctx, &records.Record{Serial: "SN-1", Attestation: records.AttestationSymmetricKey, RegistrationID: "sn-1",
		Result: records.ResultPassed}); err != nil {
		t.Fatal(err)
	}
	const chain = "-----BEGIN CERTIFICATE-----\nMIIBissued\n-----END CERTIFICATE-----\n"
	if err := s.SetRegistration(ctx, "SN-1", records.Registration{State: "assigned", AssignedHub: "hub", DeviceID: "dev", IssuedChain: chain}, "ana"); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, "records", "show", "SN-1", "--db", db, "--json")
	if code != exitOK {
		t.Fatalf("records show --json: exit %d: %s", code, errOut)
	}
	var shown recordShow
	if err := json.Unmarshal([]byte(out), &shown); err != nil || shown.Record == nil || shown.Record.Registration == nil ||
		shown.Record.Registration.IssuedChain != chain || !strings.Contains(out, `"issuedCertificateChain"`) {
		t.Errorf("records show --json = %s (%v), want registration.issuedCertificateChain %q", out, err, chain)
	}
	code, out, errOut = run(t, "records", "show", "SN-1", "--db", db)
	if code != exitOK || !strings.Contains(out, "operational certificate chain (issued by DPS):\n-----BEGIN CERTIFICATE-----\nMIIBissued") {
		t.Errorf("records show: exit %d (%s):\n%s\nwant the issued chain", code, errOut, out)
	}
}
