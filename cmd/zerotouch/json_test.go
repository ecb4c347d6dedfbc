package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zerotouch/ca"
	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
)

// jsonLines parses every non-empty line of s (the command's stream named
// what) as a JSON object.
func jsonLines(t *testing.T, what, s string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var o map[string]any
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Errorf("%s line is not a JSON object (%v): %s", what, err, line)
			continue
		}
		objs = append(objs, o)
	}
	return objs
}

// checkErrorRecord checks that rec is the error record Run ends with on
// stderr under --json (reportError).
func checkErrorRecord(t *testing.T, rec map[string]any, code int) {
	t.Helper()
	if rec["level"] != "ERROR" || rec["msg"] != exitMeaning(code) || rec["exit"] != float64(code) {
		t.Errorf("error record %v: want level ERROR, msg %q, exit %d", rec, exitMeaning(code), code)
	}
	if s, _ := rec["err"].(string); s == "" {
		t.Errorf("error record %v has no err", rec)
	}
	if s, _ := rec["command"].(string); !strings.HasPrefix(s, "zerotouch") {
		t.Errorf("error record %v does not name the command", rec)
	}
	if hint, ok := rec["hint"].(string); ok != (code == exitUsage) || ok && !strings.HasSuffix(hint, " --help") {
		t.Errorf("error record %v: a hint to --help on usage errors (exit 2) only", rec)
	}
}

// jsonBed is what the error paths need: a local CA (password "line
// password"), a DPS emulator, and files good and bad.
type jsonBed struct {
	dir, caDir, pwFile, wrongPW, csr string
	dps                              *emulator.Server
	connFile, badConn, closedConn    string
	wrongKey, enrollments            string
	badYAML, noBoardYAML             string
}

