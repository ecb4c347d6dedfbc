package tpmdev

import (
	"fmt"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/windowstpm"
)

// openSystem opens the system's TPM 2.0 through TPM Base Services
// (tbs.dll), which shares it among processes as /dev/tpmrm0 does on Linux.
func openSystem(spec string) (transport.TPMCloser, error) {
	if spec != TBS {
		return nil, fmt.Errorf("%w: Windows has no TPM device files; name the system's TPM with tbs", ErrNoDevice)
	}
	return windowstpm.Open()
}
