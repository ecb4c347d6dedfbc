package tpmdev

import (
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// openSystem opens a TPM device such as /dev/tpmrm0.
func openSystem(spec string) (transport.TPMCloser, error) {
	if spec == TBS {
		return nil, fmt.Errorf("%w: tbs is Windows' TPM service; name a device such as /dev/tpmrm0", ErrNoDevice)
	}
	return linuxtpm.Open(spec)
}
