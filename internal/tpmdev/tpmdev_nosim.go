//go:build !cgo || notpmsim

package tpmdev

import "github.com/google/go-tpm/tpm2/transport"

// HasSimulator says whether this build has the TPM simulator (sim).
const HasSimulator = false

// openSim fails: this build has no simulator.
func openSim(int64) (transport.TPMCloser, error) {
	return nil, ErrNoSimulator
}
