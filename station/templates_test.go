package station_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/enroll/emulator"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/flasher"
	"zerotouch/station"
	"zerotouch/station/records"
)

// builtinModes are the attestations with the TPM their boards need.
var builtinModes = []struct{ mode, tpm string }{
	{station.ModeTPM, board.TPMSim},
	{station.ModeX509TPM, board.TPMSim},
	{station.ModeX509Keygen, board.TPMNone},
	{station.ModeSymmetricKey, board.TPMNone},
}

// lineSettings are the values the tests give each setting the start-up
// check may ask for, as template: YAML lines.
var lineSettings = map[string]string{
	"template.certificate_path": "  certificate_path: /lfs/zerotouch/device.pem\n",
	"template.key_uri":          "  key_uri: pkcs11:token=zerotouch;object=device-id\n",
}

// verifyingConfig is the configuration of l's line with one slot on port,
// in mode, with the built-in template name and the template: lines
// settings.
func (l *line) verifyingConfig(t *testing.T, mode, name, settings, port string) *station.Config {
	t.Helper()
	y := "station: st-test\nline: line-test\nattestation: " + mode + "\nid_scope: " + l.dps.IDScope + "\n" +
		"ca:\n  dir: unused-here\nsymmetric_key:\n  group_id: line-test-group\nslots:\n  - port: " + port + "\nbaud: 2000000\n" +
		l.extra + "template:\n  name: " + name + "\n" + settings
	cfg, err := station.ParseConfig([]byte(y))
	if err != nil {
		t.Fatalf("ParseConfig: %v\n%s", err, y)
	}
	return cfg
}

// checkedSettings gives the line the settings the start-up check asks
// for, one by one, until it passes, and returns them.
func checkedSettings(t *testing.T, l *line, mode, name string, tmpl *fwtemplates.Template) (string, []string) {
	t.Helper()
	var (
		settings string
		asked    []string
	)
	for {
		err := station.CheckTemplate(l.verifyingConfig(t, mode, name, settings, "/dev/ttyACM0"), tmpl)
		if err == nil {
			return settings, asked
		}
		var te *station.TemplateError
		if !errors.As(err, &te) || !te.Missing {
			t.Fatalf("CheckTemplate(%s, %s) = %v; want nil or a missing setting", name, mode, err)
		}
		set, ok := lineSettings[te.Setting]
		if !ok || slices.Contains(asked, te.Setting) {
			t.Fatalf("CheckTemplate(%s, %s) asks for %s (after %v), which this test cannot give: %v", name, mode, te.Setting, asked, err)
		}
		asked = append(asked, te.Setting)
		settings += set
	}
}

