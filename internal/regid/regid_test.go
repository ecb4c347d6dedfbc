package regid

import (
	"errors"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		id  string
		max int
		ok  bool
	}{
		{"board-0001", MaxLen, true},
		{"a", MaxLen, true},
		{"Mixed.Case_id:1", MaxLen, true},
		{"a-b.c_d:e", MaxLen, true},
		{"ends-with-dash-", MaxLen, false},
		{"-starts", MaxLen, false},
		{".starts", MaxLen, false},
		{"_starts", MaxLen, false},
		{":starts", MaxLen, false},
		{"-", MaxLen, false},
		{strings.Repeat("a", 128), MaxLen, true},
		{strings.Repeat("a", 129), MaxLen, false},
		{strings.Repeat("a", 64), MaxLenX509, true},
		{strings.Repeat("a", 65), MaxLenX509, false},
		{"", MaxLen, false},
		{"ends.", MaxLen, false},
		{"ends_", MaxLen, false},
		{"ends:", MaxLen, false},
		{"has space", MaxLen, false},
		{"slash/", MaxLen, false},
		{"ünïcode", MaxLen, false},
	}
	for _, tt := range tests {
		err := Check(tt.id, tt.max)
		if (err == nil) != tt.ok {
			t.Errorf("Check(%q, %d) = %v, want ok=%v", tt.id, tt.max, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("Check(%q) = %v, want ErrInvalid", tt.id, err)
		}
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("board-0001")
	f.Add("x.")
	f.Add("-x")
	f.Add("a-b.c_d:e")
	f.Fuzz(func(t *testing.T, id string) {
		if Check(id, MaxLen) != nil {
			return
		}
		// What Check accepts is plain ASCII DPS can take as a URL path
		// segment and a CN.
		if len(id) == 0 || len(id) > MaxLen || strings.ContainsAny(id, " /?#%") {
			t.Errorf("Check(%q) accepted it", id)
		}
		// No special character at either end (service.json).
		if strings.ContainsAny(id[:1], "-._:") || strings.ContainsAny(id[len(id)-1:], "-._:") {
			t.Errorf("Check(%q) accepted a special character at an end", id)
		}
	})
}

func TestCheckDeviceID(t *testing.T) {
	for _, id := range []string{"dev-1", "A.b_c:d", "x%*?!(),=@$'", strings.Repeat("d", MaxDeviceIDLen)} {
		if err := CheckDeviceID(id); err != nil {
			t.Errorf("CheckDeviceID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{"", "a b", "a/b", "a+b", "a#b", "a\nb", "é", "a\"b", strings.Repeat("d", MaxDeviceIDLen+1)} {
		if err := CheckDeviceID(id); !errors.Is(err, ErrInvalidDeviceID) {
			t.Errorf("CheckDeviceID(%q) = %v, want ErrInvalidDeviceID", id, err)
		}
	}
}
