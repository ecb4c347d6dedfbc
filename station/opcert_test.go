package station_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/ca"
	"zerotouch/enroll"
	"zerotouch/enroll/device"
	"zerotouch/enroll/emulator"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/flasher"
	"zerotouch/station"
	"zerotouch/station/records"
)

const linePolicy = "line-policy"

// policyRootFile writes the root of the emulator's credential policy name
// (made if need be) to a PEM file and returns its name and the root.
func policyRootFile(t *testing.T, l *line, name string) (string, *x509.Certificate) {
	t.Helper()
	chain, err := l.dps.Emulator.PolicyChain(context.Background(), name)
	if err != nil {
		t.Fatalf("PolicyChain(%s): %v", name, err)
	}
	root := chain[len(chain)-1]
	file := filepath.Join(t.TempDir(), name+"-root.pem")
	if err := os.WriteFile(file, ca.EncodePEM(root), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, root
}

// TestOperationalCertificate: on a line with operational_certificate, a
// board (individual X.509 enrollment, or the symmetric-key group) sends a
// CSR when it registers with the DPS emulator over HTTPS, gets a chain
// under the line's credential policy, and the station verifies the chain
// to the policy's root and keeps it in the record.
func TestOperationalCertificate(t *testing.T) {
	for _, mode := range []string{station.ModeX509Keygen, station.ModeSymmetricKey} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			l := verifyingLine(t, nil)
			rootsFile, root := policyRootFile(t, l, linePolicy)
			l.extra += "operational_certificate: {credential_policy: " + linePolicy + ", roots: " + rootsFile + "}\n"
			g := station.LineGroup{ID: "line-test-group", Attestation: enroll.AttestationSymmetricKey, CredentialPolicy: linePolicy}
			eg, err := station.NewGroup(g, station.GroupCredential{Key: groupKey})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.client.CreateOrUpdateGroup(ctx, eg, "*"); err != nil {
				t.Fatal(err)
			}
			b := l.dpsBoard(t, "SN-OPC-1", board.TPMNone)
			st := l.station(t, mode, b)
			if _, err := st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, b.Path()); err != nil {
				t.Fatalf("provision: %v", err)
			}
			r, err := l.store.Get(ctx, "SN-OPC-1")
			if err != nil {
				t.Fatal(err)
			}
			if r.Result != records.ResultPassed || r.Registration == nil || r.Registration.State != flasher.RegAssigned {
				t.Fatalf("record: result %s, registration %+v; want passed and assigned", r.Result, r.Registration)
			}
			onBoard, err := b.ReadFile(station.DefaultOperationalCertificatePath)
			if err != nil {
				t.Fatal(err)
			}
			if r.Registration.IssuedChain == "" || r.Registration.IssuedChain != string(onBoard) {
				t.Fatalf("record's issued chain %q, board holds %q; want the board's chain", r.Registration.IssuedChain, onBoard)
			}
			chain := parsePEMChain(t, r.Registration.IssuedChain)
			pool := x509.NewCertPool()
			pool.AddCert(root)
			if err := device.VerifyIssuedChain(chain, nil, r.RegistrationID, pool, time.Now()); err != nil {
				t.Errorf("VerifyIssuedChain(recorded chain, policy %s's root) = %v", linePolicy, err)
			}
			if !chain[len(chain)-1].Equal(root) {
				t.Errorf("recorded chain ends in %s, want the policy's root %s", chain[len(chain)-1].Subject, root.Subject)
			}
			if mode == station.ModeX509Keygen {
				e, err := l.client.Get(ctx, r.RegistrationID)
				if err != nil || e.CredentialPolicyName != linePolicy {
					t.Errorf("DPS enrollment %s: credential policy %q, %v; want %s", r.RegistrationID, e.CredentialPolicyName, err, linePolicy)
				}
			}
		})
	}
}

