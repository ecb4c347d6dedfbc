package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
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
	dir := t.TempDir()
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
	if st, _ := os.Stat(name); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
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
