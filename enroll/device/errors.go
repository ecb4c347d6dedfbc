package device

import (
	"errors"

	"zerotouch/enroll"
)

// Conditions callers branch on. An *Error matches the one for its HTTP
// status with errors.Is; the others come wrapped with what failed. The
// HTTP ones are package enroll's: the device API answers as the service
// API does.
var (
	// ErrConfig means Register was given a Config it cannot run with;
	// nothing went on the wire.
	ErrConfig = errors.New("invalid DPS device configuration")

	ErrBadRequest   = enroll.ErrBadRequest
	ErrUnauthorized = enroll.ErrUnauthorized // the key, certificate or TPM is not the enrolled one, or the token expired
	ErrNotFound     = enroll.ErrNotFound     // no enrollment for this device, another ID scope, or an unknown operation
	ErrThrottled    = enroll.ErrThrottled
	ErrServer       = enroll.ErrServer

	// ErrUnavailable means no answer came, after the retries: the
	// connection failed or dropped, or the requests timed out.
	ErrUnavailable = enroll.ErrUnavailable
	// ErrProtocol means an answer was not what the device API answers:
	// not JSON, no operation ID, a TPM challenge without its blob.
	ErrProtocol = errors.New("unexpected answer from DPS")

	// ErrDisabled means the registration ended with status disabled:
	// the device's enrollment (or its group) is disabled.
	ErrDisabled = errors.New("the device's enrollment is disabled")
	// ErrFailed means the registration ended with status failed (or
	// unassigned): DPS could not assign the device; the Result's
	// ErrorCode and ErrorMessage say why.
	ErrFailed = errors.New("DPS could not assign the device")

	// ErrCertificate means the certificate chain DPS issued for the
	// device's CSR is missing or not acceptable: another key or CN, or
	// it does not verify to its root (or Config.IssuerRoots).
	ErrCertificate = errors.New("issued certificate chain not acceptable")

	// ErrTPM means the TPM failed: importing DPS's challenge or key, or
	// signing the token. The TPM's own error is wrapped too.
	ErrTPM = errors.New("TPM operation failed")
)

// Error is an error answer from the device API: the HTTP status, the
// body's errorCode, trackingId and message (quote the trackingId to
// Microsoft support), and Retry-After when the service gave one. It is
// the service API's error type; Op names the step, as "register dev-1".
type Error = enroll.ServiceError
