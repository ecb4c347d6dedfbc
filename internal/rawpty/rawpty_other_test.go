//go:build !linux && !darwin

package rawpty

import (
	"errors"
	"strings"
	"testing"
)

func TestOpenUnsupported(t *testing.T) {
	master, tty, err := Open()
	if !errors.Is(err, ErrNoPTY) {
		t.Fatalf("Open() = %v, want an error wrapping ErrNoPTY", err)
	}
	if master != nil || tty != nil {
		t.Errorf("Open() = %v, %v, want nil files", master, tty)
	}
	if !strings.Contains(err.Error(), "board --listen tcp://") {
		t.Errorf("Open() = %q, want it to name board --listen tcp://", err)
	}
}
