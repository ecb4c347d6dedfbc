package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"zerotouch/internal/ownerfile"
	"zerotouch/internal/ownerfile/ownerfiletest"
)

func TestWrite(t *testing.T) {
	for _, w := range []struct {
		name  string
		write func(string, []byte, os.FileMode) error
	}{{"Write", Write}, {"WriteUnsynced", WriteUnsynced}} {
		t.Run(w.name, func(t *testing.T) { testWrite(t, w.write) })
	}
}

func testWrite(t *testing.T, Write func(string, []byte, os.FileMode) error) {
	dir, err := ownerfiletest.ExposedDir(t.TempDir(), "station data")
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "state.json")
	for _, data := range []string{"first", "second, longer than the first"} {
		if err := Write(name, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil || string(got) != data {
			t.Fatalf("read back %q, %v; want %q", got, err, data)
		}
	}
	if st, _ := os.Stat(name); runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if err := ownerfile.Exposed(name); err != nil {
		t.Errorf("a file written with 0600 in a folder others may read: %v, want it its owner's alone", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file (no temporaries left)", len(entries))
	}
	// A directory that is not there: an error naming the file, and nothing
	// written.
	if err := Write(filepath.Join(dir, "missing", "x"), []byte("x"), 0o600); err == nil {
		t.Errorf("Write into a missing directory succeeded")
	}
}

// TestWriteShared: a permission that lets others read gives them the
// file, on Windows by the folder's ACL.
func TestWriteShared(t *testing.T) {
	dir, err := ownerfiletest.ExposedDir(t.TempDir(), "certs")
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, "root.pem")
	if err := Write(name, []byte("cert"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ownerfile.Exposed(name); !errors.Is(err, ownerfile.ErrExposed) {
		t.Errorf("a file written with 0644: Exposed = %v, want ErrExposed", err)
	}
	// Replacing it with a private permission makes it private.
	if err := Write(name, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ownerfile.Exposed(name); err != nil {
		t.Errorf("the file rewritten with 0600: %v, want it its owner's alone", err)
	}
}

// TestWriteFromFails: when fill fails, the file keeps its content and no
// temporary file is left.
func TestWriteFromFails(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "ca.json")
	if err := Write(name, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteFrom(name, 0o600, func(w io.Writer) error {
		w.Write([]byte("half"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("WriteFrom = %v, want fill's error", err)
	}
	if b, _ := os.ReadFile(name); string(b) != "old" {
		t.Errorf("after a failed WriteFrom the file holds %q, want %q", b, "old")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the file", len(entries))
	}
}
