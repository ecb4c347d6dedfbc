//go:build cgo && !notpmsim

package tpmdev

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/tpm2/transport"
)

// HasSimulator says whether this build has the TPM simulator (sim).
const HasSimulator = true

// simInUse guards the process-wide simulator, so that a second user fails
// at once instead of blocking in simulator.Get.
var simInUse atomic.Bool

// openSim starts the process's simulator, with seeds made from seed.
func openSim(seed int64) (transport.TPMCloser, error) {
	if !simInUse.CompareAndSwap(false, true) {
		return nil, ErrSimulatorBusy
	}
	sim, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		simInUse.Store(false)
		return nil, fmt.Errorf("start TPM simulator: %w", err)
	}
	return &simTPM{TPMCloser: transport.FromReadWriteCloser(sim), sim: sim}, nil
}

// simTPM releases the process's simulator when closed.
type simTPM struct {
	transport.TPMCloser
	sim  *simulator.Simulator
	once sync.Once
}

// Reset power-cycles the simulator (Shutdown, then Startup(CLEAR)).
func (s *simTPM) Reset() error { return s.sim.Reset() }

func (s *simTPM) Close() error {
	var err error
	s.once.Do(func() {
		err = s.TPMCloser.Close()
		simInUse.Store(false)
	})
	return err
}
