package secret

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const env = "ZEROTOUCH_TEST_SECRET"
	tests := []struct {
		name, file, env, want string
		wantErr               bool
	}{
		{name: "file with newline", file: write("a", "s3cret\n"), want: "s3cret"},
		{name: "file with CRLF", file: write("b", "s3cret\r\n"), want: "s3cret"},
		{name: "inner newline kept", file: write("c", "two\nlines\n"), want: "two\nlines"},
		{name: "file wins over env", file: write("d", "file"), env: "env", want: "file"},
		{name: "env", env: "from-env", want: "from-env"},
		{name: "empty file", file: write("e", "\n"), wantErr: true},
		{name: "nothing", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(env, tt.env)
			got, err := Read(nil, "--secret-file", tt.file, env)
			if tt.wantErr {
				if !errors.Is(err, ErrMissing) || (tt.file == "" && !strings.Contains(err.Error(), "--secret-file")) {
					t.Fatalf("Read = %q, %v; want ErrMissing", got, err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("Read = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := Read(nil, "--secret-file", filepath.Join(dir, "absent"), env); err == nil || errors.Is(err, ErrMissing) {
		t.Fatalf("Read(absent file) = %v, want a read error", err)
	}
}

// A secret's file that others may read is read, with a warning that names
// the file and its mode but never the secret.
func TestReadWarnsOfExposedFile(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		mode os.FileMode
		warn bool
	}{{0o600, false}, {0o400, false}, {0o640, true}, {0o644, true}, {0o604, true}} {
		p := filepath.Join(dir, fmt.Sprintf("pw-%04o", tt.mode))
		if err := os.WriteFile(p, []byte("hunter2\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tt.mode); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		got, err := Read(slog.New(slog.NewTextHandler(&logs, nil)), "ca.password_file", p, "")
		if err != nil || string(got) != "hunter2" {
			t.Fatalf("mode %04o: Read = %q, %v", tt.mode, got, err)
		}
		warned := strings.Contains(logs.String(), "readable by other users")
		if warned != tt.warn {
			t.Errorf("mode %04o: warned %v, want %v:\n%s", tt.mode, warned, tt.warn, logs.String())
		}
		if warned && (!strings.Contains(logs.String(), p) || !strings.Contains(logs.String(), "ca.password_file")) {
			t.Errorf("mode %04o: the warning does not name the file and the setting:\n%s", tt.mode, logs.String())
		}
		if strings.Contains(logs.String(), "hunter2") {
			t.Errorf("mode %04o: the warning shows the secret", tt.mode)
		}
		if err := Exposed(p); tt.warn != errors.Is(err, ErrExposed) {
			t.Errorf("mode %04o: Exposed = %v", tt.mode, err)
		}
	}
}
