package emulator

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// errContinuation means an x-ms-continuation token is not one this
// emulator gave for this kind of query.
var errContinuation = errors.New("invalid continuation token")

const continuationPrefix = "zt1:"

// Continuation token kinds: which query a token continues.
const (
	tagEnrollments   = 'e'
	tagGroups        = 'g'
	tagRegistrations = 'r'
)

// formatContinuation makes the opaque x-ms-continuation token for the
// query of kind tag (tagEnrollments, tagGroups, tagRegistrations) that
// resumes after the
// record with sequence number seq (> 0).
func formatContinuation(tag byte, seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(continuationPrefix + string(tag) + ":" + strconv.FormatInt(seq, 10)))
}

// parseContinuation reads a token formatContinuation made: its kind tag
// and the sequence number to resume after. It accepts only the canonical
// form, so that parseContinuation and formatContinuation round-trip.
// Errors wrap errContinuation.
func parseContinuation(token string) (byte, int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: not base64url", errContinuation)
	}
	s, ok := strings.CutPrefix(string(b), continuationPrefix)
	if !ok || len(s) < 3 || s[1] != ':' {
		return 0, 0, fmt.Errorf("%w: not made by this emulator", errContinuation)
	}
	tag, num := s[0], s[2:]
	if tag != tagEnrollments && tag != tagGroups && tag != tagRegistrations {
		return 0, 0, fmt.Errorf("%w: unknown kind %q", errContinuation, tag)
	}
	seq, err := strconv.ParseInt(num, 10, 64)
	if err != nil || seq <= 0 || num[0] == '0' || num[0] == '+' {
		return 0, 0, fmt.Errorf("%w: position %q is not a positive number", errContinuation, num)
	}
	return tag, seq, nil
}
