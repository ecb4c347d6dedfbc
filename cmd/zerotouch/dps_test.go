package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zerotouch/ca"
	"zerotouch/enroll"
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
