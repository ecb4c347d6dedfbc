package main

import (
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zerotouch/internal/pgtest"
)

// The demo with its records in a real PostgreSQL, read back by records
// list and records stats from the same URL.
func TestDemoPostgres(t *testing.T) {
	t.Setenv("ZEROTOUCH_TEST_AS_MAIN", "1") // boards with the simulator run in child processes
	t.Setenv("DISPLAY", "")
	t.Setenv("WAYLAND_DISPLAY", "")
	db := pgtest.New(t)
	dir := filepath.Join(t.TempDir(), "demo")
	code, out, errOut := run(t, "demo", "--headless", "--dir", dir, "--baud", "1000000", "--records", db)
	if code != exitOK || !strings.Contains(out, "8 boards passed, 0 failed") || !strings.Contains(out, "--db "+db) {
		t.Fatalf("demo --records postgres://: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, tail(errOut, 20))
	}
	code, out, errOut = run(t, "records", "stats", "--db", db, "--json")
	var rep statsReport
	if code != exitOK || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("records stats: exit %d, %q, %s", code, out, errOut)
	}
	if rep.Passed != 8 || rep.Failed != 0 || len(rep.Rows) != 5 || rep.Queue["uploaded"] != 5 {
		t.Errorf("records stats = %+v, want 8 passed over the demo's 5 lines, 5 enrollments uploaded", rep)
	}
	code, out, _ = run(t, "records", "list", "--db", db, "--json")
	if code != exitOK || strings.Count(out, "\n") != 8 {
		t.Errorf("records list: exit %d, %d lines, want the 8 boards:\n%s", code, strings.Count(out, "\n"), out)
	}
}

// A factory database named wrongly stops each command before it does
// anything, with the exit code of the README's table.
func TestPostgresSetupErrors(t *testing.T) {
	db := pgtest.New(t)
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	withPassword := *u
	withPassword.User = url.UserPassword(u.User.Username(), "secret-in-the-url")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	nowhere := "postgres://zerotouch@" + closed + "/records?sslmode=disable&connect_timeout=2"
	station := filepath.Join(t.TempDir(), "station.yaml")
	os.WriteFile(station, []byte("attestation: tpm\nid_scope: 0ne00000001\nslots: [{port: /dev/ttyUSB9}]\nrecords: "+withPassword.String()+"\n"), 0o600)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"records", "stats", "--db", withPassword.String()}, exitUsage, "PGPASSFILE"},
		{[]string{"run", "--config", station, "--once"}, exitUsage, "PGPASSFILE"},
		{[]string{"records", "list", "--db", nowhere}, exitSetup, closed},
		{[]string{"upload", "--records", nowhere, "--connection-string-file", "/nonexistent"}, exitUsage, "/nonexistent"},
	} {
		code, _, errOut := run(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("zerotouch %s: exit %d, want %d with %q:\n%s", strings.Join(c.args, " "), code, c.code, c.want, errOut)
		}
		if strings.Contains(errOut, "secret-in-the-url") {
			t.Errorf("zerotouch %s printed the URL's password:\n%s", strings.Join(c.args, " "), errOut)
		}
	}
}
