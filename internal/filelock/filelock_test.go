package filelock

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"zerotouch/internal/ownerfile"
)

func TestTryLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "records dir", "records.db.lock")
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := TryLock(path)
	if err != nil {
		t.Fatalf("TryLock(%q) = %v", path, err)
	}
	if err := ownerfile.Exposed(path); err != nil {
		t.Errorf("the lock file: %v, want it its owner's alone", err)
	}
	// A second open of the file, in this process, is refused.
	if l2, err := TryLock(path); !errors.Is(err, ErrLocked) {
		if l2 != nil {
			l2.Close()
		}
		t.Fatalf("second TryLock = %v, want ErrLocked", err)
	} else if !strings.Contains(err.Error(), path) {
		t.Errorf("second TryLock = %q, want it to name %s", err, path)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	l, err = TryLock(path)
	if err != nil {
		t.Fatalf("TryLock after Close = %v", err)
	}
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the lock file is gone after Close: %v", err)
	}
}

func TestTryLockMissingFolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent", "x.lock")
	l, err := TryLock(path)
	if err == nil {
		l.Close()
		t.Fatalf("TryLock(%q) = nil, want an error", path)
	}
	if errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Errorf("TryLock(%q) = %v, want an error naming the file, not ErrLocked", path, err)
	}
}

// The helper process takes the lock named by FILELOCK_HELPER, says
// "locked", and holds it until its standard input closes.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv("FILELOCK_HELPER")
	if path == "" {
		t.Skip("the helper process of TestTryLockOtherProcess")
	}
	l, err := TryLock(path)
	if err != nil {
		os.Stdout.WriteString("error: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("locked\n")
	io.Copy(io.Discard, os.Stdin)
	l.Close()
	os.Exit(0)
}

// TestTryLockOtherProcess: the lock keeps another process out, and is
// free again once that process has ended.
func TestTryLockOtherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "upload.db.lock")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "FILELOCK_HELPER="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "locked\n" {
		t.Fatalf("helper process said %q, %v; want locked", line, err)
	}
	if l, err := TryLock(path); !errors.Is(err, ErrLocked) {
		if l != nil {
			l.Close()
		}
		t.Fatalf("TryLock while another process holds the lock = %v, want ErrLocked", err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper process: %v", err)
	}
	l, err := TryLock(path)
	if err != nil {
		t.Fatalf("TryLock after the other process ended = %v", err)
	}
	l.Close()
}