func newJSONBed(t *testing.T) *jsonBed {
	t.Helper()
	b := &jsonBed{dir: t.TempDir()}
	write := func(name, text string) string {
		p := filepath.Join(b.dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	b.caDir = filepath.Join(b.dir, "ca")
	l, err := ca.Init(context.Background(), b.caDir, ca.InitOptions{Password: []byte("line password")})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	b.pwFile = write("ca-password", "line password\n")
	b.wrongPW = write("wrong-password", "not the password\n")
	b.csr = writeCSR(t, b.dir, "json-board-1")
	b.dps, b.connFile = startEmulator(t, emulator.Options{})
	b.badConn = write("bad-conn", "HostName=x;SharedAccessKey=abc\n")
	// A port nothing listens on: DPS unreachable.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	b.closedConn = write("closed-conn", "HostName="+closed+";SharedAccessKeyName=owner;SharedAccessKey=QUJD\n")
	cs, err := enroll.ParseConnectionString(b.dps.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	cs.Key = []byte("not the key of this DPS, 32 bytes")
	b.wrongKey = write("wrong-key", cs.Secret()+"\n")
	b.enrollments, _ = writeEnrollments(t, 3)
	b.badYAML = write("bad.yaml", "attestation: tpm\nid_scope: nonsense\n")
	// A station whose only slot names a port that is not there.
	b.noBoardYAML = write("no-board.yaml", fmt.Sprintf("attestation: tpm\nid_scope: 0ne0001A2B3\nrecords: %s\ndps:\n  upload: false\nslots:\n  - port: /dev/ttyUSB9\n",
		filepath.Join(b.dir, "no-board.db")))
	return b
}

// With --json, every line on stdout and stderr is JSON, on every error
// path of every command, and the last line on stderr is the error record
// with the exit code.
func TestJSONErrorPaths(t *testing.T) {
	b := newJSONBed(t)
	t.Setenv(envDPSConnectionString, "")
	t.Setenv(envCAPassword, "")
	t.Setenv(envGroupKey, "")
	missing := filepath.Join(b.dir, "missing")
	const anyFailure = -1
	tests := []struct {
		name    string
		args    []string
		code    int
		env     map[string]string
		timeout time.Duration // the command is interrupted after this long
	}{
		// The command line.
		{"unknown flag", []string{"records", "list", "--nonsense", "--json"}, exitUsage, nil, 0},
		{"unknown flag before --json", []string{"--nonsense", "records", "list", "--json"}, exitUsage, nil, 0},
		{"--json=true", []string{"--nonsense", "--json=true"}, exitUsage, nil, 0},
		{"unknown command", []string{"nonsense", "--json"}, exitUsage, nil, 0},
		{"missing argument", []string{"link", "fs", "upload", "only-one", "--json"}, exitUsage, nil, 0},
		{"extra argument", []string{"upload", "extra", "--json"}, exitUsage, nil, 0},
		{"required flag", []string{"ca", "sign", "--dir", b.caDir, "--json"}, exitUsage, nil, 0},
		{"bad flag value", []string{"board", "--count", "many", "--json"}, exitUsage, nil, 0},
		{"bad log level", []string{"--log-level", "loud", "link", "ports", "--json"}, exitUsage, nil, 0},
		{"board count 0", []string{"board", "--count", "0", "--json"}, exitUsage, nil, 0},
		{"board bad fault", []string{"board", "--fault", "flood=1", "--json"}, exitUsage, nil, 0},
		{"emulator bad address", []string{"dps-emulator", "--addr", "nowhere", "--json"}, exitUsage, nil, 0},
		{"link bad port rule", []string{"link", "--port", "vid=12", "echo", "--json"}, exitUsage, nil, 0},

		// The CA.
		{"ca show missing CA folder", []string{"ca", "show", "--dir", missing, "--json"}, exitSetup, nil, 0},
		{"ca show --url without --fingerprint", []string{"ca", "show", "--url", "https://127.0.0.1:1", "--json"}, exitUsage, nil, 0},
		{"ca sign wrong password", []string{"ca", "sign", "--dir", b.caDir, "--password-file", b.wrongPW, "--csr", b.csr,
			"--registration-id", "json-board-1", "--json"}, exitSetup, nil, 0},
		{"ca sign no password", []string{"ca", "sign", "--dir", b.caDir, "--csr", b.csr, "--registration-id", "json-board-1", "--json"}, exitSetup, nil, 0},
		{"ca sign missing CSR", []string{"ca", "sign", "--dir", b.caDir, "--password-file", b.pwFile, "--csr", missing,
			"--registration-id", "json-board-1", "--json"}, anyFailure, nil, 0},
		{"ca init over a CA", []string{"ca", "init", "--dir", b.caDir, "--password-file", b.pwFile, "--json"}, anyFailure, nil, 0},

		// DPS.
		{"upload no connection string", []string{"upload", "--from", b.enrollments, "--json"}, exitUsage, nil, 0},
		{"upload bad connection string", []string{"upload", "--from", b.enrollments, "--connection-string-file", b.badConn, "--json"}, exitUsage, nil, 0},
		{"upload missing file", []string{"upload", "--from", missing, "--connection-string-file", b.connFile, "--json"}, exitUsage, nil, 0},
		{"upload bad station config", []string{"upload", "--config", b.badYAML, "--json"}, exitUsage, nil, 0},
		{"upload wrong key", []string{"upload", "--from", b.enrollments, "--state", filepath.Join(b.dir, "wrong-key.db"),
			"--connection-string-file", b.wrongKey, "--ca-file", b.dps.CAFile, "--json"}, exitSetup, nil, 0},
		{"upload untrusted DPS", []string{"upload", "--from", b.enrollments, "--state", filepath.Join(b.dir, "untrusted.db"),
			"--connection-string-file", b.connFile, "--json"}, exitSetup, nil, 0},
		{"upload unreachable DPS", []string{"upload", "--from", b.enrollments, "--state", filepath.Join(b.dir, "closed.db"),
			"--connection-string-file", b.closedConn, "--timeout", "1s", "--json"}, exitPending, nil, 3 * time.Second},

		// Boards and TPMs.
		{"link missing port", []string{"link", "--port", "/dev/ttyUSB9", "echo", "--json"}, exitFailed, nil, 0},
		{"tpm missing device", []string{"tpm", "ek", "--tpm", "/dev/no-such-tpm", "--json"}, exitFailed, nil, 0},
		{"board check fails", []string{"board", "--tpm", "none", "--baud", "2000000", "--check", "--fault", "rc=fs.file:10", "--json"}, exitFailed, nil, 0},

		// Commands other files hold: records, run, demo, gui.
		{"records on a missing database", []string{"records", "list", "--db", missing + ".db", "--json"}, anyFailure, nil, 0},
		{"records show on a missing database", []string{"records", "show", "SN-1", "--db", missing + ".db", "--json"}, anyFailure, nil, 0},
		{"records export bad format", []string{"records", "export", "--format", "xml", "--json"}, exitUsage, nil, 0},
		{"records export to stdout", []string{"records", "export", "--format", "csv", "--json"}, exitUsage, nil, 0},
		{"run missing station.yaml", []string{"run", "--config", filepath.Join(missing, "station.yaml"), "--once", "--json"}, exitUsage, nil, 0},
		{"run bad configuration", []string{"run", "--config", b.badYAML, "--once", "--json"}, exitUsage, nil, 0},
		{"run --once with no board", []string{"run", "--config", b.noBoardYAML, "--once", "--json"}, anyFailure, nil, 0},
		{"demo unusable folder", []string{"demo", "--headless", "--dir", filepath.Join(b.pwFile, "demo"), "--json"}, anyFailure, nil, 0},
		{"gui no display", []string{"gui", "--config", b.noBoardYAML, "--json"}, exitUsage,
			map[string]string{"DISPLAY": "", "WAYLAND_DISPLAY": ""}, 0},
		// A display named that is not running is no display: no window
		// can open, however wrong the configuration.
		{"gui display gone, bad configuration", []string{"gui", "--config", b.badYAML, "--json"}, exitUsage,
			map[string]string{"DISPLAY": ":97", "WAYLAND_DISPLAY": ""}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 2 * time.Minute
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			var stdout, stderr bytes.Buffer
			code := Run(ctx, tt.args, &stdout, &stderr)
			if tt.code == anyFailure && code == exitOK || tt.code != anyFailure && code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			jsonLines(t, "stdout", stdout.String())
			recs := jsonLines(t, "stderr", stderr.String())
			if len(recs) == 0 {
				t.Fatalf("nothing on stderr; stdout:\n%s", stdout.String())
			}
			checkErrorRecord(t, recs[len(recs)-1], code)
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			}
		})
	}
}

// With --json, help and results are JSON too, and the text error says
// which help to read.
func TestJSONHelpAndText(t *testing.T) {
	code, out, errOut := run(t, "upload", "--help", "--json")
	objs := jsonLines(t, "stdout", out)
	if code != exitOK || errOut != "" || len(objs) != 1 || objs[0]["command"] != "zerotouch upload" ||
		!strings.Contains(fmt.Sprint(objs[0]["help"]), "--connection-string-file") {
		t.Errorf("upload --help --json: exit %d, stdout %s, stderr %s; want one JSON object with the help", code, out, errOut)
	}
	code, out, errOut = run(t, "ca", "template", "--json")
	objs = jsonLines(t, "stdout", out)
	if code != exitOK || len(objs) != 1 || !strings.Contains(fmt.Sprint(objs[0]["template"]), "{{") {
		t.Errorf("ca template --json: exit %d, stdout %s, stderr %s; want one JSON object with the template", code, out, errOut)
	}
	// As text: the reason, then the command's own help to read.
	code, _, errOut = run(t, "upload", "--batch", "11")
	if code != exitUsage || errOut != "zerotouch: --batch 11: DPS takes 1 to 10 enrollments a request\nRun 'zerotouch upload --help' for usage.\n" {
		t.Errorf("upload --batch 11: exit %d, stderr %q", code, errOut)
	}
	// --json=false and --json after -- ask for text.
	for _, args := range [][]string{{"nonsense", "--json=false"}, {"link", "echo", "--", "--json"}} {
		if code, _, errOut := run(t, args...); code != exitUsage || !strings.HasPrefix(errOut, "zerotouch: ") {
			t.Errorf("%q: exit %d, stderr %q; want text", args, code, errOut)
		}
	}
}

// TestWantsJSON reads --json off a command line cobra has not parsed.
func TestWantsJSON(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"run", "--json"}, true},
		{[]string{"--json", "run"}, true},
		{[]string{"--json=true"}, true},
		{[]string{"--json=1"}, true},
		{[]string{"--json=false"}, false},
		{[]string{"--json", "--json=false"}, false},
		{[]string{"--json=nonsense"}, false},
		{[]string{"--jsonx"}, false},
		{[]string{"--", "--json"}, false},
		{[]string{"-json"}, false},
	} {
		if got := wantsJSON(tt.args); got != tt.want {
			t.Errorf("wantsJSON(%q) = %v, want %v", tt.args, got, tt.want)
		}
	}
}

