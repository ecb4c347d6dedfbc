package ownerfile

import (
	"strings"
	"testing"

	"golang.org/x/sys/windows"
)

// onWine reports whether the test runs under Wine, whose ntdll exports
// wine_get_version.
func onWine() bool {
	return windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil
}

// skipOnWine skips the rest of a test that needs what Wine 8 lacks: it
// keeps a file's DACL only as Unix mode bits, and a DACL set on an
// existing file leaves the file readable by all.
func skipOnWine(t *testing.T, what string) {
	t.Helper()
	if onWine() {
		t.Skipf("Wine 8 does not apply %s (its files keep Unix mode bits, not DACLs)", what)
	}
}

func TestRemedy(t *testing.T) {
	name := `C:\station data\ca.pw`
	got := Remedy(name)
	if !strings.HasPrefix(got, `icacls "C:\station data\ca.pw" /inheritance:r /grant:r "*S-1-`) || !strings.HasSuffix(got, `:F"`) {
		t.Errorf("Remedy(%q) = %q, want icacls granting the current user's SID alone", name, got)
	}
}
