package board

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/google/go-tpm/tpm2/transport"

	"zerotouch/internal/tpmdev"
)

// TPM backends, as named by Config.TPM:
//
//	sim            the go-tpm-tools simulator, in this process
//	tcp:HOST:PORT  a TPM speaking raw commands over TCP (swtpm's server
//	               socket, started with --flags not-need-init,startup-clear)
//	/dev/tpmrm0    a TPM device
//	none           no TPM
const (
	TPMSim  = tpmdev.Sim
	TPMNone = tpmdev.None
)

// ErrSimulatorBusy means another board in this process holds the TPM
// simulator: it is one per process (go-tpm-tools keeps it in C globals).
var ErrSimulatorBusy = tpmdev.ErrSimulatorBusy

// SimulatorSeed is the seed of the simulator behind the board with this
// serial number: its hierarchy seeds, and so its EK, follow from it.
func SimulatorSeed(serial string) int64 {
	sum := sha256.Sum256([]byte("zerotouch virtual board " + serial))
	return int64(binary.BigEndian.Uint64(sum[:8]))
}

// openTPM opens the TPM backend named by spec for the board with this
// serial number.
func openTPM(spec, serial string) (transport.TPMCloser, error) {
	return tpmdev.Open(spec, SimulatorSeed(serial))
}
