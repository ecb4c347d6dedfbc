//go:build linux

package winetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"zerotouch/internal/swtpm"
)

// envRun turns the tests on.
const envRun = "ZEROTOUCH_WINE"

// wine is a Wine prefix in which Go's Windows programs run.
type wine struct {
	prefix string // the prefix's folder; C: is prefix/drive_c
	script string // wine-exec
	root   string // the module's folder
	goBin  string
}

// newWine makes a Wine prefix for the test, and stops its wineserver
// when the test ends.
func newWine(t *testing.T) *wine {
	t.Helper()
	if os.Getenv(envRun) == "" {
		t.Skipf("set %s=1 to run zerotouch's Windows build under Wine (needs apt-get install -y wine64 mingw-w64)", envRun)
	}
	for _, tool := range []string{"wine", "wineserver", "x86_64-w64-mingw32-gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s=1, but %s is not installed: apt-get install -y wine64 mingw-w64", envRun, tool)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command: %v", err)
	}
	script, err := filepath.Abs("wine-exec")
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	w := &wine{prefix: filepath.Join(t.TempDir(), "prefix"), script: script, root: root, goBin: goBin}
	if out, err := exec.CommandContext(t.Context(), script, "--prefix", w.prefix).CombinedOutput(); err != nil {
		t.Fatalf("wine-exec --prefix: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		cmd := exec.Command("wineserver", "--kill")
		cmd.Env = w.env()
		cmd.Run()
	})
	return w
}

func (w *wine) env(extra ...string) []string {
	return append(os.Environ(), append([]string{"WINEPREFIX=" + w.prefix, "WINEDEBUG=-all"}, extra...)...)
}

