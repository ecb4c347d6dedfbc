package enroll

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Conditions callers branch on. A *ServiceError matches the one for its
// HTTP status with errors.Is.
var (
	ErrBadRequest   = errors.New("request refused as invalid (400)")
	ErrUnauthorized = errors.New("not authorised (401)")
	ErrForbidden    = errors.New("forbidden (403)")
	ErrNotFound     = errors.New("not found (404)")
	ErrConflict     = errors.New("already exists (409)")
	ErrPrecondition = errors.New("etag does not match (412)")
	ErrTooLarge     = errors.New("request too large (413)")
	ErrThrottled    = errors.New("throttled (429)")
	ErrServer       = errors.New("service error (5xx)")

	// ErrUnavailable means no answer came: the connection failed or
	// dropped, or the request timed out. The request may or may not
	// have been carried out.
	ErrUnavailable = errors.New("DPS unreachable")
	// ErrUntrusted means the server's TLS certificate did not verify
	// (an unknown authority, another host name, expired): no request was
	// sent. Trusting the right CA (Config.CAFile) is the only cure.
	ErrUntrusted = errors.New("DPS server certificate not trusted")
	// ErrNoHost means the service's host name does not resolve (the DNS
	// says there is no such name): no request was sent. A name server
	// that does not answer is ErrUnavailable instead.
	ErrNoHost = errors.New("DPS host name not found")
	// ErrInvalid means the client refused to send a request (an invalid
	// registration ID, too many items): nothing went on the wire.
	ErrInvalid = errors.New("invalid request")
)

// DPS-style six-digit error codes (HTTP status and a detail). The service
// publishes few of them; 401002 and 404201 are seen from the real service,
// the others are this package's and its emulator's.
const (
	CodeBadRequest        = 400000
	CodeAPIVersion        = 400001
	CodeBadBody           = 400002
	CodeRegistrationID    = 400004
	CodeBulkTooMany       = 400010
	CodeBadQuery          = 400011
	CodeUnauthorized      = 401002
	CodeNotFound          = 404201
	CodeGroupNotFound     = 404202
	CodeMethodNotAllowed  = 405000
	CodeConflict          = 409201
	CodePrecondition      = 412201
	CodeTooLarge          = 413000
	CodeUnsupportedType   = 415000
	CodeThrottled         = 429001
	CodeInternal          = 500000
	CodeServerUnavailable = 503000
)

// ServiceError is an error answer from DPS: the HTTP status, the body's
// errorCode, trackingId and message (quote the trackingId to Microsoft
// support), and Retry-After when the service gave one.
type ServiceError struct {
	Op         string // "PUT /enrollments/board-1"
	Status     int
	Code       int
	TrackingID string
	Message    string
	RetryAfter time.Duration
}

func (e *ServiceError) Error() string {
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
func (e *ServiceError) Is(target error) bool {
	return statusError(e.Status) == target
}

// Transient reports whether the request may succeed if sent again later:
// 429, 5xx (the service's own advice), or no answer at all.
func Transient(err error) bool {
	return errors.Is(err, ErrThrottled) || errors.Is(err, ErrServer) || errors.Is(err, ErrUnavailable)
}

// Permanent reports whether no request to the service can succeed with
// this client's configuration, whatever is sent and however often: the
// server's certificate is not trusted (ErrUntrusted), its host name does
// not resolve (ErrNoHost), or it refused the credentials (ErrUnauthorized:
// a wrong key or policy name; ErrForbidden: a policy without the
// permission). Neither the Client nor the Uploader retries these, and an
// Uploader stops at the first one.
func Permanent(err error) bool {
	return errors.Is(err, ErrUntrusted) || errors.Is(err, ErrNoHost) ||
		errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden)
}

// transportError tells apart, in the error of a request that got no
// answer, what no retry can mend (ErrUntrusted, ErrNoHost) from an
// outage (ErrUnavailable).
func transportError(err error) error {
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		host      x509.HostnameError
		invalid   x509.CertificateInvalidError
		roots     x509.SystemRootsError
		dns       *net.DNSError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &authority), errors.As(err, &host),
		errors.As(err, &invalid), errors.As(err, &roots):
		return ErrUntrusted
	case errors.As(err, &dns) && dns.IsNotFound:
		return ErrNoHost
	}
	return ErrUnavailable
}

func statusError(status int) error {
	switch {
	case status == http.StatusBadRequest:
		return ErrBadRequest
	case status == http.StatusUnauthorized:
		return ErrUnauthorized
	case status == http.StatusForbidden:
		return ErrForbidden
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusConflict:
		return ErrConflict
	case status == http.StatusPreconditionFailed:
		return ErrPrecondition
	case status == http.StatusRequestEntityTooLarge:
		return ErrTooLarge
	case status == http.StatusTooManyRequests:
		return ErrThrottled
	case status >= 500:
		return ErrServer
	}
	return nil
}
