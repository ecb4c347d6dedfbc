package flasher_test

import (
	"errors"
	"testing"

	"zerotouch/flasher"
)

// Port names of each system parse as paths wherever the rule is read, so
// one station.yaml differs between systems only in its port names.
func TestParseMatchSystemNames(t *testing.T) {
	for _, tt := range []struct {
		rule string
		want flasher.Match
	}{
		{"/dev/ttyACM0", flasher.Match{Path: "/dev/ttyACM0"}},
		{"/dev/cu.usbmodem14101", flasher.Match{Path: "/dev/cu.usbmodem14101"}},
		{"COM7", flasher.Match{Path: "COM7"}},
		{"com12", flasher.Match{Path: "com12"}},
		{`\\.\COM12`, flasher.Match{Path: `\\.\COM12`}},
		{"COMX", flasher.Match{Path: "/dev/serial/by-id/COMX"}},
		{"COM7,usb-serial=E661", flasher.Match{Path: "COM7", Serial: "E661"}},
	} {
		got, err := flasher.ParseMatch(tt.rule)
		if err != nil || got != tt.want {
			t.Errorf("ParseMatch(%q) = %+v, %v; want %+v", tt.rule, got, err, tt.want)
		}
	}
	// A port the system does not have resolves to ErrNoPort.
	m, _ := flasher.ParseMatch("COM250")
	if _, err := m.Resolve(); !errors.Is(err, flasher.ErrNoPort) {
		t.Errorf("Resolve(COM250) = %v, want ErrNoPort", err)
	}
}
