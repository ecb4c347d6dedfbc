package station_test

import (
	"bytes"
	"context"
	"testing"

	"zerotouch/board"
	"zerotouch/flasher"
	"zerotouch/station"
)

// A board running other firmware than the line's is flashed, restarted
// and then provisioned; one already on it is not flashed again.
func TestFlash(t *testing.T) {
	ctx := context.Background()
	l := newLine(t)
	b := startBoard(t, "ZT-FLASH", board.TPMNone)
	v, _ := flasher.ParseImageVersion("1.2.0")
	img := flasher.BuildImage(v, bytes.Repeat([]byte("production firmware "), 500))
	st := l.stationWith(t, station.ModeSymmetricKey, &station.FirmwareConfig{Image: "app.bin", Version: "1.2.0"}, img, b)
	if _, err := st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, b.Path()); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if got := b.FirmwareVersion(); got != "1.2.0" {
		t.Errorf("board runs %s after flashing, want 1.2.0", got)
	}
	if !l.saw(station.StepFlash) {
		t.Errorf("no flash step among the events")
	}
	l.events = nil
	if _, err := st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, b.Path()); err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	if l.saw(station.StepFlash) {
		t.Errorf("a board already on 1.2.0 was flashed again")
	}
}
