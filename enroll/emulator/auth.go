package emulator

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"zerotouch/enroll"
)

// authorize checks the request's SharedAccessSignature as DPS does
// (dps-notes §2.4): enroll.ParseSAS, then Verify with the primary and
// secondary keys against each name the service answers to. Failures are
// 401 with enroll.CodeUnauthorized and say what was wrong; the log gets
// only the kind of failure, never the token.
func (e *Emulator) authorize(r *http.Request) *apiError {
	unauth := func(kind, format string, args ...any) *apiError {
		return &apiError{status: http.StatusUnauthorized, code: enroll.CodeUnauthorized,
			msg: fmt.Sprintf(format, args...), logMsg: "unauthorized: " + kind}
	}
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	if h == "" {
		return unauth("missing", "the Authorization header is missing: send a SharedAccessSignature token made from the connection string")
	}
	if scheme, _, _ := strings.Cut(h, " "); strings.EqualFold(scheme, "Bearer") {
		return unauth("bearer", "Bearer (Microsoft Entra ID) tokens are not supported by the emulator: send a SharedAccessSignature token made from the connection string")
	}
	sas, err := enroll.ParseSAS(h)
	if err != nil {
		return unauth("malformed", "%v", err)
	}
	if sas.KeyName != "" && !strings.EqualFold(sas.KeyName, e.keyName) {
		return unauth("policy", "the SAS token names the policy %q; the emulator's policy is %q", sas.KeyName, e.keyName)
	}
	targets := e.audiences(r.Host)
	now := e.now()
	for _, t := range targets {
		err = sas.Verify(e.keys, t, now)
		if err == nil {
			return nil
		}
		// Expiry and signature do not depend on the target.
		if !errors.Is(err, enroll.ErrSASAudience) {
			break
		}
	}
	switch {
	case errors.Is(err, enroll.ErrSASExpired):
		return unauth("expired", "%v (more than %v ago): make a new token", err, enroll.MaxClockSkew)
	case errors.Is(err, enroll.ErrSASAudience):
		return unauth("audience", "the SAS token is signed for %q, which is not this service (%s)", sas.Resource, strings.Join(targets, ", "))
	case errors.Is(err, enroll.ErrSASSignature):
		return unauth("signature", "the SAS token's signature does not match the policy's primary or secondary key")
	}
	return unauth("invalid", "%v", err)
}

// audiences are the names a token's sr may carry: the Host header as
// sent, without its port, and each configured host name (and without its
// port), lower-cased, without repeats.
func (e *Emulator) audiences(host string) []string {
	var out []string
	add := func(h string) {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			return
		}
		for _, v := range []string{h, stripPort(h)} {
			if v != "" && !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	add(host)
	for _, h := range e.hostNames {
		add(h)
	}
	return out
}

// stripPort returns host without a :port, keeping IPv6 literals bare.
func stripPort(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
}