// TestTemplatesRegister: for every built-in template and attestation, a
// line given what the start-up check asks for provisions a board, and
// the board, reading the configuration as its firmware would at first
// boot, registers with the DPS emulator and is assigned. On an X.509
// line with template.certificate_path (aziot-toml names the certificate
// only by that path), the station wrote the board's chain there.
//
// One emulator, CA and records store serve every case; each case has a
// board of its own. The cases whose boards have no TPM run in parallel
// (the others share the one TPM simulator a process has, in turn).
func TestTemplatesRegister(t *testing.T) {
	begin := time.Now()
	l := verifyingLine(t, nil)
	t.Logf("the emulator, CA and records store started in %v", time.Since(begin).Round(time.Millisecond))
	var upload sync.Mutex // the uploader runs one Run at a time
	enrolled := l.enrolled
	l.enrolled = func(ctx context.Context, serial string) error {
		upload.Lock()
		defer upload.Unlock()
		return enrolled(ctx, serial)
	}
	names := fwtemplates.Names()
	if want := []string{"aziot-toml", "c-header", "esp-idf-nvs-csv", "json"}; !slices.Equal(names, want) {
		t.Fatalf("built-in templates %v, want %v: add the new ones to this test", names, want)
	}
	n := 0
	t.Run("all", func(t *testing.T) {
		for _, name := range names {
			tmpl, err := fwtemplates.Builtin(name)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range builtinModes {
				n++
				t.Run(name+"/"+m.mode, func(t *testing.T) {
					if m.tpm == board.TPMNone {
						t.Parallel()
					}
					ctx := context.Background()
					settings, asked := checkedSettings(t, l, m.mode, name, tmpl)
					certFile := slices.Contains(asked, "template.certificate_path")
					if want := name == "aziot-toml" && (m.mode == station.ModeX509TPM || m.mode == station.ModeX509Keygen); certFile != want {
						t.Errorf("the check asked for %v; asking for template.certificate_path is %v, want %v", asked, certFile, want)
					}
					serial := strings.ToUpper("SN-" + strings.ReplaceAll(name, "-", "") + "-" + strings.ReplaceAll(m.mode, "-", ""))
					b := l.dpsBoard(t, serial, m.tpm)
					cfg := l.verifyingConfig(t, m.mode, name, settings, b.Path())
					st, err := station.New(cfg, station.Deps{Store: l.store, Template: tmpl, Issuer: l.issuer, GroupKey: groupKey,
						Events: l.event, Enrolled: l.enrolled})
					if err != nil {
						t.Fatalf("New after the check passed: %v", err)
					}
					res, err := st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, b.Path())
					if err != nil {
						t.Fatalf("Provision with %s, %s (settings %v): %v", name, m.mode, asked, err)
					}
					r, err := l.store.Get(ctx, serial)
					if err != nil {
						t.Fatal(err)
					}
					reg := r.Registration
					if r.Result != records.ResultPassed || reg == nil || reg.State != flasher.RegAssigned || reg.AssignedHub != emulator.DefaultIoTHub {
						t.Fatalf("record: result %s, registration %+v; want passed, assigned to %s", r.Result, reg, emulator.DefaultIoTHub)
					}
					if res.Record.Registration == nil || res.Record.Registration.DeviceID != r.RegistrationID {
						t.Errorf("registration %+v; want the device ID %s", res.Record.Registration, r.RegistrationID)
					}
					if certFile {
						got, err := b.ReadFile("/lfs/zerotouch/device.pem")
						if err != nil || string(got) != r.CertificateChain || r.CertificateChain == "" {
							t.Errorf("the board's certificate file holds %d bytes (%v); want the record's chain of %d bytes", len(got), err, len(r.CertificateChain))
						}
					}
				})
			}
		}
	})
	if n != 16 {
		t.Errorf("%d cases, want 16", n)
	}
	t.Logf("%d templates × attestations provisioned and registered in %v", n, time.Since(begin).Round(time.Millisecond))
}