// TestOperationalCertificateRefused: a chain that does not verify to the
// line's roots (another policy's root), or a board that keeps none,
// fails the board at the register step with the operator's message; the
// registration is recorded without a chain.
func TestOperationalCertificateRefused(t *testing.T) {
	for _, tt := range []struct {
		name string
		// missing: the board's configuration asks for no certificate
		// (the station reads an empty file).
		missing bool
		want    string
	}{
		{name: "other root", want: "does not verify to the line's roots (operational_certificate.roots)"},
		{name: "no chain", missing: true, want: "kept no operational certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			l := verifyingLine(t, nil)
			rootsFile, _ := policyRootFile(t, l, "other-policy")
			l.extra += "operational_certificate: {credential_policy: " + linePolicy + ", roots: " + rootsFile + "}\n"
			dir := t.TempDir()
			b, err := board.Start(board.Config{Serial: "SN-OPC-2", Dir: dir, TPM: board.TPMNone, Baud: 2_000_000, DPSRoots: l.dps.CAFile})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			if tt.missing {
				// The enrollment names the policy but the board sends no
				// CSR: its configuration loses the request once written.
				up := l.enrolled
				l.enrolled = func(ctx context.Context, serial string) error {
					file := filepath.Join(dir, "fs", filepath.FromSlash(station.DefaultConfigPath))
					conf, err := os.ReadFile(file)
					if err != nil {
						return err
					}
					conf = []byte(strings.Replace(string(conf), `"operationalCertificate"`, `"ignored"`, 1))
					if err := os.WriteFile(file, conf, 0o600); err != nil {
						return err
					}
					return up(ctx, serial)
				}
			}
			st := l.station(t, station.ModeX509Keygen, b)
			_, err = st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, b.Path())
			var be *station.BoardError
			var ce *station.ChainError
			if !errors.As(err, &be) || be.Step != station.StepRegister || !errors.As(err, &ce) {
				t.Fatalf("provision: %v; want a chain failure at %s", err, station.StepRegister)
			}
			if !strings.Contains(be.Message, tt.want) || !strings.Contains(strings.ToLower(be.Message), "set the board aside") {
				t.Errorf("operator's message %q; want it to say %q and what to do", be.Message, tt.want)
			}
			r, err := l.store.Get(ctx, "SN-OPC-2")
			if err != nil {
				t.Fatal(err)
			}
			if r.Result == records.ResultPassed || r.Registration == nil || r.Registration.State != flasher.RegAssigned || r.Registration.IssuedChain != "" {
				t.Errorf("record: result %s, registration %+v; want failed, assigned, no chain", r.Result, r.Registration)
			}
		})
	}
}

func parsePEMChain(t *testing.T, s string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	rest := []byte(s)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatalf("no certificate in %q", s)
	}
	return out
}

