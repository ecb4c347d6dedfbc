package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zerotouch/station"
	"zerotouch/station/records"
)

// TestRecordsLabel: a passed board's label is printed again from its
// record, to a ZPL printer byte for byte or to a folder; a board that has
// not passed, an unknown board and a printer that refuses are errors that
// say so; with no destination the command says where to name one.
func TestRecordsLabel(t *testing.T) {
	db := newRecordsDB(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b, _ := io.ReadAll(c)
		c.Close()
		got <- string(b)
	}()
	code, out, errOut := run(t, "records", "label", "SN-1", "--db", db, "--zpl", ln.Addr().String())
	if code != exitOK || !strings.Contains(out, "label of board SN-1 printed to ZPL printer "+ln.Addr().String()) {
		t.Fatalf("records label --zpl: exit %d\n%s\n%s", code, out, errOut)
	}
	s, err := records.OpenReadOnly(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Get(context.Background(), "SN-1")
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	want, err := station.LabelFor(r, r.UpdatedAt).ZPL()
	if err != nil {
		t.Fatal(err)
	}
	if zpl := <-got; zpl != want {
		t.Errorf("the printer got %q, want %q", zpl, want)
	}

	// The station's configuration says where, here a folder.
	dir := t.TempDir()
	config := filepath.Join(dir, "station.yaml")
	os.WriteFile(config, []byte("attestation: tpm\nid_scope: 0ne0001A2B3\nslots:\n  - port: /dev/null\nlabels: {dir: "+filepath.Join(dir, "labels")+"}\n"), 0o600)
	if code, out, errOut := run(t, "records", "label", "SN-2", "--db", db, "--config", config); code != exitOK {
		t.Errorf("records label --config: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "labels", "SN-2.zpl")); err != nil {
		t.Errorf("no label in the configured folder: %v", err)
	}

	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := closed.Addr().String()
	closed.Close()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"not passed", []string{"SN-BAD", "--dir", dir}, exitFailed, "has not passed"},
		{"unknown board", []string{"SN-NONE", "--dir", dir}, exitFailed, "no board has serial number"},
		{"printer off", []string{"SN-0", "--zpl", addr}, exitFailed, "check the printer"},
		{"nowhere", []string{"SN-0"}, exitUsage, "say where the label goes"},
		{"two places", []string{"SN-0", "--dir", dir, "--lp", "q1"}, exitUsage, "labels"},
	} {
		code, _, errOut := run(t, append([]string{"records", "label", "--db", db}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d saying %q", tc.name, code, errOut, tc.code, tc.want)
		}
	}
}
