//go:build !windows

package ownerfile

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestRemedy runs the command Remedy gives, through the shell, on names
// the shell would split or expand.
func TestRemedy(t *testing.T) {
	dir := t.TempDir()
	for _, base := range []string{"plain.key", "with space", "it's $HOME", "*"} {
		name := filepath.Join(dir, base)
		if err := os.WriteFile(name, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("sh", "-c", Remedy(name)).CombinedOutput(); err != nil {
			t.Fatalf("sh -c %q: %v\n%s", Remedy(name), err, out)
		}
		if err := Exposed(name); err != nil {
			t.Errorf("after %s: Exposed = %v, want nil", Remedy(name), err)
		}
	}
}

func onWine() bool { return false }

func skipOnWine(*testing.T, string) {}
