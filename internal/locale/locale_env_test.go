//go:build !windows

package locale

import "testing"

// TestGetLocales reads the process's environment as Fyne does.
func TestGetLocales(t *testing.T) {
	for _, tt := range []struct {
		lang string
		want string
	}{
		{"C.UTF-8", ""},
		{"C", ""},
		{"POSIX", ""},
		{"en_GB.UTF-8", "en-GB"},
	} {
		t.Setenv("LC_ALL", "")
		t.Setenv("LC_MESSAGES", "")
		t.Setenv("LANGUAGE", "")
		t.Setenv("LANG", tt.lang)
		got, err := GetLocale()
		if err != nil || got != tt.want {
			t.Errorf("LANG=%s: GetLocale() = %q, %v, want %q, nil", tt.lang, got, err, tt.want)
		}
		all, err := GetLocales()
		if err != nil || (tt.want == "") != (len(all) == 0) {
			t.Errorf("LANG=%s: GetLocales() = %q, %v", tt.lang, all, err)
		}
	}
}