// TestCertificateDelivery: on an X.509 line with template.certificate_path,
// the chain is written there before the configuration even when the
// template holds it inline too, within the write and verify steps; a
// certificate the board stores wrong fails the verify step, naming the
// certificate, and the board is not committed.
func TestCertificateDelivery(t *testing.T) {
	ctx := context.Background()
	l := newLine(t)
	tmpl, err := fwtemplates.Builtin("json")
	if err != nil {
		t.Fatal(err)
	}
	b := startBoard(t, "SN-CERT-1", board.TPMNone)
	b.SetFaults(board.Faults{CorruptWrite: 1}) // the first write: the certificate
	cfg := templateConfig(t, station.ModeX509Keygen, "template:\n  certificate_path: /lfs/certs/device.pem\n", b.Path())
	st, err := station.New(cfg, station.Deps{Store: l.store, Template: tmpl, Issuer: l.issuer, Events: l.event})
	if err != nil {
		t.Fatal(err)
	}
	slot := station.SlotConfig{Name: "slot-1"}
	_, err = st.Provision(ctx, slot, b.Path())
	var be *station.BoardError
	if !errors.As(err, &be) || be.Step != station.StepVerify || !errors.Is(err, flasher.ErrVerify) || !strings.Contains(be.Message, "device certificate") {
		t.Fatalf("Provision with the certificate stored wrong = %v; want a failure at %s naming the device certificate", err, station.StepVerify)
	}
	if b.Provisioned() {
		t.Error("the board was committed with its certificate stored wrong")
	}

	l.mu.Lock()
	rerun := len(l.events)
	l.mu.Unlock()
	res, err := st.Provision(ctx, slot, b.Path())
	if err != nil {
		t.Fatalf("re-run: %v", err)
	}
	got, err := b.ReadFile("/lfs/certs/device.pem")
	if err != nil || string(got) != res.Record.CertificateChain {
		t.Errorf("the board's certificate file holds %q (%v); want the record's chain", got, err)
	}
	if !strings.HasPrefix(string(got), "-----BEGIN CERTIFICATE-----") || strings.Count(string(got), "BEGIN CERTIFICATE") < 2 {
		t.Errorf("the certificate file is not a PEM chain of the device certificate and its issuer:\n%s", got)
	}
	conf, err := b.ReadFile(station.DefaultConfigPath)
	if err != nil || !strings.Contains(string(conf), `"certificatePath": "/lfs/certs/device.pem"`) {
		t.Errorf("the configuration does not name the certificate file (%v):\n%s", err, conf)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var steps []string
	for _, e := range l.events[rerun:] {
		if len(steps) == 0 || steps[len(steps)-1] != e.Step {
			steps = append(steps, e.Step)
		}
	}
	want := []string{station.StepConnect, station.StepIdentity, station.StepCertificate, station.StepRender,
		station.StepWrite, station.StepVerify, station.StepCommit, station.StepRecord}
	if !slices.Equal(steps, want) {
		t.Errorf("steps %v, want %v: the certificate is written and verified within the write and verify steps", steps, want)
	}
}

// TestTemplatesRefusedAtStart: a line whose template, attestation and
// settings would fail at the first board is refused by New, before any
// board, naming the setting.
func TestTemplatesRefusedAtStart(t *testing.T) {
	l := newLine(t)
	for _, tt := range []struct {
		name, mode, template, settings string
		field                          string // the *TemplateError's Setting or the *ConfigError's Field
	}{
		{"aziot x509 without a certificate path", station.ModeX509TPM, "aziot-toml", lineSettings["template.key_uri"], "template.certificate_path"},
		{"aziot x509 without a key URI", station.ModeX509Keygen, "aziot-toml", lineSettings["template.certificate_path"], "template.key_uri"},
		{"certificate path a URI", station.ModeX509Keygen, "aziot-toml",
			"  certificate_path: file:///lfs/device.pem\n" + lineSettings["template.key_uri"], "template.certificate_path"},
		{"certificate path relative", station.ModeX509TPM, "json", "  certificate_path: lfs/device.pem\n", "template.certificate_path"},
		{"certificate path not clean", station.ModeX509TPM, "c-header", "  certificate_path: /lfs/../device.pem\n", "template.certificate_path"},
		{"certificate path is the configuration's", station.ModeX509Keygen, "esp-idf-nvs-csv",
			"  certificate_path: " + station.DefaultConfigPath + "\n", "template.certificate_path"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := fwtemplates.Builtin(tt.template)
			if err != nil {
				t.Fatal(err)
			}
			cfg := templateConfig(t, tt.mode, "template:\n  name: "+tt.template+"\n"+tt.settings, "/dev/ttyACM0")
			_, err = station.New(cfg, station.Deps{Store: l.store, Template: tmpl, Issuer: l.issuer})
			var te *station.TemplateError
			var ce *station.ConfigError
			switch {
			case !errors.Is(err, station.ErrConfig):
				t.Fatalf("New = %v, want a configuration error", err)
			case errors.As(err, &te) && te.Setting == tt.field, errors.As(err, &ce) && ce.Field == tt.field:
			default:
				t.Fatalf("New = %v, want it to name %s", err, tt.field)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("New error %q does not say %s", err, tt.field)
			}
			t.Logf("%v", err)
		})
	}
}

// TestRegisterTPMKeyAnyHandle: on an x509-tpm line whose key is at
// another handle than the default and whose key_uri names none, the
// board finds the certificate's key among the TPM's persistent keys and
// registers.
func TestRegisterTPMKeyAnyHandle(t *testing.T) {
	ctx := context.Background()
	l := verifyingLine(t, nil)
	tmpl, err := fwtemplates.Builtin("aziot-toml")
	if err != nil {
		t.Fatal(err)
	}
	b := l.dpsBoard(t, "SN-HANDLE-1", board.TPMSim)
	cfg := l.verifyingConfig(t, station.ModeX509TPM, "aziot-toml",
		lineSettings["template.certificate_path"]+lineSettings["template.key_uri"]+"key: {handle: 0x81000005}\n", b.Path())
	st, err := station.New(cfg, station.Deps{Store: l.store, Template: tmpl, Issuer: l.issuer, Events: l.event, Enrolled: l.enrolled})
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, b.Path())
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if reg := res.Record.Registration; reg == nil || reg.State != flasher.RegAssigned {
		t.Fatalf("registration %+v, want assigned", reg)
	}
}
