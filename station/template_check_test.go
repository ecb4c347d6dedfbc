package station_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"zerotouch/board"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/station"
)

// templateConfig is a line's configuration in mode with the YAML extra
// added, its one slot on port.
func templateConfig(t *testing.T, mode, extra, port string) *station.Config {
	t.Helper()
	y := "station: st-test\nline: line-test\nattestation: " + mode + "\nid_scope: 0ne0001A2B3\n" +
		"ca:\n  dir: unused-here\nsymmetric_key:\n  group_id: line-test-group\n" +
		"slots:\n  - port: " + port + "\nbaud: 2000000\n"
	cfg, err := station.ParseConfig([]byte(y + extra))
	if err != nil {
		t.Fatalf("ParseConfig: %v\n%s", err, y+extra)
	}
	return cfg
}

// templateSettings are the values the test gives each setting a built-in
// template may ask for, as template: YAML lines.
var templateSettings = map[string]string{
	"template.certificate_path": "  certificate_path: /var/secrets/device-id.pem\n",
	"template.key_uri":          "  key_uri: pkcs11:token=zerotouch;object=device-id\n",
}

// TestTemplateCheckBuiltins: for every built-in template and attestation,
// the start-up check either refuses, naming the template, the attestation
// and the setting it needs (and then passes once the setting is given), or
// a line with that template provisions a virtual board, rendering on the
// board what the check let through.
func TestTemplateCheckBuiltins(t *testing.T) {
	modes := []struct{ mode, tpm string }{
		{station.ModeTPM, board.TPMSim},
		{station.ModeX509TPM, board.TPMSim},
		{station.ModeX509Keygen, board.TPMNone},
		{station.ModeSymmetricKey, board.TPMNone},
	}
	// The settings each pair needs, in the order the check asks for them;
	// the other pairs need none.
	needs := map[[2]string][]string{
		{"aziot-toml", station.ModeX509TPM}:    {"template.certificate_path", "template.key_uri"},
		{"aziot-toml", station.ModeX509Keygen}: {"template.certificate_path", "template.key_uri"},
	}
	names := fwtemplates.Names()
	if want := []string{"aziot-toml", "c-header", "esp-idf-nvs-csv", "json"}; !slices.Equal(names, want) {
		t.Fatalf("built-in templates %v, want %v: add the new ones to this test's needs", names, want)
	}
	for _, name := range names {
		for _, m := range modes {
			t.Run(name+"/"+m.mode, func(t *testing.T) {
				ctx := context.Background()
				tmpl, err := fwtemplates.Builtin(name)
				if err != nil {
					t.Fatal(err)
				}
				serial := "ZT-" + strings.ToUpper(m.mode)
				b := startBoard(t, serial, m.tpm)
				extra := "template:\n  name: " + name + "\n"
				var asked []string
				for {
					cfg := templateConfig(t, m.mode, extra, b.Path())
					err := station.CheckTemplate(cfg, tmpl)
					if err == nil {
						break
					}
					var te *station.TemplateError
					if !errors.As(err, &te) || te.Setting == "" || !te.Missing || te.Template != name || te.Attestation != m.mode ||
						!errors.Is(err, station.ErrConfig) || !errors.Is(err, fwtemplates.ErrTemplate) {
						t.Fatalf("CheckTemplate = %v; want a *TemplateError for %s, %s naming a missing setting", err, name, m.mode)
					}
					for _, want := range []string{`"` + name + `"`, m.mode, te.Setting} {
						if !strings.Contains(err.Error(), want) {
							t.Errorf("CheckTemplate error %q does not say %q", err, want)
						}
					}
					set, ok := templateSettings[te.Setting]
					if !ok || slices.Contains(asked, te.Setting) {
						t.Fatalf("CheckTemplate asks for %s (after %v), which this test cannot give: %v", te.Setting, asked, err)
					}
					asked = append(asked, te.Setting)
					extra += set
				}
				if want := needs[[2]string{name, m.mode}]; !slices.Equal(asked, want) {
					t.Errorf("CheckTemplate asked for %v, want %v", asked, want)
				}

				l := newLine(t)
				cfg := templateConfig(t, m.mode, extra, b.Path())
				st, err := station.New(cfg, station.Deps{Store: l.store, Template: tmpl, Issuer: l.issuer, GroupKey: groupKey, Events: l.event})
				if err != nil {
					t.Fatalf("New after CheckTemplate passed: %v", err)
				}
				res, err := st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, b.Path())
				if err != nil {
					t.Fatalf("Provision with %s, %s (settings %v) after the check passed: %v", name, m.mode, asked, err)
				}
				if !b.Provisioned() {
					t.Errorf("the board is not marked provisioned")
				}
				conf, err := b.ReadFile(station.DefaultConfigPath)
				if err != nil {
					t.Fatal(err)
				}
				want := []string{res.Record.RegistrationID, "0ne0001A2B3"}
				if name == "aziot-toml" && len(asked) > 0 {
					want = append(want, "file:///var/secrets/device-id.pem", "pkcs11:token=zerotouch;object=device-id")
				}
				for _, w := range want {
					if !strings.Contains(string(conf), w) {
						t.Errorf("the board's configuration lacks %q:\n%s", w, conf)
					}
				}
			})
		}
	}
}

