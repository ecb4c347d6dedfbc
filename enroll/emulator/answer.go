package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"zerotouch/enroll"
)

const contentTypeJSON = "application/json; charset=utf-8"

// apiError is an error answer: status, DPS error code and message.
type apiError struct {
	status     int
	code       int
	msg        string
	info       map[string]string
	retryAfter int    // seconds, for 429
	allow      string // Allow header, for 405
	fault      bool   // injected
	cause      error  // an internal failure, logged at error level
	logMsg     string // logged instead of msg when msg might quote a credential
	body       any    // answered instead of the error body (the TPM challenge)
	challenge  bool   // a TPM challenge, not a refusal
	trackingID string // set when written
}

// Error makes an *apiError an error, so that it can end a transaction.
func (a *apiError) Error() string { return a.msg }

func (a *apiError) logMessage() string {
	if a.logMsg != "" {
		return a.logMsg
	}
	return a.msg
}

func badRequest(code int, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, msg: fmt.Sprintf(format, args...)}
}

func internalError(what string, err error) *apiError {
	return &apiError{status: http.StatusInternalServerError, code: enroll.CodeInternal,
		msg: "internal error: " + what, cause: fmt.Errorf("%s: %w", what, err)}
}

// writeError writes a as DPS does: the ProvisioningServiceErrorDetails
// body and the x-ms-error-code header.
func (e *Emulator) writeError(w http.ResponseWriter, a *apiError) {
	a.trackingID = newUUID()
	if a.body != nil {
		if b, err := json.Marshal(a.body); err == nil {
			writeRaw(w, a.status, b)
			return
		}
	}
	body := enroll.ErrorBody{
		ErrorCode:    a.code,
		TrackingID:   a.trackingID,
		Message:      a.msg,
		Info:         a.info,
		TimestampUTC: e.now().UTC().Format(time.RFC3339Nano),
	}
	h := w.Header()
	h.Set("Content-Type", contentTypeJSON)
	h.Set("x-ms-error-code", strconv.Itoa(a.code))
	if a.allow != "" {
		h.Set("Allow", a.allow)
	}
	if a.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(a.retryAfter))
	}
	w.WriteHeader(a.status)
	json.NewEncoder(w).Encode(body)
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) *apiError {
	b, err := json.Marshal(v)
	if err != nil {
		return internalError("encode the answer", err)
	}
	writeRaw(w, status, b)
	return nil
}

func writeRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", contentTypeJSON)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// newUUID makes a random (version 4) UUID, for tracking IDs and etags.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
