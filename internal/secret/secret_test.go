package secret

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zerotouch/internal/ownerfile"
	"zerotouch/internal/ownerfile/ownerfiletest"
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
// the file, the setting and the fix but never the secret; a file made for
// its owner alone gives no warning.
func TestReadWarnsOfExposedFile(t *testing.T) {
	dir, err := ownerfiletest.ExposedDir(t.TempDir(), "station secrets")
	if err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "ca password.txt")
	if err := os.WriteFile(shared, []byte("hunter2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ownerfiletest.Expose(shared); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(dir, "ca password (private).txt")
	f, err := ownerfile.OpenFile(private, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("hunter2\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for _, tt := range []struct {
		file    string
		exposed bool
	}{{shared, true}, {private, false}} {
		var logs bytes.Buffer
		got, err := Read(slog.New(slog.NewTextHandler(&logs, nil)), "ca.password_file", tt.file, "")
		if err != nil || string(got) != "hunter2" {
			t.Fatalf("Read(%q) = %q, %v", tt.file, got, err)
		}
		warned := strings.Contains(logs.String(), "readable by other users")
		if warned != tt.exposed {
			t.Errorf("Read(%q): warned %v, want %v:\n%s", tt.file, warned, tt.exposed, logs.String())
		}
		if warned && (!strings.Contains(logs.String(), "ca.password_file") || !strings.Contains(logs.String(), "fix=")) {
			t.Errorf("the warning does not name the setting and the fix:\n%s", logs.String())
		}
		if strings.Contains(logs.String(), "hunter2") {
			t.Errorf("the warning shows the secret")
		}
		if err := Exposed(tt.file); tt.exposed != errors.Is(err, ErrExposed) {
			t.Errorf("Exposed(%q) = %v, want exposed %v", tt.file, err, tt.exposed)
		}
	}
}
