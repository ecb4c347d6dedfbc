package textsafe

import (
	"strconv"
	"testing"
)

func TestEscape(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"SN-0001", "SN-0001"},
		{"Ünïcödé board 7", "Ünïcödé board 7"},
		{`back\slash`, `back\slash`},
		{"SN-9\nFAKE LOG LINE: board SN-9 passed", `SN-9\nFAKE LOG LINE: board SN-9 passed`},
		{"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"a\rb", `a\rb`},
		{"tab\there", `tab\there`},
		{"line\u2028sep", `line\u2028sep`},
		{"csi\u009b2J", `csi\u009b2J`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"esc\\ and \n", `esc\\ and \n`},
		{"", ""},
	} {
		got := Escape(tt.in)
		if got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if !Printable(got) {
			t.Errorf("Escape(%q) = %q is not printable", tt.in, got)
		}
		// What was escaped reads back exactly.
		if got != tt.in {
			back, err := strconv.Unquote(`"` + got + `"`)
			if err != nil || back != tt.in {
				t.Errorf("Escape(%q) = %q reads back as %q, %v", tt.in, got, back, err)
			}
		}
	}
}

func TestTruncate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"much longer than ten", 10, "much longe..."},
		{"ééééé", 3, "ééé..."},
	} {
		if got := Truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func FuzzEscape(f *testing.F) {
	f.Add("SN-1")
	f.Add("\x1b]0;title\x07")
	f.Add("\xff\xfe")
	f.Fuzz(func(t *testing.T, s string) {
		got := Escape(s)
		if !Printable(got) {
			t.Fatalf("Escape(%q) = %q is not printable", s, got)
		}
		if got == s {
			return
		}
		back, err := strconv.Unquote(`"` + got + `"`)
		if err != nil || back != s {
			t.Fatalf("Escape(%q) = %q reads back as %q, %v", s, got, back, err)
		}
	})
}
