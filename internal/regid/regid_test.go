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

// TestCheckExisting: an ID to read or delete may have a special
// character at either end (DPS's concept documentation lets the last be
// a dash); its length and characters are still checked.
func TestCheckExisting(t *testing.T) {
	for _, id := range []string{"board-", "-board", ".b", "b_", "b:", "-", "a-b.c_d:e", strings.Repeat("a", MaxLen)} {
		if err := CheckExisting(id); err != nil {
			t.Errorf("CheckExisting(%q) = %v, want nil", id, err)
		}
		if err := Group.CheckExisting(id); err != nil {
			t.Errorf("Group.CheckExisting(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{"", "a b", "a/b", "é", strings.Repeat("a", MaxLen+1)} {
		if err := CheckExisting(id); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckExisting(%q) = %v, want ErrInvalid", id, err)
		}
	}
}

// TestGroupMessages: a group ID's errors say "group ID", and are
// ErrInvalid as well as ErrInvalidGroup.
func TestGroupMessages(t *testing.T) {
	for _, err := range []error{Group.Check("g-", MaxLen), Group.Check("a b", MaxLen), Group.CheckExisting(""), Group.CheckExisting("a/b")} {
		if !errors.Is(err, ErrInvalid) || !errors.Is(err, ErrInvalidGroup) || !strings.Contains(err.Error(), "invalid group ID") || strings.Contains(err.Error(), "registration") {
			t.Errorf("group ID error %v: want ErrInvalid and ErrInvalidGroup saying \"invalid group ID\"", err)
		}
	}
	if err := Check("a b", MaxLen); errors.Is(err, ErrInvalidGroup) || !strings.Contains(err.Error(), "invalid registration ID") {
		t.Errorf("registration ID error %v: want \"invalid registration ID\", not ErrInvalidGroup", err)
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
		// What is valid new is valid existing.
		if err := CheckExisting(id); err != nil {
			t.Errorf("Check(%q) accepted it, CheckExisting = %v", id, err)
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
