//go:build !windows

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

// On Unix the permission bits decide: any read bit for group or others
// warns, and the warning names the file and its mode.
func TestReadWarnsOfExposedMode(t *testing.T) {
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
