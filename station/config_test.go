package station

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodConfig = `
station: st-01
line: line-7
attestation: tpm
id_scope: 0ne0001A2B3
slots:
  - port: /dev/ttyACM0
  - name: right
    port: vid=2fe3,usb-serial=E6614103
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.GlobalEndpoint != DefaultGlobalEndpoint || c.Template.Name != "json" || c.Template.Path != DefaultConfigPath ||
		c.Baud != 115200 || c.Slots[0].Name != "slot-1" || c.Slots[1].Name != "right" || c.DPS.Quota != 1000 {
		t.Errorf("defaults not applied: %+v", c)
	}
}

// Each mistake is refused at start with the field named.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name, edit, field, want string
	}{
		{"unknown field", "+colour: red", "yaml", "colour"},
		{"no attestation", "attestation: tpm=>", "attestation", "missing"},
		{"bad attestation", "attestation: tpm=>attestation: tmp", "attestation", `"tmp"`},
		{"bad id scope", "id_scope: 0ne0001A2B3=>id_scope: scope", "id_scope", "0ne0001A2B3"},
		{"endpoint as URL", "+global_endpoint: https://global.azure-devices-provisioning.net/", "global_endpoint", "without https://"},
		{"bad registration template", "+registration_id: '{{.Nope}}'", "registration_id", "Nope"},
		{"no slots", "slots:=>unused:", "yaml", "unused"},
		{"bad port", "port: /dev/ttyACM0=>port: vid=zz", "slots[0].port", ""},
		{"duplicate slot", "name: right=>name: slot-1", "slots[1].name", "slots[0]"},
		{"x509 without CA", "attestation: tpm=>attestation: x509-keygen", "ca", "dir"},
		{"step-ca without fingerprint", "attestation: tpm=>attestation: x509-tpm\nca:\n  url: https://ca:9000", "ca.fingerprint", "SHA-256"},
		{"group without ID", "attestation: tpm=>attestation: symmetric-key", "symmetric_key.group_id", "missing"},
		{"bad X.509 group ID", "attestation: tpm=>attestation: x509-keygen\nca:\n  dir: ca\n  group_id: 'line 7/boards'", "ca.group_id", "invalid"},
		{"relative path", "+template:\n  path: config.json", "template.path", "absolute"},
		{"name and file", "+template:\n  name: json\n  file: my.tmpl", "template", "not both"},
		{"share over 1", "+dps:\n  share: 2", "dps", "share"},
		{"firmware without version", "+firmware:\n  image: app.bin", "firmware", "both"},
		{"EK cert without roots", "+tpm:\n  require_ek_cert: true", "tpm.require_ek_cert", "ek_roots"},
		{"plain supervisor password", "+gui:\n  supervisor_password_hash: hunter2", "gui.supervisor_password_hash", "bcrypt"},
		{"device ID IoT Hub refuses", "+device_id: 'dev#{{.Serial}}'", "device_id", "invalid device ID"},
		{"timeout over a minute", "+timeout: 5m", "timeout", "at most 1m0s"},
		{"negative board timeout", "+board_timeout: -1s", "board_timeout", "negative"},
		{"board timeout under the registration check", "+board_timeout: 1m\nverify_registration:\n  enabled: true\n  timeout: 2m", "board_timeout", "no time"},
		{"bad serial pattern", "+serial_pattern: 'SN-[0-9'", "serial_pattern", "missing closing"},
	}
	for _, tt := range tests {
		text := goodConfig
		if add, ok := strings.CutPrefix(tt.edit, "+"); ok {
			text += add + "\n"
		} else {
			from, to, _ := strings.Cut(tt.edit, "=>")
			text = strings.Replace(text, from, to, 1)
		}
		_, err := ParseConfig([]byte(text))
		var ce *ConfigError
		if !errors.As(err, &ce) || !errors.Is(err, ErrConfig) {
			t.Errorf("%s: ParseConfig = %v, want a *ConfigError", tt.name, err)
			continue
		}
		if ce.Field != tt.field || !strings.Contains(ce.Msg, tt.want) {
			t.Errorf("%s: error on %q: %q; want field %q saying %q", tt.name, ce.Field, ce.Msg, tt.field, tt.want)
		}
	}
}

// EnrollmentGroup names the group a line enrolls through, and whether
// the station creates it (by default it does).
func TestConfigEnrollmentGroup(t *testing.T) {
	for _, tt := range []struct {
		name, edit string
		want       LineGroup
		ok         bool
	}{
		{"tpm", "", LineGroup{}, false},
		{"x509 individual", "attestation: tpm=>attestation: x509-keygen\nca:\n  dir: ca", LineGroup{}, false},
		{"x509 group", "attestation: tpm=>attestation: x509-tpm\nca:\n  dir: ca\n  group_id: line-7",
			LineGroup{ID: "line-7", Attestation: "x509", Create: true, Setting: "ca.group_id", CreateSetting: "ca.create_group"}, true},
		{"x509 group not created", "attestation: tpm=>attestation: x509-keygen\nca:\n  dir: ca\n  group_id: line-7\n  create_group: false",
			LineGroup{ID: "line-7", Attestation: "x509", Create: false, Setting: "ca.group_id", CreateSetting: "ca.create_group"}, true},
		{"symmetric key", "attestation: tpm=>attestation: symmetric-key\nsymmetric_key:\n  group_id: g1",
			LineGroup{ID: "g1", Attestation: "symmetricKey", Create: true, Setting: "symmetric_key.group_id", CreateSetting: "symmetric_key.create_group"}, true},
		{"symmetric key not created", "attestation: tpm=>attestation: symmetric-key\nsymmetric_key:\n  group_id: g1\n  create_group: false",
			LineGroup{ID: "g1", Attestation: "symmetricKey", Create: false, Setting: "symmetric_key.group_id", CreateSetting: "symmetric_key.create_group"}, true},
	} {
		text := goodConfig
		if tt.edit != "" {
			from, to, _ := strings.Cut(tt.edit, "=>")
			text = strings.Replace(text, from, to, 1)
		}
		c, err := ParseConfig([]byte(text))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if g, ok := c.EnrollmentGroup(); g != tt.want || ok != tt.ok {
			t.Errorf("%s: EnrollmentGroup() = %+v, %v; want %+v, %v", tt.name, g, ok, tt.want, tt.ok)
		}
	}
}

func TestLoadConfigNamesFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "station.yaml")
	os.WriteFile(f, []byte("attestation: nope\n"), 0o600)
	_, err := LoadConfig(f)
	if err == nil || !strings.HasPrefix(err.Error(), f+": attestation:") {
		t.Errorf("LoadConfig = %v, want the file and field named", err)
	}
}

func TestDerivedKey(t *testing.T) {
	// The device key of an enrollment group with symmetric keys, as the
	// Azure docs compute it with openssl:
	// echo -n sn-007 | openssl sha256 -mac HMAC -macopt key:group-key -binary | base64
	const want = "AA2t8coDkGN8ezRv9T6qPVF2/7/MndhX3HB1etssa9Y="
	if got := derivedKey([]byte("group-key"), "sn-007"); got != want {
		t.Errorf("derivedKey = %s, want %s", got, want)
	}
}

// The configuration shown in the README parses.
func TestREADMEConfig(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("README has no yaml block")
	}
	if _, err := ParseConfig([]byte(block)); err != nil {
		t.Errorf("README's configuration: %v", err)
	}
}
