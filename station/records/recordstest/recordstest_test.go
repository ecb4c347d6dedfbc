package recordstest_test

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"zerotouch/station/records"
	"zerotouch/station/records/recordstest"
)

// TestBuild builds a small database and reads it back through the store:
// the newest board first, each as Serial, Time and Failed describe it,
// and the search index built.
func TestBuild(t *testing.T) {
	ctx := context.Background()
	const n = 300
	path := filepath.Join(t.TempDir(), "records.db")
	if err := recordstest.Build(ctx, path, n); err != nil {
		t.Fatalf("Build(%d) = %v", n, err)
	}
	s, err := records.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	all, err := s.List(ctx, records.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("List = %d records, want %d", len(all), n)
	}
	for k, r := range all {
		i := n - k
		if r.Serial != recordstest.Serial(i) || !r.UpdatedAt.Equal(recordstest.Time(i)) ||
			(r.Result == records.ResultFailed) != recordstest.Failed(i) {
			t.Fatalf("record %d = %s at %v, %s; want %s at %v, failed %v", k, r.Serial, r.UpdatedAt, r.Result,
				recordstest.Serial(i), recordstest.Time(i), recordstest.Failed(i))
		}
		if len(r.RegistrationID) != 32 {
			t.Errorf("%s: registration ID %q, want 32 hex digits", r.Serial, r.RegistrationID)
		}
	}
	if got := recordstest.Serial(421737); got != "ZT09-0421737" {
		t.Errorf("Serial(421737) = %q, want ZT09-0421737", got)
	}
	found, err := s.List(ctx, records.Filter{Search: "zt03-000"})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := n; i >= 1; i-- {
		if strings.Contains(recordstest.Serial(i), "ZT03-000") {
			want = append(want, recordstest.Serial(i))
		}
	}
	if len(found) != len(want) {
		t.Fatalf("search zt03-000: %d records, want %d", len(found), len(want))
	}
	for k, r := range found {
		if r.Serial != want[k] {
			t.Errorf("search zt03-000: record %d is %s, want %s", k, r.Serial, want[k])
		}
	}
}

// TestBuildRefuses: no records, or a database that exists, is an error
// and leaves the file as it was.
func TestBuildRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := recordstest.Build(ctx, filepath.Join(dir, "none.db"), 0); err == nil || !strings.Contains(err.Error(), "want at least 1") {
		t.Errorf("Build(0 records) = %v, want an error saying at least 1", err)
	}
	path := filepath.Join(dir, "records.db")
	if err := recordstest.Build(ctx, path, 3); err != nil {
		t.Fatal(err)
	}
	if err := recordstest.Build(ctx, path, 3); !errors.Is(err, fs.ErrExist) {
		t.Errorf("Build over an existing database = %v, want fs.ErrExist", err)
	}
	s, err := records.OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if all, err := s.List(ctx, records.Filter{}); err != nil || len(all) != 3 {
		t.Errorf("after the refused build: %d records, %v; want 3", len(all), err)
	}
}

// TestBuildCancelled: a cancelled build stops with the context's error.
func TestBuildCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := recordstest.Build(ctx, filepath.Join(t.TempDir(), "records.db"), 1000)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Build with a cancelled context = %v, want context.Canceled", err)
	}
}
