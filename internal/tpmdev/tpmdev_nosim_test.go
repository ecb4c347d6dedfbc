//go:build !cgo || notpmsim

package tpmdev

import (
	"errors"
	"testing"
)

func TestNoSimulator(t *testing.T) {
	tr, err := Open(Sim, 1)
	if !errors.Is(err, ErrNoSimulator) || tr != nil {
		t.Errorf("Open(sim) in a build without the simulator = %v, %v, want ErrNoSimulator", tr, err)
	}
}
