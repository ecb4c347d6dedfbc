package ownerfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"zerotouch/internal/ownerfile/ownerfiletest"
)

// newExposedDir makes a folder whose files, by default, others may read:
// the case where a file must be restricted on its own.
func newExposedDir(t *testing.T) string {
	t.Helper()
	dir, err := ownerfiletest.ExposedDir(t.TempDir(), "shared folder")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOpenFilePrivate(t *testing.T) {
	dir := newExposedDir(t)
	// The check first: a file made in that folder without this package
	// is exposed.
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Exposed(plain); !errors.Is(err, ErrExposed) {
		t.Fatalf("Exposed(%q) = %v, want ErrExposed for a file made readable by all", plain, err)
	}

	name := filepath.Join(dir, "ca key.pem")
	f, err := OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatalf("OpenFile(%q) = %v", name, err)
	}
	if _, err := f.Write([]byte("secret")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Exposed(name); err != nil {
		t.Errorf("Exposed(%q) = %v for a file OpenFile made with 0600, want nil", name, err)
	}
	if b, err := os.ReadFile(name); err != nil || string(b) != "secret" {
		t.Errorf("read back %q, %v; want the owner to read what it wrote", b, err)
	}

	// O_EXCL on a file that exists fails as os.OpenFile does.
	if _, err := OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("OpenFile(O_EXCL) on an existing file = %v, want ErrExist", err)
	}
	// Without O_EXCL it opens the file, and its content stays.
	f, err = OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("OpenFile(O_CREATE) on an existing file = %v", err)
	}
	f.Close()
	if b, _ := os.ReadFile(name); string(b) != "secret" {
		t.Errorf("reopening the file changed it to %q", b)
	}
}

// TestOpenFileKeepsExisting: an existing file keeps its permissions, as
// os.OpenFile keeps a Unix file's mode; only Restrict changes them.
func TestOpenFileKeepsExisting(t *testing.T) {
	dir := newExposedDir(t)
	name := filepath.Join(dir, "records.db")
	if err := os.WriteFile(name, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ownerfiletest.Expose(name); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("OpenFile = %v", err)
	}
	f.Close()
	if err := Exposed(name); !errors.Is(err, ErrExposed) {
		t.Errorf("Exposed after OpenFile of an existing exposed file = %v, want ErrExposed", err)
	}
	skipOnWine(t, "setting the DACL of an existing file")
	if err := Restrict(name); err != nil {
		t.Fatalf("Restrict(%q) = %v", name, err)
	}
	if err := Exposed(name); err != nil {
		t.Errorf("Exposed after Restrict = %v, want nil", err)
	}
	if err := os.WriteFile(name, []byte("still mine"), 0o600); err != nil {
		t.Errorf("the owner cannot write the file after Restrict: %v", err)
	}
}

// TestOpenFileShared: a permission that lets others read gives what the
// os package gives, a file others may read in this folder.
func TestOpenFileShared(t *testing.T) {
	name := filepath.Join(newExposedDir(t), "report.csv")
	f, err := OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("OpenFile = %v", err)
	}
	f.Close()
	if err := Exposed(name); !errors.Is(err, ErrExposed) {
		t.Errorf("Exposed(%q) made with 0644 = %v, want ErrExposed", name, err)
	}
}

func TestMkdirAll(t *testing.T) {
	dir := newExposedDir(t)
	leaf := filepath.Join(dir, "ca dir", "keys")
	if err := MkdirAll(leaf, 0o700); err != nil {
		t.Fatalf("MkdirAll(%q) = %v", leaf, err)
	}
	for _, d := range []string{filepath.Dir(leaf), leaf} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			t.Fatalf("Stat(%q) = %v, %v; want a folder", d, st, err)
		}
		if err := Exposed(d); err != nil {
			t.Errorf("Exposed(%q) = %v for a folder MkdirAll made with 0700, want nil", d, err)
		}
	}
	if err := MkdirAll(leaf, 0o700); err != nil {
		t.Errorf("MkdirAll on an existing folder = %v, want nil", err)
	}
	if runtime.GOOS == "windows" && !onWine() {
		// What another program makes inside (SQLite's journal) inherits
		// the folder's ACL. Wine gives a file made without a security
		// descriptor one from its Unix mode instead.
		wal := filepath.Join(leaf, "records.db-wal")
		if err := os.WriteFile(wal, []byte("x"), 0o666); err != nil {
			t.Fatal(err)
		}
		if err := Exposed(wal); err != nil {
			t.Errorf("Exposed(%q) = %v for a file made in a private folder, want nil", wal, err)
		}
	}
	file := filepath.Join(dir, "a file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(filepath.Join(file, "sub"), 0o700); err == nil {
		t.Errorf("MkdirAll under a file = nil, want an error")
	}
	if err := MkdirAll(file, 0o700); err == nil {
		t.Errorf("MkdirAll on a file = nil, want an error")
	}
}

func TestRestrictFolder(t *testing.T) {
	dir := newExposedDir(t)
	if err := Exposed(dir); !errors.Is(err, ErrExposed) {
		t.Fatalf("Exposed(%q) = %v, want ErrExposed", dir, err)
	}
	skipOnWine(t, "setting the DACL of an existing folder")
	if err := Restrict(dir); err != nil {
		t.Fatalf("Restrict(%q) = %v", dir, err)
	}
	if err := Exposed(dir); err != nil {
		t.Errorf("Exposed after Restrict = %v, want nil", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o600); err != nil {
		t.Errorf("the owner cannot make files in the folder after Restrict: %v", err)
	}
}

func TestMissing(t *testing.T) {
	name := filepath.Join(t.TempDir(), "absent")
	if err := Exposed(name); err == nil || errors.Is(err, ErrExposed) {
		t.Errorf("Exposed(%q) = %v, want an error other than ErrExposed", name, err)
	}
	if err := Restrict(name); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Restrict(%q) = %v, want ErrNotExist", name, err)
	}
}