// Under LANG=C.UTF-8 and LANG=C the binary prints on stderr nothing but
// its own output: the same as Run in this process, which no package's
// initialisation reaches (Fyne's locale parsing printed there).
func TestCleanStderrUnderCLocales(t *testing.T) {
	db := newRecordsDB(t)
	b := newJSONBed(t)
	tests := []struct {
		name string
		args []string
		json bool // stderr is JSON records with times; compared line by line as JSON, without them
	}{
		{"records list", []string{"records", "list", "--db", db}, false},
		{"records list --json", []string{"records", "list", "--db", db, "--json"}, true},
		{"ca show", []string{"ca", "show", "--dir", b.caDir}, false},
		{"ca show --json", []string{"ca", "show", "--dir", b.caDir, "--json"}, true},
		{"run --json", []string{"run", "--config", b.badYAML, "--once", "--json"}, true},
	}
	for _, lang := range []string{"C.UTF-8", "C", "POSIX"} {
		for _, tt := range tests {
			t.Run(lang+"/"+tt.name, func(t *testing.T) {
				_, wantOut, wantErr := run(t, tt.args...)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, os.Args[0], tt.args...)
				cmd.Env = append(os.Environ(), "ZEROTOUCH_TEST_AS_MAIN=1", "LANG="+lang, "LC_ALL=", "LC_MESSAGES=", "LANGUAGE=")
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				cmd.Run()
				if stdout.String() != wantOut {
					t.Errorf("stdout differs from Run's:\n%s\nwant:\n%s", stdout.String(), wantOut)
				}
				if !tt.json {
					if stderr.String() != wantErr {
						t.Errorf("stderr = %q, want only the command's own %q", stderr.String(), wantErr)
					}
					return
				}
				got, want := jsonLines(t, "stderr", stderr.String()), jsonLines(t, "Run's stderr", wantErr)
				if len(got) != len(want) {
					t.Fatalf("stderr has %d lines, want the command's own %d:\n%s", len(got), len(want), stderr.String())
				}
				for i := range got {
					delete(got[i], "time")
					delete(want[i], "time")
					if g, w := fmt.Sprint(got[i]), fmt.Sprint(want[i]); g != w {
						t.Errorf("stderr line %d = %s, want %s", i+1, g, w)
					}
				}
			})
		}
	}
}
