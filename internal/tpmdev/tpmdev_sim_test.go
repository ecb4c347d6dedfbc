//go:build cgo && !notpmsim

package tpmdev

import (
	"errors"
	"testing"
)

// TestSimOnePerProcess: the simulator has one user at a time in a
// process; a second is refused at once, and it is free again after Close.
func TestSimOnePerProcess(t *testing.T) {
	a, err := Open(Sim, 1)
	if err != nil {
		t.Fatalf("Open(sim) = %v", err)
	}
	if _, ok := a.(Resetter); !ok {
		t.Errorf("the simulator is no Resetter")
	}
	if b, err := Open(Sim, 2); !errors.Is(err, ErrSimulatorBusy) {
		if b != nil {
			b.Close()
		}
		t.Fatalf("second Open(sim) = %v, want ErrSimulatorBusy", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	b, err := Open(Sim, 2)
	if err != nil {
		t.Fatalf("Open(sim) after Close = %v", err)
	}
	b.Close()
}
