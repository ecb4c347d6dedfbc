//go:build !linux && !windows

package tpmdev

import (
	"fmt"
	"runtime"

	"github.com/google/go-tpm/tpm2/transport"
)

// openSystem fails: macOS (and the other systems) have no TPM 2.0 device
// zerotouch can reach.
func openSystem(spec string) (transport.TPMCloser, error) {
	return nil, fmt.Errorf("%w: %s has no TPM 2.0 device; use sim, or swtpm with tcp:HOST:PORT", ErrNoDevice, runtime.GOOS)
}
