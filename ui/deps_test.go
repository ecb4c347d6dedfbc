package ui

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies keeps the boundaries: the station and the packages
// under it never depend on Fyne (only ui and the command do), and no
// package of ours imports testing outside its tests.
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	list := func(args ...string) []string {
		out, err := exec.Command(goBin, append([]string{"list"}, args...)...).Output()
		if err != nil {
			t.Fatalf("go list %v: %v", args, err)
		}
		return strings.Fields(string(out))
	}
	for _, pkg := range []string{"station/...", "flasher/...", "tpm/...", "ca/...", "enroll/...", "board/...", "labels/..."} {
		for _, dep := range list("-deps", "zerotouch/"+pkg) {
			if strings.HasPrefix(dep, "fyne.io/") {
				t.Errorf("zerotouch/%s depends on %s: only ui and cmd/zerotouch may", pkg, dep)
			}
		}
	}
	for _, line := range list("-f", `{{.ImportPath}}:{{join .Imports ","}}`, "zerotouch/...") {
		pkg, imports, _ := strings.Cut(line, ":")
		for _, imp := range strings.Split(imports, ",") {
			if imp == "testing" {
				t.Errorf("%s imports testing outside its tests", pkg)
			}
		}
	}
}
