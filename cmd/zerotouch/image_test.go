package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"zerotouch/flasher"
)

// image build wraps a binary in an MCUboot image that flasher (and so
// the boards' uploads and the firmware: setting) takes; image show reads
// it back; mistakes are refused with what to do.
func TestImageBuild(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app.bin")
	os.WriteFile(app, []byte(strings.Repeat("production firmware ", 100)), 0o644)
	img := filepath.Join(dir, "app.signed.bin")
	code, out, errOut := run(t, "image", "build", "--version", "1.2.3", app, img)
	if code != exitOK || !strings.Contains(out, "version 1.2.3") {
		t.Fatalf("image build: exit %d\n%s\n%s", code, out, errOut)
	}
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	info, err := flasher.ParseImage(data)
	if err != nil || info.Version.String() != "1.2.3" || info.Size != 2000 {
		t.Fatalf("the image made: %+v, %v", info, err)
	}
	if code, out, _ := run(t, "image", "show", img, "--json"); code != exitOK || !strings.Contains(out, `"version":"1.2.3"`) {
		t.Errorf("image show: exit %d, %s", code, out)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no version", []string{"image", "build", app, img}, exitUsage, "version"},
		{"bad version", []string{"image", "build", "--version", "one", app, img}, exitUsage, "--version"},
		{"already an image", []string{"image", "build", "--version", "1.0.0", img, img + "2"}, exitUsage, "already an MCUboot image"},
		{"missing binary", []string{"image", "build", "--version", "1.0.0", filepath.Join(dir, "none.bin"), img}, exitUsage, "no such file"},
		{"not an image", []string{"image", "show", app}, exitFailed, "zerotouch image build"},
	} {
		code, _, errOut := run(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, %q; want %d saying %q", tc.name, code, errOut, tc.code, tc.want)
		}
	}
}
