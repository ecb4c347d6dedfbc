package device

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// VerifyIssuedChain checks a chain DPS issued for a CSR, as device.json
// describes issuedCertificateChain (api-version 2026-04-01): the device
// certificate first, then the intermediates, each the issuer of the one
// before, and the root last.
//
// The device certificate must carry pub, the CSR's public key, and the CN
// regID (compared case-insensitively, as DPS compares registration IDs),
// and must not be a CA. A nil pub leaves the key unchecked, for a checker
// that never saw the CSR (a station reading the chain back from a board
// that checked it). The chain must verify at time at to its last
// certificate, a self-signed root; when roots is not nil, to one of roots
// instead. Key usages are not constrained: the credential policy sets
// them. Errors wrap ErrCertificate. Safe for concurrent use.
func VerifyIssuedChain(chain []*x509.Certificate, pub crypto.PublicKey, regID string, roots *x509.CertPool, at time.Time) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrCertificate}, args...)...)
	}
	if len(chain) < 2 {
		return bad("%d certificate(s): want the device certificate and at least its root", len(chain))
	}
	leaf, root := chain[0], chain[len(chain)-1]
	if pub != nil {
		if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(pub) {
			return bad("the device certificate's key is not the CSR's")
		}
	}
	if !strings.EqualFold(leaf.Subject.CommonName, regID) {
		return bad("the device certificate's CN %q is not the registration ID %q", leaf.Subject.CommonName, regID)
	}
	if leaf.IsCA {
		return bad("the device certificate %q is a CA certificate", leaf.Subject.CommonName)
	}
	if !bytes.Equal(root.RawIssuer, root.RawSubject) || root.CheckSignatureFrom(root) != nil {
		return bad("the chain's last certificate %q is not a self-signed root", root.Subject)
	}
	for i := 1; i < len(chain); i++ {
		if err := chain[i-1].CheckSignatureFrom(chain[i]); err != nil {
			return bad("certificate %d (%q) is not signed by certificate %d (%q): %v", i-1, chain[i-1].Subject, i, chain[i].Subject, err)
		}
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if opts.Roots == nil {
		opts.Roots = x509.NewCertPool()
		opts.Roots.AddCert(root)
	}
	for _, c := range chain[1 : len(chain)-1] {
		opts.Intermediates.AddCert(c)
	}
	if roots != nil {
		opts.Intermediates.AddCert(root) // a root cross-signed under a pinned one
	}
	if _, err := leaf.Verify(opts); err != nil {
		what := "its root"
		if roots != nil {
			what = "the pinned roots"
		}
		return bad("the chain does not verify to %s: %v", what, err)
	}
	return nil
}

// Lookup asks DPS for the device's registration as it stands: the
// registration status lookup (device.json,
// RuntimeRegistration_DeviceRegistrationStatusLookup, POST
// /{idScope}/registrations/{registrationId}), with the device's
// credentials as Register sends them. It returns the registration
// whatever its status (assigning, assigned, failed, ...); it never holds
// an issued chain, which DPS returns with the registration's outcome only.
// A TPM device signs its token with the key its registration imported
// (the emulator seals the challenge's key again as the device key); the
// TPM result's key is not imported again.
//
// A Config.CSR is not sent (device.json allows no csr in a status
// lookup): the Config a device registers with serves for its lookup too.
// Errors: ErrConfig; an
// *Error matching ErrNotFound (the device has not registered, or is not
// enrolled), ErrUnauthorized or ErrBadRequest; ErrUnavailable,
// ErrProtocol, ErrTPM or ctx's error. Safe for concurrent use.
func Lookup(ctx context.Context, cfg Config) (*Result, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	defer c.close()
	op := "look up " + c.regID
	b, err := json.Marshal(deviceRegistration{RegistrationID: c.regID})
	if err != nil {
		return nil, fmt.Errorf("%s: encode: %w", op, err)
	}
	resp, err := c.send(ctx, op, http.MethodPost, c.base+"?api-version="+url.QueryEscape(c.cfg.APIVersion), b)
	if err != nil {
		return nil, err
	}
	if resp.status != http.StatusOK {
		return nil, decodeError(op, resp)
	}
	var rs registrationResult
	if err := json.Unmarshal(resp.body, &rs); err != nil {
		return nil, fmt.Errorf("%s: %w: answer is not a DeviceRegistrationResult: %v", op, ErrProtocol, err)
	}
	res := &Result{RegistrationID: c.regID}
	if err := rs.fill(res); err != nil {
		return res, fmt.Errorf("%s: %w", op, err)
	}
	return res, nil
}
