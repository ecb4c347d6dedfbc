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
// secondary keys against each name the service answers to (audiences),
// never against the request's Host header: a token signed for another
// host is refused whatever Host the request names. Failures are 401 with
// enroll.CodeUnauthorized and say what was wrong; the log gets only the
// kind of failure, never the token.
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
	targets := e.audiences(r)
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

// audiences are the names a token's sr may carry, lower-cased, without
// repeats: the names the service answers to (Options.HostNames, to which
// Start adds the names of its certificate) and the address the
// connection came in on, each without a port and with the port the
// connection came in on (or the one it was configured with). They come
// from the server's side of the connection, not from the request: the
// Host header is the client's to choose.
func (e *Emulator) audiences(r *http.Request) []string {
	var local, port string
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && a != nil {
		local = a.String()
		_, port, _ = net.SplitHostPort(local)
	}
	var out []string
	add := func(v string) {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	addName := func(h string) {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			return
		}
		bare := stripPort(h)
		add(h)
		add(bare)
		if strings.Contains(bare, ":") {
			add("[" + bare + "]") // an IPv6 literal as a connection string's HostName carries it
		}
		if port != "" {
			add(net.JoinHostPort(bare, port))
		}
	}
	for _, h := range e.hostNames {
		addName(h)
	}
	addName(local)
	return out
}

// stripPort returns host without a :port, keeping IPv6 literals bare.
func stripPort(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
}
