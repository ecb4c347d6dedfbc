package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/ca"
	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
)

// The old retry loops took two minutes (upload) and six (run --once) to
// give up on a set-up that cannot work; these tests want well under that.
const promptly = 30 * time.Second

// runBed is a station's surroundings: a local CA (password "line
// password"), a DPS emulator, virtual boards and a configuration to edit.
type runBed struct {
	dir, caDir, pwFile string
	dps                *emulator.Server
	connFile           string
	ports              []string
}

func newRunBed(t *testing.T, boards int) *runBed {
	t.Helper()
	b := &runBed{dir: t.TempDir()}
	b.caDir, b.pwFile = testCA(t, b.dir)
	b.dps, b.connFile = startEmulator(t, emulator.Options{})
	for i := range boards {
		vb, err := board.Start(board.Config{Serial: fmt.Sprintf("SET-%d", i+1), Dir: t.TempDir(), TPM: board.TPMNone, Baud: 1_000_000})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { vb.Close() })
		b.ports = append(b.ports, vb.Path())
	}
	return b
}

// stationYAML is a station configuration for the bed's boards.
type stationYAML struct {
	caDir, pwFile      string
	connFile, dpsCA    string
	verifyRegistration bool
}

func (b *runBed) config(t *testing.T, name string, c stationYAML) (file, records string) {
	t.Helper()
	records = filepath.Join(b.dir, name+".db")
	var y strings.Builder
	fmt.Fprintf(&y, "station: st-set\nline: l1\nattestation: x509-keygen\nid_scope: 0ne0001A2B3\nbaud: 1000000\n")
	fmt.Fprintf(&y, "records: %s\nlabels: {dir: %s}\n", records, filepath.Join(b.dir, "labels"))
	fmt.Fprintf(&y, "ca:\n  dir: %s\n  password_file: %s\n", c.caDir, c.pwFile)
	fmt.Fprintf(&y, "dps:\n  connection_string_file: %s\n  quota: 60000\n", c.connFile)
	if c.dpsCA != "" {
		fmt.Fprintf(&y, "  ca_file: %s\n", c.dpsCA)
	}
	if c.verifyRegistration {
		y.WriteString("verify_registration:\n  enabled: true\n  timeout: 2m\n")
	}
	y.WriteString("slots:\n")
	for _, p := range b.ports {
		fmt.Fprintf(&y, "  - port: %s\n", p)
	}
	file = filepath.Join(b.dir, name+".yaml")
	if err := os.WriteFile(file, []byte(y.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, records
}

// wrongKey writes the emulator's connection string with another key.
func (b *runBed) wrongKey(t *testing.T) string { return wrongConnectionString(t, b.dir, b.dps) }

// testCA makes a local CA in dir/ca whose password, "line password", is
// in the file dir/ca-password.
func testCA(t *testing.T, dir string) (caDir, pwFile string) {
	t.Helper()
	caDir, pwFile = filepath.Join(dir, "ca"), filepath.Join(dir, "ca-password")
	if err := os.WriteFile(pwFile, []byte("line password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := ca.Init(context.Background(), caDir, ca.InitOptions{Password: []byte("line password")})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	return caDir, pwFile
}

// wrongConnectionString writes srv's connection string with another key
// into dir and returns the file's name.
func wrongConnectionString(t *testing.T, dir string, srv *emulator.Server) string {
	t.Helper()
	cs, err := enroll.ParseConnectionString(srv.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	cs.Key = []byte("not the key of this DPS, 32 bytes")
	name := filepath.Join(dir, "wrong-connection-string")
	if err := os.WriteFile(name, []byte(cs.Secret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// timed runs zerotouch and says how long it took.
func timed(t *testing.T, args ...string) (code int, stdout, stderr string, took time.Duration) {
	t.Helper()
	start := time.Now()
	code, stdout, stderr = run(t, args...)
	return code, stdout, stderr, time.Since(start)
}

func checkNoPanic(t *testing.T, stderr string) {
	t.Helper()
	if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
		t.Errorf("stderr holds a panic:\n%s", stderr)
	}
}

// A CA that cannot be opened stops run and gui before any board is
// touched, with exit 3 and a message that names the folder or where the
// password came from; nothing panics.
func TestStationCASetupErrors(t *testing.T) {
	b := newRunBed(t, 1)
	badPW := filepath.Join(b.dir, "wrong-password")
	os.WriteFile(badPW, []byte("not the line password\n"), 0o600)
	missing := filepath.Join(b.dir, "no-ca-here")
	tests := []struct {
		name  string
		c     stationYAML
		wants []string
	}{
		{"missing CA folder", stationYAML{caDir: missing, pwFile: b.pwFile},
			[]string{"no CA in " + missing, "zerotouch ca init --dir " + missing}},
		{"wrong CA password", stationYAML{caDir: b.caDir, pwFile: badPW},
			[]string{"the CA password in " + badPW + " (ca.password_file) does not unlock the CA in " + b.caDir}},
		{"missing password file", stationYAML{caDir: b.caDir, pwFile: filepath.Join(b.dir, "no-password-file")},
			[]string{"CA password", filepath.Join(b.dir, "no-password-file")}},
	}
	commands := [][]string{{"run", "--once"}}
	if withWindow {
		commands = append(commands, []string{"gui"})
		// The window saying why the station cannot start is drawn
		// with Fyne's test app.
		windowless(t)
	}
	for _, tt := range tests {
		for _, cmd := range commands {
			t.Run(tt.name+"/"+cmd[0], func(t *testing.T) {
				tt.c.connFile, tt.c.dpsCA = b.connFile, b.dps.CAFile
				file, records := b.config(t, strings.ReplaceAll(tt.name, " ", "-")+"-"+cmd[0], tt.c)
				code, out, errOut, took := timed(t, append(cmd, "--config", file)...)
				t.Logf("%s: exit %d in %.2f s: %s", cmd[0], code, took.Seconds(), strings.TrimSpace(errOut))
				checkNoPanic(t, errOut)
				if code != exitSetup {
					t.Errorf("exit %d, want %d", code, exitSetup)
				}
				for _, want := range tt.wants {
					if !strings.Contains(errOut, want) {
						t.Errorf("stderr %q does not say %q", errOut, want)
					}
				}
				if out != "" {
					t.Errorf("events on stdout: a board was touched:\n%s", out)
				}
				if _, err := os.Stat(records); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("the records %s were opened: %v", records, err)
				}
				if took > promptly {
					t.Errorf("took %v", took)
				}
			})
		}
	}
}

// An upload to a DPS that cannot be used as set up ends at once, with exit
// 3 and what to mend: never retried, never "run the same command again"
// alone.
func TestUploadSetupErrors(t *testing.T) {
	srv, connFile := startEmulator(t, emulator.Options{})
	b := &runBed{dir: t.TempDir(), dps: srv}
	file, _ := writeEnrollments(t, 25)
	noHost := filepath.Join(b.dir, "no-host")
	os.WriteFile(noHost, []byte("HostName=dps-nowhere.invalid;SharedAccessKeyName=owner;SharedAccessKey=QUJD\n"), 0o600)
	tests := []struct {
		name  string
		args  []string
		wants []string
	}{
		{"untrusted certificate", []string{"--connection-string-file", connFile},
			[]string{"the DPS server's certificate is not trusted: give its CA with --ca-file", "x509: certificate signed by unknown authority", "25 enrollments still pending"}},
		{"wrong key", []string{"--connection-string-file", b.wrongKey(t), "--ca-file", srv.CAFile},
			[]string{"DPS refused the key (401): check the connection string in " + filepath.Join(b.dir, "wrong-connection-string") + " (--connection-string-file)", "401"}},
		{"unknown host name", []string{"--connection-string-file", noHost},
			[]string{"the DPS host name dps-nowhere.invalid does not resolve"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "unknown host name" {
				// Only where the name server answers that there is no
				// such name; one that does not answer is an outage.
				_, err := net.DefaultResolver.LookupHost(context.Background(), "dps-nowhere.invalid")
				var dns *net.DNSError
				if !errors.As(err, &dns) || !dns.IsNotFound {
					t.Skipf("the name server does not say there is no such name: %v", err)
				}
			}
			state := filepath.Join(b.dir, fmt.Sprintf("state-%d.db", i))
			code, _, errOut, took := timed(t, append([]string{"upload", "--from", file, "--state", state}, tt.args...)...)
			t.Logf("upload: exit %d in %.2f s: %s", code, took.Seconds(), lastLine(errOut))
			checkNoPanic(t, errOut)
			if code != exitSetup {
				t.Errorf("exit %d, want %d", code, exitSetup)
			}
			for _, want := range tt.wants {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr does not say %q:\n%s", want, errOut)
				}
			}
			if took > promptly {
				t.Errorf("took %v", took)
			}
			// Nothing was lost: all still pending, for the next run.
			st, err := enroll.OpenStateFile(context.Background(), state)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			counts, _ := st.Counts(context.Background())
			if counts[enroll.StatePending] != 25 {
				t.Errorf("state counts %v, want 25 pending", counts)
			}
		})
	}
	// --json carries the advice in the summary too.
	code, out, _ := run(t, "upload", "--from", file, "--state", filepath.Join(b.dir, "state-json.db"), "--connection-string-file", connFile, "--json")
	if code != exitSetup || !strings.Contains(out, `"advice":"the DPS server's certificate is not trusted`) {
		t.Errorf("upload --json: exit %d, stdout %s", code, out)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// run --once with boards that pass and a DPS that cannot take their
// enrollments does not wait on it: it exits 4 at once, saying how many are
// pending, why, and to run zerotouch upload later.
func TestRunOnceEnrollmentsPending(t *testing.T) {
	b := newRunBed(t, 2)
	down := filepath.Join(b.dir, "down-connection-string")
	{
		// A port nothing listens on: DPS is down.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		cs, _ := enroll.ParseConnectionString(b.dps.ConnectionString)
		cs.HostName = addr
		os.WriteFile(down, []byte(cs.Secret()+"\n"), 0o600)
	}
	silent := filepath.Join(b.dir, "silent-connection-string")
	{
		// A DPS that takes connections and never answers.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				held = append(held, c)
			}
		}()
		cs, _ := enroll.ParseConnectionString(b.dps.ConnectionString)
		cs.HostName = l.Addr().String()
		os.WriteFile(silent, []byte(cs.Secret()+"\n"), 0o600)
	}
	tests := []struct {
		name  string
		c     stationYAML
		wants []string
	}{
		{"untrusted certificate", stationYAML{connFile: b.connFile},
			[]string{"the DPS server's certificate is not trusted: give its CA with dps.ca_file"}},
		{"wrong key", stationYAML{connFile: b.wrongKey(t), dpsCA: b.dps.CAFile},
			[]string{"DPS refused the key (401): check the connection string in " + filepath.Join(b.dir, "wrong-connection-string") + " (dps.connection_string_file)"}},
		{"DPS down", stationYAML{connFile: down, dpsCA: b.dps.CAFile},
			[]string{"DPS did not take them", "connection refused"}},
		{"DPS silent", stationYAML{connFile: silent, dpsCA: b.dps.CAFile},
			[]string{"DPS did not take them within 15s"}},
		{"untrusted, verifying registration", stationYAML{connFile: b.connFile, verifyRegistration: true},
			[]string{"the DPS server's certificate is not trusted: give its CA with dps.ca_file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.caDir, tt.c.pwFile = b.caDir, b.pwFile
			file, records := b.config(t, strings.ReplaceAll(tt.name, " ", "-"), tt.c)
			code, out, errOut, took := timed(t, "run", "--config", file, "--once")
			t.Logf("run --once: exit %d in %.2f s: %s", code, took.Seconds(), lastLine(errOut))
			checkNoPanic(t, errOut)
			if tt.c.verifyRegistration {
				// The boards cannot register: they fail at once, not
				// after verify_registration's two minutes.
				if code != exitFailed || !strings.Contains(out, `"result":"failed"`) || !strings.Contains(out, "not trusted") {
					t.Errorf("exit %d, want %d with the boards failed naming the cause\nstdout:\n%s\nstderr:\n%s", code, exitFailed, out, errOut)
				}
			} else {
				if code != exitPending {
					t.Errorf("exit %d, want %d\nstderr:\n%s", code, exitPending, errOut)
				}
				wants := append([]string{"2 boards passed, 0 failed", "0 uploaded, 2 pending",
					"2 enrollments still pending", "zerotouch upload --records " + records}, tt.wants...)
				for _, want := range wants {
					if !strings.Contains(errOut, want) {
						t.Errorf("stderr does not say %q:\n%s", want, errOut)
					}
				}
			}
			if took > promptly {
				t.Errorf("took %v", took)
			}
		})
	}
}

// An upload that DPS keeps failing, cut short, leaves its enrollments
// pending: exit 4, run it again.
func TestUploadInterruptedPending(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	conn := filepath.Join(dir, "down")
	os.WriteFile(conn, []byte("HostName="+addr+";SharedAccessKeyName=owner;SharedAccessKey=QUJD\n"), 0o600)
	file, _ := writeEnrollments(t, 5)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var out, errOut strings.Builder
	code := Run(ctx, []string{"upload", "--from", file, "--state", filepath.Join(dir, "state.db"), "--connection-string-file", conn}, &out, &errOut)
	checkNoPanic(t, errOut.String())
	if code != exitPending || !strings.Contains(errOut.String(), "5 enrollments still pending: run the same command again") {
		t.Errorf("exit %d, want %d\nstderr:\n%s", code, exitPending, errOut.String())
	}
}

// An upload cut short before it reaches DPS (here, its context already
// cancelled, as by Ctrl-C) loses nothing and says to run it again: exit
// 4, not a failure.
func TestUploadCancelledPending(t *testing.T) {
	_, connFile := startEmulator(t, emulator.Options{})
	dir := t.TempDir()
	file, _ := writeEnrollments(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut strings.Builder
	code := Run(ctx, []string{"upload", "--from", file, "--state", filepath.Join(dir, "state.db"), "--connection-string-file", connFile}, &out, &errOut)
	if code != exitPending || !strings.Contains(errOut.String(), "upload interrupted") || !strings.Contains(errOut.String(), "run the same command again") {
		t.Errorf("exit %d, want %d saying the upload was interrupted\nstderr:\n%s", code, exitPending, errOut.String())
	}
}
