package device

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Conditions callers branch on. An *Error matches the one for its HTTP
// status with errors.Is; the others come wrapped with what failed.
var (
	// ErrConfig means Register was given a Config it cannot run with;
	// nothing went on the wire.
	ErrConfig = errors.New("invalid DPS device configuration")

	ErrBadRequest   = errors.New("request refused as invalid (400)")
	ErrUnauthorized = errors.New("not authorised (401)") // the key, certificate or TPM is not the enrolled one, or the token expired
	ErrNotFound     = errors.New("not found (404)")      // no enrollment for this device, another ID scope, or an unknown operation
	ErrThrottled    = errors.New("throttled (429)")
	ErrServer       = errors.New("service error (5xx)")

	// ErrUnavailable means no answer came, after the retries: the
	// connection failed or dropped, or the requests timed out.
	ErrUnavailable = errors.New("DPS unreachable")
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

	// ErrTPM means the TPM failed: importing DPS's challenge or key, or
	// signing the token. The TPM's own error is wrapped too.
	ErrTPM = errors.New("TPM operation failed")
)

// Error is an error answer from the device API: the HTTP status, the
// body's errorCode, trackingId and message (quote the trackingId to
// Microsoft support), and Retry-After when the service gave one.
type Error struct {
	Op         string // "register dev-1", "poll dev-1"
	Status     int
	Code       int
	TrackingID string
	Message    string
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: DPS answered %d %s", e.Op, e.Status, http.StatusText(e.Status))
	if e.Code != 0 {
		fmt.Fprintf(&b, " (errorCode %d)", e.Code)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.TrackingID != "" {
		fmt.Fprintf(&b, " [trackingId %s]", e.TrackingID)
	}
	return b.String()
}

// Is matches the sentinel for the HTTP status.
func (e *Error) Is(target error) bool {
	switch {
	case e.Status == http.StatusBadRequest:
		return target == ErrBadRequest
	case e.Status == http.StatusUnauthorized:
		return target == ErrUnauthorized
	case e.Status == http.StatusNotFound:
		return target == ErrNotFound
	case e.Status == http.StatusTooManyRequests:
		return target == ErrThrottled
	case e.Status >= 500:
		return target == ErrServer
	}
	return false
}

// transient reports whether a request may succeed if sent again.
func transient(err error) bool {
	return errors.Is(err, ErrThrottled) || errors.Is(err, ErrServer) || errors.Is(err, ErrUnavailable)
}
