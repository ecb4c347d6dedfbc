package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zerotouch/board"
	"zerotouch/flasher"
	"zerotouch/station/records"
)

// TestRunStockScan runs a stock line headless whose serial numbers are
// scanned: they come from --scan, a file of "SLOT SERIAL" lines; a line
// that takes scans refuses to start without --scan, and one that does not
// refuses --scan.
func TestRunStockScan(t *testing.T) {
	dir := t.TempDir()
	b, err := board.Start(board.Config{Serial: "unlabelled", Profile: board.ProfileStock, Dir: t.TempDir(), TPM: board.TPMNone, Baud: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	keyFile := filepath.Join(dir, "group.key")
	os.WriteFile(keyFile, []byte("c3RvY2sgbGluZSBncm91cCBrZXk=\n"), 0o600)
	config := func(source string) string {
		var y strings.Builder
		fmt.Fprintf(&y, "station: st-stock\nline: l1\nattestation: symmetric-key\nid_scope: 0ne0001A2B3\nbaud: 1000000\n")
		fmt.Fprintf(&y, "records: %s\nlabels: {dir: %s}\n", filepath.Join(dir, "records.db"), filepath.Join(dir, "labels"))
		fmt.Fprintf(&y, "symmetric_key: {group_id: stock-group, key_file: %s}\n", keyFile)
		fmt.Fprintf(&y, "board: {profile: stock, serial: {source: %s, prefix: ZQ-}}\n", source)
		fmt.Fprintf(&y, "slots:\n  - {name: fixture-1, port: %s}\n", b.Path())
		name := filepath.Join(dir, source+".yaml")
		os.WriteFile(name, []byte(y.String()), 0o600)
		return name
	}
	scans := filepath.Join(dir, "scans.txt")
	os.WriteFile(scans, []byte("fixture-1 LABEL-0007\n"), 0o600)
	code, out, errOut := run(t, "run", "--config", config("scan"), "--once", "--scan", scans)
	if code != exitOK {
		t.Fatalf("run --scan: exit %d\n%s\n%s", code, out, errOut)
	}
	s, err := records.OpenReadOnly(context.Background(), filepath.Join(dir, "records.db"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.Get(context.Background(), "LABEL-0007")
	s.Close()
	if err != nil || rec.Result != records.ResultPassed || rec.Attestation != "symmetric-key" {
		t.Fatalf("record of the scanned board = %+v, %v; want passed", rec, err)
	}
	if conf, err := b.ReadFile(flasher.StockConfigPath); err != nil || !strings.Contains(string(conf), "label-0007") {
		t.Errorf("the board's configuration (%v):\n%s", err, conf)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--config", config("scan"), "--once"}, "give --scan FILE"},
		{[]string{"run", "--config", config("sequence"), "--once", "--scan", scans}, "takes no scanned serial numbers"},
		{[]string{"run", "--config", config("scan"), "--once", "--scan", filepath.Join(dir, "missing.txt")}, "--scan"},
	} {
		code, _, errOut := run(t, tt.args...)
		if code != exitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d saying %q", tt.args, code, errOut, exitUsage, tt.want)
		}
	}
}

// TestBoardStockFlags: the stock board's flags are checked before any
// board starts.
func TestBoardStockFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"board", "--profile", "mcuboot"}, `--profile "mcuboot"`},
		{[]string{"board", "--fs-size", "4096"}, "for --profile stock"},
		{[]string{"board", "--register-at-boot"}, "for --profile stock"},
		{[]string{"board", "--profile", "stock", "--check"}, "zerotouch link"},
		{[]string{"board", "--profile", "stock", "--fs-size", "-1"}, "--fs-size -1"},
	} {
		code, _, errOut := run(t, tt.args...)
		if code != exitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d saying %q", tt.args, code, errOut, exitUsage, tt.want)
		}
	}
}