// hostPath is where a C: path lies on this machine.
func (w *wine) hostPath(winPath string) string {
	rest, ok := strings.CutPrefix(winPath, `C:\`)
	if !ok {
		panic("not a C: path: " + winPath)
	}
	return filepath.Join(w.prefix, "drive_c", filepath.FromSlash(strings.ReplaceAll(rest, `\`, "/")))
}

// goCmd runs the go command in the module's folder, building for
// windows/amd64 without cgo.
func (w *wine) goCmd(t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(t.Context(), w.goBin, args...)
	cmd.Dir = w.root
	cmd.Env = w.env("GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	return cmd
}

// result is what a program run under Wine did.
type result struct {
	stdout, stderr string
	exit           int
}

// run runs a Windows program under Wine.
func (w *wine) run(t *testing.T, exe string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "wine", append([]string{exe}, args...)...)
	cmd.Env = w.env()
	cmd.Dir = w.hostPath(`C:\`)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return result{stdout.String(), stderr.String(), exit.ExitCode()}
	case err != nil:
		t.Fatalf("wine %s: %v", exe, err)
	}
	return result{stdout.String(), stderr.String(), 0}
}

// TestZerotouchExe builds zerotouch.exe (headless) and runs commands that
// need no board: help, config show on a file with Windows paths, and a
// CA made in a folder with a space, whose keys only their owner may read.
func TestZerotouchExe(t *testing.T) {
	w := newWine(t)
	exe := filepath.Join(t.TempDir(), "zerotouch.exe")
	if out, err := w.goCmd(t, "build", "-tags", "nogui", "-o", exe, "./cmd/zerotouch").CombinedOutput(); err != nil {
		t.Fatalf("build zerotouch.exe: %v\n%s", err, out)
	}

	t.Run("help", func(t *testing.T) {
		r := w.run(t, exe, "--help")
		if r.exit != 0 || !strings.Contains(r.stdout, "Exit status") {
			t.Errorf("zerotouch.exe --help: exit %d\n%s%s", r.exit, r.stdout, r.stderr)
		}
	})

	t.Run("config show", func(t *testing.T) {
		paths := map[string]string{
			"ca.dir":                     `C:\Zerotouch Data\ca`,
			"ca.password_file":           `C:\Zerotouch Data\secrets\ca password.txt`,
			"dps.connection_string_file": `D:\line 7\dps connection.txt`,
			"records":                    `C:\Zerotouch Data\records\line 7.db`,
		}
		yaml := `station: st-01
line: line-7
attestation: x509-keygen
id_scope: 0ne00000001
global_endpoint: 127.0.0.1:8443
slots:
  - port: COM7
  - port: COM12
ca: {dir: '` + paths["ca.dir"] + `', password_file: '` + paths["ca.password_file"] + `'}
dps: {connection_string_file: '` + paths["dps.connection_string_file"] + `'}
records: '` + paths["records"] + `'
`
		cfg := `C:\Station Files\station.yaml`
		if err := os.MkdirAll(filepath.Dir(w.hostPath(cfg)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(w.hostPath(cfg), []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		r := w.run(t, exe, "config", "show", "--config", cfg)
		if r.exit != 0 {
			t.Fatalf("zerotouch.exe config show --config %q: exit %d\n%s%s", cfg, r.exit, r.stdout, r.stderr)
		}
		for key, p := range paths {
			if !strings.Contains(r.stdout, p) {
				t.Errorf("config show lost %s %q:\n%s", key, p, r.stdout)
			}
		}
		for _, port := range []string{"COM7", "COM12"} {
			if !strings.Contains(r.stdout, port) {
				t.Errorf("config show lost port %s:\n%s", port, r.stdout)
			}
		}
	})

	t.Run("ca init and show", func(t *testing.T) {
		dir := `C:\some dir\ca`
		pw := `C:\some dir\ca password.txt`
		if err := os.MkdirAll(filepath.Dir(w.hostPath(pw)), 0o755); err != nil {
			t.Fatal(err)
		}
		// Made from Linux with mode 0644, which Wine shows as a DACL that
		// lets Everyone read it: ca init warns.
		if err := os.WriteFile(w.hostPath(pw), []byte("correct horse\r\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := w.run(t, exe, "ca", "init", "--dir", dir, "--password-file", pw)
		if r.exit != 0 {
			t.Fatalf("zerotouch.exe ca init --dir %q: exit %d\n%s%s", dir, r.exit, r.stdout, r.stderr)
		}
		if !strings.Contains(r.stderr, "readable by other users") || !strings.Contains(r.stderr, "icacls") {
			t.Errorf("ca init did not warn that the password file is readable by others, with the icacls that mends it:\n%s", r.stderr)
		}
		// Wine keeps a file's DACL as Unix mode bits: a DACL granting the
		// user alone leaves none for others.
		for _, name := range []string{"root.key", "intermediate.key", "ca.json"} {
			p := filepath.Join(w.hostPath(dir), name)
			st, err := os.Stat(p)
			if err != nil {
				t.Fatalf("ca init made no %s: %v", name, err)
			}
			if st.Mode().Perm()&0o007 != 0 {
				t.Errorf("%s: mode %v under Wine: its DACL lets others in", name, st.Mode().Perm())
			}
		}
		r = w.run(t, exe, "ca", "show", "--dir", dir)
		if r.exit != 0 || !strings.Contains(r.stdout, "CN=zerotouch Root CA") {
			t.Errorf("zerotouch.exe ca show --dir %q: exit %d\n%s%s", dir, r.exit, r.stdout, r.stderr)
		}
		// A second init is refused: a CA is there.
		if r := w.run(t, exe, "ca", "init", "--dir", dir, "--password-file", pw); r.exit != 2 {
			t.Errorf("a second ca init: exit %d, want 2\n%s", r.exit, r.stderr)
		}
	})
}

// winePackages are the packages whose tests run under Wine: those with
// Windows code of their own, station.yaml on Windows' path rules, and
// those of the rest whose tests hold on Windows (the DPS client and the
// emulator over HTTPS on loopback, the templates, the ID rules). The
// README names the others and why.
var winePackages = []string{
	"./internal/filelock",
	"./internal/ownerfile/...",
	"./internal/atomicfile",
	"./internal/secret",
	"./internal/rawpty",
	"./internal/tpmdev",
	"./station/portable",
	"./enroll",
	"./firmware-templates",
	"./internal/regid",
	"./internal/textsafe",
	"./internal/nvscsv",
}

// TestPackagesUnderWine runs the Windows builds of winePackages' tests
// under Wine.
func TestPackagesUnderWine(t *testing.T) {
	w := newWine(t)
	args := []string{"test", "-count=1", "-exec", w.script}
	if ov := removeAllOverlay(t, w); ov != "" {
		args = append(args, "-overlay", ov)
	}
	out, err := w.goCmd(t, append(args, winePackages...)...).CombinedOutput()
	t.Logf("go %s\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Errorf("the packages' tests under Wine: %v", err)
	}
}

// removeAllOverlay returns a go build -overlay file that lets os.RemoveAll
// work under Wine 8, or "" when this Go's source is not the one it
// patches. Go deletes a folder's files with FileDispositionInformationEx,
// falling back to the older call when Windows says it does not know it;
// Wine 8 says STATUS_NOT_IMPLEMENTED, which Go does not take for that, so
// every t.TempDir's clean-up fails ("Invalid function"). The overlay adds
// that status to the fallback's list, for the test binaries only.
func removeAllOverlay(t *testing.T, w *wine) string {
	out, err := exec.Command(w.goBin, "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	src := filepath.Join(strings.TrimSpace(string(out)), "src", "internal", "syscall", "windows", "at_windows.go")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Logf("no overlay for os.RemoveAll: %v", err)
		return ""
	}
	const old = "\t\tSTATUS_NOT_SUPPORTED:     // the file system doesn't support FILE_DISPOSITION_INFORMATION_EX or one of the flags\n"
	if bytes.Count(b, []byte(old)) != 1 {
		t.Logf("no overlay for os.RemoveAll: %s is not as expected; t.TempDir clean-ups may fail under Wine", src)
		return ""
	}
	patched := bytes.Replace(b, []byte(old), []byte("\t\tSTATUS_NOT_SUPPORTED,\n\t\tNTStatus(0xC0000002): // STATUS_NOT_IMPLEMENTED, from Wine 8\n"), 1)
	dir := t.TempDir()
	file := filepath.Join(dir, "at_windows.go")
	if err := os.WriteFile(file, patched, 0o644); err != nil {
		t.Fatal(err)
	}
	ov := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(ov, []byte(`{"Replace":{"`+src+`":"`+file+`"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return ov
}

// TestDemoUnderWine runs zerotouch.exe demo under Wine: its eight boards on
// loopback TCP ports (Windows has no pseudo-terminals), the TPM boards'
// TPMs swtpm instances on this machine (the Windows build has no
// simulator). Every board of the four attestation modes must pass and
// be recorded as the Linux build's demo records it.
func TestDemoUnderWine(t *testing.T) {
	w := newWine(t)
	exe := filepath.Join(t.TempDir(), "zerotouch.exe")
	if out, err := w.goCmd(t, "build", "-tags", "nogui", "-o", exe, "./cmd/zerotouch").CombinedOutput(); err != nil {
		t.Fatalf("build zerotouch.exe: %v\n%s", err, out)
	}
	linux := filepath.Join(t.TempDir(), "zerotouch")
	build := exec.CommandContext(t.Context(), w.goBin, "build", "-tags", "nogui", "-o", linux, "./cmd/zerotouch")
	build.Dir = w.root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build zerotouch: %v\n%s", err, out)
	}

	const dir = `C:\zerotouch demo`
	r := w.run(t, exe, "demo", "--json", "--dir", dir, "--tpm", swtpms(t, 3))
	if r.exit != 0 {
		t.Fatalf("zerotouch.exe demo: exit %d\n%s\n%s", r.exit, r.stdout, r.stderr)
	}
	sum := lastJSON(t, r.stdout)
	if sum["passed"] != 8.0 || sum["failed"] != 0.0 || sum["uploaded"] != 5.0 || sum["skipped"] != nil {
		t.Errorf("zerotouch.exe demo: summary %v, want 8 passed, 0 failed, 5 uploaded, none left out", sum)
	}
	if sum["dir"] != dir {
		t.Errorf("zerotouch.exe demo: dir %v, want %s", sum["dir"], dir)
	}

	linuxDir := filepath.Join(t.TempDir(), "demo")
	cmd := exec.CommandContext(t.Context(), linux, "demo", "--json", "--dir", linuxDir, "--tpm", swtpms(t, 3))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("zerotouch demo on Linux: %v\n%s", err, out)
	}

	// Each board's record, as records show gives it on each system.
	serials := []string{"ZTS-000001"} // the stock board's, from a sequence
	for i := 1; i <= 7; i++ {
		serials = append(serials, fmt.Sprintf("ZTD%06d", i))
	}
	for _, serial := range serials {
		r := w.run(t, exe, "records", "show", serial, "--json", "--db", dir+`\records.db`)
		if r.exit != 0 {
			t.Errorf("zerotouch.exe records show %s: exit %d\n%s", serial, r.exit, r.stderr)
			continue
		}
		cmd := exec.CommandContext(t.Context(), linux, "records", "show", serial, "--json", "--db", filepath.Join(linuxDir, "records.db"))
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("zerotouch records show %s on Linux: %v", serial, err)
			continue
		}
		win, lin := demoRecord(t, r.stdout), demoRecord(t, string(out))
		if win != lin {
			t.Errorf("%s: under Wine recorded as %+v; on Linux as %+v", serial, win, lin)
		}
		if win.Result != "passed" || win.Registration.State != "assigned" {
			t.Errorf("%s under Wine: %+v, want passed and assigned at first boot", serial, win)
		}
	}
}

