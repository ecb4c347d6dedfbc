package secret

import (
	"errors"
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
			got, err := Read("--secret-file", tt.file, env)
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
	if _, err := Read("--secret-file", filepath.Join(dir, "absent"), env); err == nil || errors.Is(err, ErrMissing) {
		t.Fatalf("Read(absent file) = %v, want a read error", err)
	}
}
