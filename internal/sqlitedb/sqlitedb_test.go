package sqlitedb

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenMigrates(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "t.db")
	m := []string{"CREATE TABLE a (x INTEGER)"}
	db, err := Open(ctx, path, m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	var sync int
	if err := db.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil || sync != 2 {
		t.Errorf("synchronous = %d, %v; want 2 (FULL)", sync, err)
	}
	if _, err := db.Exec("INSERT INTO a VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal"} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", f, st.Mode().Perm(), err)
		}
	}
	db.Close()

	// A second migration runs once; the first is not run again.
	m = append(m, "CREATE TABLE b (y INTEGER)")
	db, err = Open(ctx, path, m, Options{})
	if err != nil {
		t.Fatalf("reopen with a new migration: %v", err)
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM a").Scan(&n); err != nil || n != 1 {
		t.Errorf("rows in a = %d, %v; want 1 kept", n, err)
	}
	if _, err := db.Exec("INSERT INTO b VALUES (1)"); err != nil {
		t.Errorf("table b missing: %v", err)
	}
	db.Close()

	// An older binary refuses the newer file.
	if _, err := Open(ctx, path, m[:1], Options{}); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open with fewer migrations = %v, want a 'newer' error", err)
	}
	// A broken migration leaves the version where it was.
	bad := append(m, "CREATE TABLE nonsense (")
	if _, err := Open(ctx, path, bad, Options{}); err == nil || !strings.Contains(err.Error(), "version 3") {
		t.Errorf("Open with a broken migration = %v, want an error naming version 3", err)
	}
	db, err = Open(ctx, path, m, Options{})
	if err != nil {
		t.Fatalf("reopen after a failed migration: %v", err)
	}
	db.Close()
}

// Characters that mean something in a URI stay part of the file name.
func TestOpenOddPath(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"batch#2.db", "what?.db", "100%.db", "sp ace.db"} {
		path := filepath.Join(dir, name)
		db, err := Open(context.Background(), path, []string{"CREATE TABLE a (x)"}, Options{})
		if err != nil {
			t.Errorf("Open(%q) = %v", name, err)
			continue
		}
		if _, err := db.Exec("INSERT INTO a VALUES (1)"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		db.Close()
		if st, err := os.Stat(path); err != nil || st.Size() == 0 {
			t.Errorf("%s: the data did not go to the file named (%v)", name, err)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		switch e.Name() {
		case "batch#2.db", "what?.db", "100%.db", "sp ace.db":
		default:
			t.Errorf("stray file %q", e.Name())
		}
	}
}

func TestOpenLocked(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "l.db")
	m := []string{"CREATE TABLE a (x)"}
	db, lock, err := OpenLocked(ctx, path, m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenLocked(ctx, path, m, Options{}); !errors.Is(err, ErrLocked) {
		t.Errorf("second OpenLocked = %v, want ErrLocked", err)
	}
	db.Close()
	lock.Close()
	db, lock, err = OpenLocked(ctx, path, m, Options{})
	if err != nil {
		t.Fatalf("OpenLocked after release: %v", err)
	}
	db.Close()
	lock.Close()
}

// A store in a folder not made yet gets its folder, readable by this user
// alone; a folder that cannot be made is an error naming the path.
func TestOpenLockedMakesFolder(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "var", "lib", "zerotouch", "records.db")
	db, lock, err := OpenLocked(ctx, path, []string{"CREATE TABLE t (x INTEGER)"}, Options{})
	if err != nil {
		t.Fatalf("OpenLocked in a missing folder: %v", err)
	}
	db.Close()
	lock.Close()
	st, err := os.Stat(filepath.Dir(path))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("folder: %v, %v; want mode 0700", st, err)
	}
	file := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(file, nil, 0o600)
	if _, _, err := OpenLocked(ctx, filepath.Join(file, "records.db"), nil, Options{}); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("a folder under a file: %v, want an error naming it", err)
	}
}