// boardRecord is what a demo's record says of a board, but for what
// differs from run to run (times, keys, certificates, and the TPM boards'
// registration IDs, made from their EKs).
type boardRecord struct {
	Attestation  string `json:"attestation"`
	Result       string `json:"result"`
	ConfigPath   string `json:"configPath"`
	UploadState  string `json:"uploadState"`
	Line         string `json:"line"`
	Slot         string `json:"slot"`
	RegID        string `json:"registrationId"`
	Registration struct {
		State string `json:"state"`
		Hub   string `json:"assignedHub"`
	} `json:"registration"`
}

func demoRecord(t *testing.T, out string) boardRecord {
	t.Helper()
	var v struct {
		Record boardRecord `json:"record"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("records show --json: %v\n%s", err, out)
	}
	if v.Record.Attestation == "tpm" {
		v.Record.RegID = "(from the EK)"
	}
	return v.Record
}

// lastJSON is the last line of out, a JSON object.
func lastJSON(t *testing.T, out string) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var v map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &v); err != nil {
		t.Fatalf("last line of the output is not JSON: %v\n%s", err, out)
	}
	return v
}

// swtpms starts n swtpm processes, stopped when the test ends, and names
// them as --tpm takes them.
func swtpms(t *testing.T, n int) string {
	t.Helper()
	var specs []string
	for range n {
		p, err := swtpm.Start(t.TempDir(), true)
		if err != nil {
			t.Fatalf("swtpm: %v", err)
		}
		t.Cleanup(func() { p.Close() })
		specs = append(specs, "tcp:"+p.Addr)
	}
	return strings.Join(specs, ",")
}