// TestOperationalCertificateConfig: the settings a line with
// operational_certificate needs, refused at start with the setting named.
func TestOperationalCertificateConfig(t *testing.T) {
	base := "station: s\nline: l\nattestation: x509-keygen\nid_scope: 0ne0001A2B3\nca: {dir: ca}\nslots: [{port: /dev/null}]\n"
	verify := "verify_registration: {enabled: true}\n"
	for _, tt := range []struct {
		name, yaml, field string
	}{
		{"no policy", verify + "operational_certificate: {path: /lfs/op.pem}\n", "operational_certificate.credential_policy"},
		{"bad policy", verify + "operational_certificate: {credential_policy: -x}\n", "operational_certificate.credential_policy"},
		{"no check", "operational_certificate: {credential_policy: default}\n", "operational_certificate"},
		{"relative path", verify + "operational_certificate: {credential_policy: default, path: op.pem}\n", "operational_certificate.path"},
		{"template path", verify + "operational_certificate: {credential_policy: default, path: /lfs/zerotouch/config}\n", "operational_certificate.path"},
	} {
		_, err := station.ParseConfig([]byte(base + tt.yaml))
		var ce *station.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field {
			t.Errorf("%s: ParseConfig = %v, want a ConfigError on %s", tt.name, err, tt.field)
		}
	}
	cfg, err := station.ParseConfig([]byte(base + verify + "operational_certificate: {credential_policy: default}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.OperationalCertificate.Path; got != station.DefaultOperationalCertificatePath {
		t.Errorf("operational_certificate.path = %q, want the default %q", got, station.DefaultOperationalCertificatePath)
	}
	for _, name := range fwtemplates.Names() {
		tmpl, err := fwtemplates.Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		err = station.CheckTemplate(cfg, tmpl)
		var ce *station.ConfigError
		switch {
		case name == "json" && err != nil:
			t.Errorf("CheckTemplate(json) = %v, want nil", err)
		case name != "json" && (!errors.As(err, &ce) || ce.Field != "operational_certificate" || !strings.Contains(ce.Msg, "json")):
			t.Errorf("CheckTemplate(%s) = %v, want a ConfigError on operational_certificate pointing to json", name, err)
		}
	}
	// A json template of one's own that does not carry the request.
	own, err := fwtemplates.Parse("own.json", `{"provisioning": {"registrationId": {{json .RegistrationID}}, "idScope": {{json .IDScope}}}}`)
	if err != nil {
		t.Fatal(err)
	}
	err = station.CheckTemplate(cfg, own)
	if ce := (*station.ConfigError)(nil); !errors.As(err, &ce) || !strings.Contains(ce.Msg, "provisioning.operationalCertificate") {
		t.Errorf("CheckTemplate(own json without the request) = %v, want a ConfigError naming provisioning.operationalCertificate", err)
	}
	// The roots file: read at start.
	cfg.OperationalCertificate.Roots = filepath.Join(t.TempDir(), "missing.pem")
	var ce *station.ConfigError
	if _, err := station.ReadIssuerRoots(cfg); !errors.As(err, &ce) || ce.Field != "operational_certificate.roots" {
		t.Errorf("ReadIssuerRoots(missing file) = %v, want a ConfigError on operational_certificate.roots", err)
	}
	// The station's rule for policy names is the emulator's.
	for _, name := range []string{"default", "ab", "abc", "a-b", "-ab", "ab-", "a_b", strings.Repeat("a", 50), strings.Repeat("a", 51), "Line-1"} {
		_, err := station.ParseConfig([]byte(base + verify + "operational_certificate: {credential_policy: " + name + "}\n"))
		if (err == nil) != (emulator.CheckPolicyName(name) == nil) {
			t.Errorf("credential_policy %q: ParseConfig = %v, emulator.CheckPolicyName = %v; want both to agree", name, err, emulator.CheckPolicyName(name))
		}
	}
}

// TestOperationalCertificateGroup: EnsureGroup creates a line's group
// with its credential policy, and refuses a group in DPS that names
// another (or none).
func TestOperationalCertificateGroup(t *testing.T) {
	ctx := context.Background()
	l := newLine(t)
	g := station.LineGroup{ID: "opc-group", Attestation: enroll.AttestationSymmetricKey, Create: true, CredentialPolicy: linePolicy,
		Setting: "symmetric_key.group_id"}
	cred := station.GroupCredential{Key: groupKey}
	if created, err := station.EnsureGroup(ctx, l.client, g, cred, nil); err != nil || !created {
		t.Fatalf("EnsureGroup = %v, %v; want created", created, err)
	}
	have, err := l.client.GetGroup(ctx, g.ID)
	if err != nil || have.CredentialPolicyName != linePolicy {
		t.Fatalf("DPS group: credential policy %q, %v; want %s", have.CredentialPolicyName, err, linePolicy)
	}
	if _, err := station.EnsureGroup(ctx, l.client, g, cred, nil); err != nil {
		t.Errorf("EnsureGroup again = %v, want checked", err)
	}
	g.CredentialPolicy = "another-policy"
	if _, err := station.EnsureGroup(ctx, l.client, g, cred, nil); !errors.Is(err, station.ErrGroupMismatch) ||
		!strings.Contains(err.Error(), "operational_certificate.credential_policy") {
		t.Errorf("EnsureGroup(another policy) = %v, want ErrGroupMismatch naming operational_certificate.credential_policy", err)
	}
}

// TestOperationalCertificateStock: a stock board (x509-station-key, its
// individual enrollment naming the policy) registers at boot with a CSR,
// keeps the chain in its file system, and the station verifies and
// records it.
func TestOperationalCertificateStock(t *testing.T) {
	ctx := context.Background()
	l := verifyingLine(t, nil)
	rootsFile, root := policyRootFile(t, l, linePolicy)
	l.extra += stockSequence + "operational_certificate: {credential_policy: " + linePolicy + ", roots: " + rootsFile + "}\n"
	b := l.stockBoard(t, "factory-label", board.Config{})
	st := l.station(t, station.ModeX509StationKey, b)
	sum, err := st.Run(ctx, station.RunOptions{Once: true})
	if err != nil || sum.Passed != 1 {
		t.Fatalf("Run = %+v, %v; events %+v", sum, err, l.events)
	}
	r, err := l.store.Get(ctx, "ZS-000001")
	if err != nil {
		t.Fatal(err)
	}
	if r.Registration == nil || r.Registration.IssuedChain == "" {
		t.Fatalf("record's registration %+v, want an issued chain", r.Registration)
	}
	onBoard, err := b.ReadFile(flasher.StockMount + "/operational.pem")
	if err != nil || string(onBoard) != r.Registration.IssuedChain {
		t.Errorf("board's chain %q, %v; want the recorded one", onBoard, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	if err := device.VerifyIssuedChain(parsePEMChain(t, r.Registration.IssuedChain), nil, r.RegistrationID, pool, time.Now()); err != nil {
		t.Errorf("VerifyIssuedChain(recorded chain) = %v", err)
	}
	if e, err := l.client.Get(ctx, r.RegistrationID); err != nil || e.CredentialPolicyName != linePolicy {
		t.Errorf("DPS enrollment %s: %+v, %v; want credential policy %s", r.RegistrationID, e, err, linePolicy)
	}
}
