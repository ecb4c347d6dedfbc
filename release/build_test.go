//go:build linux

// Package release holds the release build script, build, and its test.
package release

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// envRun turns on the cross-builds, which take minutes.
const envRun = "ZEROTOUCH_RELEASE"

func TestBuildArguments(t *testing.T) {
	for _, tt := range []struct {
		args []string
		exit int
		want string
	}{
		{[]string{"--help"}, 0, "SHA256SUMS"},
		{[]string{"--bogus"}, 2, "unknown argument --bogus"},
		{[]string{"--out"}, 1, "--out needs a folder"},
	} {
		out, err := exec.CommandContext(t.Context(), "./build", tt.args...).CombinedOutput()
		exit := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			exit = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("build %v: %v", tt.args, err)
		}
		if exit != tt.exit || !strings.Contains(string(out), tt.want) {
			t.Errorf("build %v: exit %d, want %d with %q:\n%s", tt.args, exit, tt.exit, tt.want, out)
		}
	}
}

// TestBuild runs release/build and checks that each file is an
// executable for its system and processor, that the Windows window build
// is one (it holds GLFW and loads OpenGL), and that SHA256SUMS holds each one's checksum
// in sha256sum's format.
func TestBuild(t *testing.T) {
	if os.Getenv(envRun) == "" {
		t.Skipf("set %s=1 to cross-build the four targets and the Windows window (minutes on 2 cores; needs mingw-w64)", envRun)
	}
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "./build", "--out", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	} else {
		t.Logf("%s", out)
	}
	want := map[string]string{
		"zerotouch-linux-amd64":           "elf " + elf.EM_X86_64.String(),
		"zerotouch-linux-arm64":           "elf " + elf.EM_AARCH64.String(),
		"zerotouch-darwin-arm64":          "macho " + macho.CpuArm64.String(),
		"zerotouch-windows-amd64.exe":     "pe amd64",
		"zerotouch-gui-windows-amd64.exe": "pe amd64",
	}
	for name, format := range want {
		if got := binaryFormat(t, filepath.Join(dir, name)); got != format {
			t.Errorf("%s is %q, want %q", name, got, format)
		}
	}
	for name, window := range map[string]bool{"zerotouch-windows-amd64.exe": false, "zerotouch-gui-windows-amd64.exe": true} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		// Fyne's GLFW driver, and the OpenGL library it loads at run time.
		for _, s := range []string{"go-gl/glfw", "opengl32"} {
			if got := bytes.Contains(b, []byte(s)); got != window {
				t.Errorf("%s holds %q: %v, want %v", name, s, got, window)
			}
		}
	}

	f, err := os.Open(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			t.Errorf("SHA256SUMS line %q is not sha256sum's \"SUM  NAME\"", sc.Text())
			continue
		}
		if got := fileSHA256(t, filepath.Join(dir, name)); got != sum {
			t.Errorf("SHA256SUMS gives %s for %s, which hashes to %s", sum, name, got)
		}
		seen[name] = true
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("SHA256SUMS has no line for %s", name)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("SHA256SUMS names %d files, want %d", len(seen), len(want))
	}
}

// binaryFormat names an executable's format and machine.
func binaryFormat(t *testing.T, name string) string {
	t.Helper()
	if f, err := elf.Open(name); err == nil {
		defer f.Close()
		return "elf " + f.Machine.String()
	}
	if f, err := macho.Open(name); err == nil {
		defer f.Close()
		return "macho " + f.Cpu.String()
	}
	if f, err := pe.Open(name); err == nil {
		defer f.Close()
		if f.Machine == pe.IMAGE_FILE_MACHINE_AMD64 {
			return "pe amd64"
		}
		return "pe other"
	}
	t.Errorf("%s: no ELF, Mach-O or PE executable", name)
	return ""
}

func fileSHA256(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
