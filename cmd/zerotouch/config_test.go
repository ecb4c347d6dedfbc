package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"gopkg.in/yaml.v3"

	"zerotouch/station"
)

// testHash is a bcrypt hash, of "secret".
const testHash = "$2a$10$DhLxRMYXd7znW1bSkWqnoOxokJy3STSEts6OmsKjeIqRU.XgBkk1O"

// writeConfigFile writes text as station.yaml in a new folder and
// returns its path.
func writeConfigFile(t *testing.T, text string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "station.yaml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

const showConfig = `station: st-01
attestation: x509-tpm
id_scope: 0ne0001A2B3
slots:
  - port: /dev/ttyACM0
  - name: right
    port: vid=2fe3,usb-serial=E6614104
ca: {url: "https://ops:hunter2@ca.example:9000", fingerprint: ab12}
key: {handle: 0x81000010}
template: {custom: {site: berlin}}
dps: {connection_string_file: /run/secrets/dps, upload: true}
verify_registration: {enabled: true}
gui: {supervisor_password_hash: "` + testHash + `"}
`

// TestConfigShow: config show prints the configuration LoadConfig gives,
// defaults filled in, as YAML that reads back into the same
// station.Config, the supervisor's hash and a CA URL's password masked.
func TestConfigShow(t *testing.T) {
	file := writeConfigFile(t, showConfig)
	want, err := station.LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, "config", "show", "--config", file)
	if code != exitOK {
		t.Fatalf("config show: exit %d\n%s", code, errOut)
	}
	for _, secret := range []string{testHash, "hunter2"} {
		if strings.Contains(out, secret) {
			t.Errorf("config show printed %q:\n%s", secret, out)
		}
	}
	for _, line := range []string{
		"global_endpoint: global.azure-devices-provisioning.net", // defaults
		"  - name: slot-1", "timeout: 2s", "board_timeout: 12m0s", "  quota: 1000", "  share: 0.97",
		"  handle: 0x81000010", // as written in station.yaml
		"  supervisor_password_hash: " + maskedValue,
		"  url: https://ops:xxxxx@ca.example:9000",
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("config show: no line %q in:\n%s", line, out)
		}
	}
	dec := yaml.NewDecoder(strings.NewReader(out))
	dec.KnownFields(true)
	var got station.Config
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("config show's output is not a station.yaml: %v\n%s", err, out)
	}
	if got.GUI.SupervisorPasswordHash != maskedValue || got.CA.URL != "https://ops:xxxxx@ca.example:9000" {
		t.Errorf("config show: hash %q, CA URL %q: want them masked", got.GUI.SupervisorPasswordHash, got.CA.URL)
	}
	got.GUI.SupervisorPasswordHash, got.CA.URL = want.GUI.SupervisorPasswordHash, want.CA.URL
	if diff := cmp.Diff(want, &got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("config show's output read back differs from LoadConfig (-want +got):\n%s", diff)
	}
}

// TestConfigShowJSON: with --json, one JSON object with station.yaml's
// keys, durations as Go durations, the hash masked.
func TestConfigShowJSON(t *testing.T) {
	file := writeConfigFile(t, showConfig)
	code, out, errOut := run(t, "config", "show", "--config", file, "--json")
	if code != exitOK {
		t.Fatalf("config show --json: exit %d\n%s", code, errOut)
	}
	if n := strings.Count(strings.TrimSpace(out), "\n"); n != 0 {
		t.Errorf("config show --json printed %d lines, want one:\n%s", n+1, out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("config show --json: %v\n%s", err, out)
	}
	var keys, want []string
	for k := range m {
		keys = append(keys, k)
	}
	ct := reflect.TypeFor[station.Config]()
	for i := range ct.NumField() {
		name, _, _ := strings.Cut(ct.Field(i).Tag.Get("yaml"), ",")
		want = append(want, name)
	}
	slices.Sort(keys)
	slices.Sort(want)
	if !slices.Equal(keys, want) {
		t.Errorf("config show --json keys = %q, want station.yaml's %q", keys, want)
	}
	if strings.Contains(out, testHash) {
		t.Errorf("config show --json printed the supervisor's hash:\n%s", out)
	}
	gui, _ := m["gui"].(map[string]any)
	key, _ := m["key"].(map[string]any)
	vr, _ := m["verify_registration"].(map[string]any)
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"timeout", m["timeout"], "2s"},
		{"board_timeout", m["board_timeout"], (12 * time.Minute).String()},
		{"verify_registration.timeout", vr["timeout"], "2m0s"},
		{"key.handle", key["handle"], float64(0x81000010)},
		{"gui.supervisor_password_hash", gui["supervisor_password_hash"], maskedValue},
		{"firmware", m["firmware"], nil},
	} {
		if tt.got != tt.want {
			t.Errorf("config show --json: %s = %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
}

// TestConfigShowBad: a configuration that cannot be read or is wrong is
// exit 2, naming the file and the key, with nothing on stdout.
func TestConfigShowBad(t *testing.T) {
	const base = "attestation: tpm\nid_scope: 0ne0001A2B3\nslots: [{port: /dev/ttyACM0}]\n"
	for _, tt := range []struct {
		name, yaml string
		want       string // in the message
	}{
		{"a URL for the endpoint", base + "global_endpoint: https://global.azure-devices-provisioning.net\n", "global_endpoint: \"https://global.azure-devices-provisioning.net\": want a host name"},
		{"unknown key", base + "dps: {conection_string_file: x}\n", "field conection_string_file not found"},
		{"no slots", "attestation: tpm\nid_scope: 0ne0001A2B3\n", "slots: none"},
		{"not a hash", base + "gui: {supervisor_password_hash: secret}\n", "gui.supervisor_password_hash: not a bcrypt hash"},
		{"bad duration", base + "timeout: often\n", "often"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := writeConfigFile(t, tt.yaml)
			code, out, errOut := run(t, "config", "show", "--config", file)
			if code != exitUsage || !strings.Contains(errOut, file) || !strings.Contains(errOut, tt.want) {
				t.Errorf("config show of %q: exit %d, stderr %q; want exit %d naming %s and saying %q", tt.yaml, code, errOut, exitUsage, file, tt.want)
			}
			if out != "" {
				t.Errorf("config show of a wrong configuration printed %q", out)
			}
		})
	}

	missing := filepath.Join(t.TempDir(), "station.yaml")
	code, out, errOut := run(t, "config", "show", "--config", missing, "--json")
	var rec struct {
		Err  string `json:"err"`
		Exit int    `json:"exit"`
	}
	if code != exitUsage || out != "" || json.Unmarshal([]byte(errOut), &rec) != nil || rec.Exit != exitUsage || !strings.Contains(rec.Err, missing) {
		t.Errorf("config show --json of a missing file: exit %d, stdout %q, stderr %q; want exit 2 and one JSON record naming the file", code, out, errOut)
	}
	if code, _, errOut := run(t, "config", "show", "extra"); code != exitUsage {
		t.Errorf("config show extra: exit %d (%s), want %d", code, errOut, exitUsage)
	}
}

// TestConfigReferenceSecrets: docs/config.md names the environment
// variable that stands in for each secret file.
func TestConfigReferenceSecrets(t *testing.T) {
	b, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range []string{envDPSConnectionString, envCAPassword, envGroupKey, envSupervisorPassword} {
		if !strings.Contains(string(b), "`"+env+"`") {
			t.Errorf("docs/config.md does not name %s", env)
		}
	}
}
