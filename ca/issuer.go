// Package ca issues device certificates for X.509 attestation: from a
// local CA kept in a folder (its key encrypted, or in a PKCS#11 token or a
// TPM through go.step.sm/crypto/kms), or from the factory's step-ca
// through its API with a JWK provisioner. Both apply the same signing
// policy and check what they issue in the same way.
package ca

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"
)

// Issuer signs board CSRs.
//
// Issue checks csr against the signing policy for registrationID (a
// *PolicyError if refused), has it signed, and checks the result: the CN
// is the registration ID, the key is the CSR's, the chain verifies to the
// root for client authentication. Issue is safe for concurrent use.
//
// Chain returns the issuing CA's certificates, the intermediate first and
// the root last.
type Issuer interface {
	Issue(ctx context.Context, csr *x509.CertificateRequest, registrationID string) (*Certificate, error)
	Chain(ctx context.Context) ([]*x509.Certificate, error)
	Close() error
}

var (
	_ Issuer = (*Local)(nil)
	_ Issuer = (*Remote)(nil)
)

// ErrIssued means the CA returned a certificate that is not a device
// certificate for the board: a misconfigured template or provisioner.
var ErrIssued = errors.New("issued certificate is not acceptable")

// Certificate is an issued device certificate with what the records keep.
type Certificate struct {
	// Chain is the device certificate followed by the intermediates,
	// without the root: what the board presents to DPS.
	Chain []*x509.Certificate
	// Root is the trust anchor the chain was verified against.
	Root *x509.Certificate

	Serial      string    // lowercase hex, no separators
	Subject     string    // the subject DN, RFC 4514
	NotAfter    time.Time // UTC
	Fingerprint string    // SHA-256 of the device certificate's DER, lowercase hex
}

// Leaf returns the device certificate.
func (c *Certificate) Leaf() *x509.Certificate { return c.Chain[0] }

// PEM returns the chain, device certificate first, as PEM.
func (c *Certificate) PEM() []byte { return EncodePEM(c.Chain...) }

// EncodePEM encodes certificates as consecutive PEM blocks.
func EncodePEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// Fingerprint is the SHA-256 of a certificate's DER, in lowercase hex: the
// form step-ca's --root-fingerprint and DPS thumbprints use.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// accept checks an issued chain (device certificate first, intermediates
// after) for csr and registrationID against root, and fills a Certificate.
// With signed, the caller made the device certificate itself with a key
// it has checked is chain[1]'s, under a chain it has checked to root (x509
// checks each signature it makes), so the signatures are not verified
// again.
func accept(chain []*x509.Certificate, root *x509.Certificate, csr *x509.CertificateRequest, registrationID string, signed bool) (*Certificate, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: no certificate", ErrIssued)
	}
	leaf := chain[0]
	if leaf.Subject.CommonName != registrationID {
		return nil, fmt.Errorf("%w: CN %q, want %q", ErrIssued, leaf.Subject.CommonName, registrationID)
	}
	if !samePublicKey(leaf.PublicKey, csr.PublicKey) {
		return nil, fmt.Errorf("%w: public key is not the CSR's (%s)", ErrIssued, reflect.TypeOf(leaf.PublicKey))
	}
	if leaf.IsCA {
		return nil, fmt.Errorf("%w: it is a CA certificate", ErrIssued)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return nil, fmt.Errorf("%w: not for client authentication", ErrIssued)
	}
	if signed {
		if len(chain) < 2 || !bytes.Equal(leaf.RawIssuer, chain[1].RawSubject) {
			return nil, fmt.Errorf("%w: issuer %q is not the intermediate", ErrIssued, leaf.Issuer)
		}
	} else if err := verifyClientChain(chain, root, leaf.NotBefore.Add(time.Minute)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssued, err)
	}
	return &Certificate{
		Chain:       chain,
		Root:        root,
		Serial:      hex.EncodeToString(leaf.SerialNumber.Bytes()),
		Subject:     leaf.Subject.String(),
		NotAfter:    leaf.NotAfter.UTC(),
		Fingerprint: Fingerprint(leaf),
	}, nil
}

// verifyClientChain verifies chain (device certificate first) to root for
// client authentication at time at.
func verifyClientChain(chain []*x509.Certificate, root *x509.Certificate, at time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CurrentTime:   at,
	})
	if err != nil {
		return fmt.Errorf("chain does not verify to root %s: %w", Fingerprint(root), err)
	}
	return nil
}

// samePublicKey reports whether a and b are the same public key.
func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