// TestTemplateCheckRefuses: a template that cannot render what the
// pipeline will give it stops the line at the check, and the error names
// the template, the attestation and the setting at fault (none when the
// template itself is).
func TestTemplateCheckRefuses(t *testing.T) {
	const port = "/dev/ttyACM0"
	for _, tt := range []struct {
		name     string
		mode     string
		template string // a built-in's name, or "file.ext=text" for a custom one
		extra    string
		setting  string // TemplateError.Setting
		field    string // a *ConfigError's Field instead
		missing  bool
		want     string // in the error
	}{
		{name: "aziot x509 without certificate path", mode: station.ModeX509Keygen, template: "aziot-toml",
			setting: "template.certificate_path", missing: true, want: "CertificatePath is empty"},
		{name: "aziot x509 with a relative key path", mode: station.ModeX509TPM, template: "aziot-toml",
			extra:   "template:\n  certificate_path: /var/secrets/id.pem\n  key_uri: keys/device.key\n",
			setting: "template.key_uri", want: "neither an absolute path nor a URI"},
		{name: "custom field the line lacks", mode: station.ModeSymmetricKey, template: `site.json={"site": {{json .Custom.site}}}`,
			extra:   "template:\n  custom:\n    line: L1\n",
			setting: "template.custom.site", missing: true, want: "site"},
		{name: "global endpoint not a host", mode: station.ModeTPM, template: "json",
			extra: "global_endpoint: dps_host.example\n", setting: "global_endpoint", want: "not a host name"},
		{name: "field the attestation does not give", mode: station.ModeX509Keygen,
			template: `k.json={"key": {{required "DerivedKey" .DerivedKey | json}}}`, want: "requires DerivedKey, which attestation x509-keygen does not give"},
		{name: "board value written raw", mode: station.ModeTPM,
			template: `raw.json={"serial": "{{raw .Serial}}"}`, want: "Serial"},
		{name: "registration ID no board can have", mode: station.ModeSymmetricKey, template: "json",
			extra: "registration_id: '{{.Serial}} x'\n", field: "registration_id", want: "registration_id"},
		{name: "certificate path a URI the station cannot write", mode: station.ModeX509Keygen, template: "aziot-toml",
			extra: "template:\n  certificate_path: file:///var/secrets/id.pem\n  key_uri: /var/secrets/id.key\n",
			field: "template.certificate_path", want: "absolute path"},
		{name: "certificate path the configuration's", mode: station.ModeX509TPM, template: "json",
			extra: "template:\n  certificate_path: /lfs/zerotouch/config\n", field: "template.certificate_path", want: "template.path"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var tmpl *fwtemplates.Template
			var err error
			if file, text, ok := strings.Cut(tt.template, "="); ok {
				tmpl, err = fwtemplates.Parse(file, text)
			} else {
				tmpl, err = fwtemplates.Builtin(tt.template)
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg := templateConfig(t, tt.mode, tt.extra, port)
			err = station.CheckTemplate(cfg, tmpl)
			if err == nil {
				t.Fatalf("CheckTemplate(%s, %s) = nil, want an error", tmpl.Name, tt.mode)
			}
			t.Logf("%v", err)
			if !strings.Contains(err.Error(), tt.want) || !errors.Is(err, station.ErrConfig) {
				t.Errorf("CheckTemplate = %v; want a configuration error saying %q", err, tt.want)
			}
			if tt.field != "" {
				var ce *station.ConfigError
				if !errors.As(err, &ce) || ce.Field != tt.field {
					t.Errorf("CheckTemplate = %#v, want a *ConfigError for %s", err, tt.field)
				}
				return
			}
			var te *station.TemplateError
			if !errors.As(err, &te) {
				t.Fatalf("CheckTemplate = %v, want a *TemplateError", err)
			}
			if te.Template != tmpl.Name || te.Attestation != tt.mode || te.Setting != tt.setting || te.Missing != tt.missing {
				t.Errorf("CheckTemplate = {Template %q, Attestation %s, Setting %q, Missing %v}, want {%q, %s, %q, %v}",
					te.Template, te.Attestation, te.Setting, te.Missing, tmpl.Name, tt.mode, tt.setting, tt.missing)
			}
			if !errors.Is(err, fwtemplates.ErrTemplate) {
				t.Errorf("CheckTemplate = %v, does not wrap fwtemplates.ErrTemplate", err)
			}
			for _, w := range []string{tmpl.Name, tt.mode, tt.setting} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckTemplate error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestTemplateCheckInNew: station.New refuses the line the check refuses,
// before any board.
func TestTemplateCheckInNew(t *testing.T) {
	l := newLine(t)
	tmpl, err := fwtemplates.Builtin("aziot-toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := templateConfig(t, station.ModeX509Keygen, "template:\n  name: aziot-toml\n  key_uri: /var/secrets/id.key\n", "/dev/ttyACM0")
	_, err = station.New(cfg, station.Deps{Store: l.store, Template: tmpl, Issuer: l.issuer})
	var te *station.TemplateError
	if !errors.As(err, &te) || te.Setting != "template.certificate_path" || !te.Missing {
		t.Fatalf("New = %v, want a *TemplateError for the missing template.certificate_path", err)
	}
}
