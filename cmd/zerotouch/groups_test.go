package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zerotouch/board"
	"zerotouch/ca"
	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
	"zerotouch/flasher"
	"zerotouch/station"
	"zerotouch/station/records"
)

// groupBed is a line enrolled by group: an empty DPS emulator, a local
// CA, a group key file and boards that register with the emulator.
type groupBed struct {
	dir, caDir, pwFile, keyFile string
	key                         []byte
	dps                         *emulator.Server
	connFile                    string
	client                      *enroll.Client
}

func newGroupBed(t *testing.T) *groupBed {
	t.Helper()
	b := &groupBed{dir: t.TempDir()}
	b.caDir, b.pwFile = testCA(t, b.dir)
	b.key = make([]byte, 32)
	rand.Read(b.key)
	b.keyFile = filepath.Join(b.dir, "group-key")
	os.WriteFile(b.keyFile, []byte(base64.StdEncoding.EncodeToString(b.key)+"\n"), 0o600)
	b.dps, b.connFile = startEmulator(t, emulator.Options{})
	cs, _ := enroll.ParseConnectionString(b.dps.ConnectionString)
	var err error
	if b.client, err = enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: b.dps.CAFile}); err != nil {
		t.Fatal(err)
	}
	return b
}

// config writes a station configuration of mode over a new board that
// trusts the emulator, with the registration check on; extra is YAML
// for the ca and symmetric_key sections' group keys.
func (b *groupBed) config(t *testing.T, name, mode, caExtra, symExtra string) (file, records string) {
	t.Helper()
	vb, err := board.Start(board.Config{Serial: strings.ToUpper(name) + "-1", Dir: t.TempDir(), TPM: board.TPMNone, Baud: 1_000_000, DPSRoots: b.dps.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vb.Close() })
	records = filepath.Join(b.dir, name+".db")
	var y strings.Builder
	fmt.Fprintf(&y, "station: st-grp\nline: l1\nattestation: %s\nid_scope: %s\nglobal_endpoint: %s\nbaud: 1000000\n", mode, b.dps.IDScope, b.dps.HostName)
	fmt.Fprintf(&y, "records: %s\nlabels: {dir: %s}\n", records, filepath.Join(b.dir, "labels"))
	fmt.Fprintf(&y, "ca:\n  dir: %s\n  password_file: %s\n%s", b.caDir, b.pwFile, caExtra)
	fmt.Fprintf(&y, "symmetric_key:\n  group_id: line-sym\n  key_file: %s\n%s", b.keyFile, symExtra)
	fmt.Fprintf(&y, "dps:\n  connection_string_file: %s\n  ca_file: %s\n  quota: 60000\n", b.connFile, b.dps.CAFile)
	y.WriteString("verify_registration:\n  enabled: true\n  timeout: 1m\n")
	fmt.Fprintf(&y, "slots:\n  - port: %s\n", vb.Path())
	file = filepath.Join(b.dir, name+".yaml")
	if err := os.WriteFile(file, []byte(y.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, records
}

// registered checks that the line's one board passed and was assigned by
// DPS, and whether its record carries an individual enrollment.
func registered(t *testing.T, db string, individual bool) {
	t.Helper()
	s, err := records.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rs, err := s.List(context.Background(), records.Filter{})
	if err != nil || len(rs) != 1 {
		t.Fatalf("records: %d, %v; want one", len(rs), err)
	}
	r, err := s.Get(context.Background(), rs[0].Serial)
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != records.ResultPassed || r.Registration == nil || r.Registration.State != flasher.RegAssigned {
		t.Errorf("record of %s: result %s, registration %+v; want passed and assigned", r.Serial, r.Result, r.Registration)
	}
	if (r.Enrollment != nil) != individual {
		t.Errorf("record of %s: individual enrollment %v, want %v", r.Serial, r.Enrollment != nil, individual)
	}
}

// TestRunGroupLines: a symmetric-key line and an X.509 line enrolled by
// group (ca.group_id) start on an empty DPS, create their groups, and
// provision a board that registers; started again they find the group
// and check it. Told not to create the group, or meeting a group with
// another key or intermediate, or of the other kind, the station refuses
// to start (exit 3), naming the group, the DPS and what to do.
func TestRunGroupLines(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name, mode, caExtra, group string
		attestation                string
	}{
		{"sym", station.ModeSymmetricKey, "", "line-sym", enroll.AttestationSymmetricKey},
		{"x509", station.ModeX509Keygen, "  group_id: line-x509\n", "line-x509", enroll.AttestationX509},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := newGroupBed(t)
			file, db := b.config(t, tt.name, tt.mode, tt.caExtra, "")
			code, out, errOut := run(t, "run", "--config", file, "--once")
			if code != exitOK || !strings.Contains(errOut, "enrollment group created") || !strings.Contains(errOut, tt.group) {
				t.Fatalf("run --once on an empty DPS: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			g, err := b.client.GetGroup(ctx, tt.group)
			if err != nil || g.Attestation.Type != tt.attestation {
				t.Fatalf("group %s in DPS: %+v, %v", tt.group, g, err)
			}
			registered(t, db, false)
			if n, _ := b.dps.Emulator.Writes(ctx, strings.ToLower(tt.name)+"-1"); n != 0 {
				t.Errorf("%d individual enrollments written for the board, want none", n)
			}

			file, _ = b.config(t, tt.name+"-again", tt.mode, tt.caExtra, "")
			code, out, errOut = run(t, "run", "--config", file, "--once")
			if code != exitOK || !strings.Contains(errOut, "enrollment group checked") {
				t.Errorf("run --once with the group there: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
		})
	}

	// Told not to create it: refused at start, naming the group, the DPS
	// and the command that makes it; nothing is created.
	for _, tt := range []struct {
		name, mode, caExtra, symExtra, group, want string
	}{
		{"sym", station.ModeSymmetricKey, "", "  create_group: false\n", "line-sym", "symmetric_key.create_group is false"},
		{"x509", station.ModeX509Keygen, "  group_id: line-x509\n  create_group: false\n", "", "line-x509", "ca.create_group is false"},
	} {
		t.Run(tt.name+"-not-created", func(t *testing.T) {
			b := newGroupBed(t)
			file, _ := b.config(t, tt.name, tt.mode, tt.caExtra, tt.symExtra)
			code, out, errOut := run(t, "run", "--config", file, "--once")
			t.Logf("exit %d: %s", code, lastLine(errOut))
			for _, w := range []string{"DPS " + b.dps.HostName + " has no enrollment group " + tt.group, tt.want, "zerotouch dps group create --id " + tt.group} {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr does not say %q", w)
				}
			}
			if code != exitSetup || strings.Contains(out, `"step"`) {
				t.Errorf("exit %d, want %d before any board\nstdout:\n%s\nstderr:\n%s", code, exitSetup, out, errOut)
			}
			if _, err := b.client.GetGroup(ctx, tt.group); err == nil {
				t.Errorf("group %s was created", tt.group)
			}
		})
	}

	// A group that does not take the line's boards: refused at start.
	b := newGroupBed(t)
	otherCA, err := ca.Init(ctx, filepath.Join(b.dir, "other-ca"), ca.InitOptions{Password: []byte("other")})
	if err != nil {
		t.Fatal(err)
	}
	otherChain, _ := otherCA.Chain(ctx)
	otherCA.Close()
	for _, g := range []struct {
		id   string
		cred station.GroupCredential
		typ  string
	}{
		{"line-sym", station.GroupCredential{Key: []byte("another key of another line")}, enroll.AttestationSymmetricKey},
		{"line-x509", station.GroupCredential{Chain: otherChain}, enroll.AttestationX509},
		{"line-x509-as-sym", station.GroupCredential{Key: b.key}, enroll.AttestationSymmetricKey},
	} {
		eg, err := station.NewGroup(station.LineGroup{ID: g.id, Attestation: g.typ}, g.cred)
		if err == nil {
			_, err = b.client.CreateOrUpdateGroup(ctx, eg, "")
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name, mode, caExtra string
		wants               []string
	}{
		{"another key", station.ModeSymmetricKey, "", []string{"symmetric_key.group_id", "group line-sym holds other keys"}},
		{"another intermediate", station.ModeX509Keygen, "  group_id: line-x509\n", []string{"ca.group_id", "group line-x509's signing certificate is", "not the CA's intermediate"}},
		{"a symmetric-key group", station.ModeX509Keygen, "  group_id: line-x509-as-sym\n", []string{"group line-x509-as-sym is a symmetric-key group"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file, _ := b.config(t, strings.ReplaceAll(tt.name, " ", "-"), tt.mode, tt.caExtra, "")
			code, out, errOut := run(t, "run", "--config", file, "--once")
			t.Logf("exit %d: %s", code, lastLine(errOut))
			if code != exitSetup {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitSetup, out, errOut)
			}
			for _, w := range append(tt.wants, "DPS "+b.dps.HostName) {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr does not say %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// Without a DPS connection string the group cannot be checked: the
// station says so and starts.
func TestRunGroupUnchecked(t *testing.T) {
	b := newGroupBed(t)
	file, _ := b.config(t, "nodps", station.ModeSymmetricKey, "", "")
	text, _ := os.ReadFile(file)
	noDPS := strings.Replace(string(text), "connection_string_file: "+b.connFile, "upload: false", 1)
	noDPS = strings.Replace(noDPS, "verify_registration:\n  enabled: true", "verify_registration:\n  enabled: false", 1)
	os.WriteFile(file, []byte(noDPS), 0o600)
	t.Setenv(envDPSConnectionString, "")
	code, out, errOut := run(t, "run", "--config", file, "--once")
	if code != exitOK || !strings.Contains(errOut, "enrollment group cannot be checked") || !strings.Contains(errOut, "line-sym") {
		t.Errorf("exit %d, want 0 with a warning naming the group\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

// TestRunGroupOperationalCertificate: a symmetric-key line with
// operational_certificate creates its group naming the credential policy,
// and its board gets a chain from DPS that the record keeps; a group in
// DPS without the policy stops the station at start, naming the setting.
func TestRunGroupOperationalCertificate(t *testing.T) {
	ctx := context.Background()
	b := newGroupBed(t)
	oc := "operational_certificate: {credential_policy: cmd-policy}\n"
	file, db := b.config(t, "opc", station.ModeSymmetricKey, "", oc)
	code, out, errOut := run(t, "run", "--config", file, "--once")
	if code != exitOK || !strings.Contains(errOut, "enrollment group created") {
		t.Fatalf("run --once: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	g, err := b.client.GetGroup(ctx, "line-sym")
	if err != nil || g.CredentialPolicyName != "cmd-policy" {
		t.Fatalf("group line-sym in DPS: %+v, %v; want credential policy cmd-policy", g, err)
	}
	registered(t, db, false)
	code, out, errOut = run(t, "records", "show", "OPC-1", "--db", db, "--json")
	var shown recordShow
	if code != exitOK || json.Unmarshal([]byte(out), &shown) != nil || shown.Record == nil || shown.Record.Registration == nil ||
		!strings.HasPrefix(shown.Record.Registration.IssuedChain, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("records show OPC-1 --json: exit %d (%s): %s; want the issued chain", code, errOut, out)
	}

	g.CredentialPolicyName = ""
	if _, err := b.client.CreateOrUpdateGroup(ctx, g, "*"); err != nil {
		t.Fatal(err)
	}
	file, _ = b.config(t, "opc-again", station.ModeSymmetricKey, "", oc)
	code, out, errOut = run(t, "run", "--config", file, "--once")
	if code == exitOK || !strings.Contains(errOut, "operational_certificate.credential_policy") {
		t.Errorf("run --once with a group without the policy: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}
