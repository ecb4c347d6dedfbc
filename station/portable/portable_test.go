// Package portable_test loads one station.yaml on each system's path
// rules: it runs natively on Linux and macOS, and its Windows build runs
// under Wine (internal/winetest). The file is the same on every system
// but for its slots' port names.
package portable_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"zerotouch/station"
	"zerotouch/station/records"
)

// stationYAML names its files relative to the station's folder with
// forward slashes, which every system takes; PORT1 and PORT2 stand for
// the system's port names.
const stationYAML = `station: st-01
line: line 7
attestation: x509-keygen
id_scope: 0ne00000001
slots:
  - {name: left, port: PORT1}
  - {name: right, port: PORT2}
  - {name: fixture, port: "tcp://10.0.7.21:4001"}
ca: {dir: factory ca/line 7, password_file: secrets/ca password.txt}
dps: {connection_string_file: secrets/dps.txt}
records: records/line 7.db
labels: {dir: labels/line 7}
`

// ports are each system's names for a line's two USB serial ports.
var ports = map[string][2]string{
	"windows": {"COM7", `\\.\COM12`},
	"darwin":  {"/dev/cu.usbmodem1101", "usb:2fe3:0100"},
	"linux":   {"/dev/ttyACM0", "usb:2fe3:0100:ZT0042"},
}

func TestOneStationYAML(t *testing.T) {
	p, ok := ports[runtime.GOOS]
	if !ok {
		t.Skipf("no port names for %s", runtime.GOOS)
	}
	dir := filepath.Join(t.TempDir(), "station files")
	yaml := strings.NewReplacer("PORT1", p[0], "PORT2", yamlQuote(p[1])).Replace(stationYAML)
	for name, body := range map[string]string{
		"station.yaml":            yaml,
		"secrets/ca password.txt": "correct horse\n",
		"secrets/dps.txt":         "HostName=x.azure-devices-provisioning.net;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=AAAA\n",
	} {
		f := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Relative paths are the working folder's (docs/config.md): the
	// station runs in its folder, as the README's install sections say.
	t.Chdir(dir)

	cfg, err := station.LoadConfig("station.yaml")
	if err != nil {
		t.Fatalf("%s: %v\n%s", runtime.GOOS, err, yaml)
	}
	if got := []string{cfg.Slots[0].Port, cfg.Slots[1].Port, cfg.Slots[2].Port}; got[0] != p[0] || got[1] != p[1] || got[2] != "tcp://10.0.7.21:4001" {
		t.Errorf("ports %q, want %q and the TCP fixture", got, p)
	}
	// Each file the configuration names opens where it lies beside it.
	for setting, name := range map[string]string{
		"ca.password_file":           cfg.CA.PasswordFile,
		"dps.connection_string_file": cfg.DPS.ConnectionStringFile,
	} {
		if _, err := os.ReadFile(name); err != nil {
			t.Errorf("%s %q: %v", setting, name, err)
		}
	}
	for setting, name := range map[string]string{"ca.dir": cfg.CA.Dir, "labels.dir": cfg.Labels.Dir} {
		if err := os.MkdirAll(name, 0o700); err != nil {
			t.Errorf("%s %q: %v", setting, name, err)
		}
		if abs, _ := filepath.Abs(name); !strings.HasPrefix(abs, dir+string(filepath.Separator)) {
			t.Errorf("%s %q lies at %s, outside the station's folder %s", setting, name, abs, dir)
		}
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Records), 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := records.Open(t.Context(), cfg.Records)
	if err != nil {
		t.Fatalf("records %q: %v", cfg.Records, err)
	}
	db.Close()
	if _, err := os.Stat(filepath.Join(dir, "records", "line 7.db")); err != nil {
		t.Errorf("the records are not where the configuration names them: %v", err)
	}
	if got, want := records.BufferBeside(filepath.Join(dir, "station.yaml")), filepath.Join(dir, "station.buffer.db"); got != want {
		t.Errorf("buffer at %s, want %s", got, want)
	}
}

// yamlQuote quotes s for YAML when it holds a backslash.
func yamlQuote(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	return "'" + s + "'"
}
