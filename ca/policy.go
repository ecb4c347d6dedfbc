package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"zerotouch/internal/regid"
)

// Reasons a CSR is refused. A *PolicyError wraps exactly one of them, so
// callers branch with errors.Is.
var (
	ErrMalformed      = errors.New("CSR cannot be parsed")
	ErrSignature      = errors.New("CSR signature does not verify")
	ErrKeyType        = errors.New("key type not allowed")
	ErrCommonName     = errors.New("CSR common name is not the registration ID")
	ErrRegistrationID = errors.New("registration ID not valid for an X.509 enrollment")
	ErrRequestsCA     = errors.New("CSR asks for a CA certificate")
	ErrSANs           = errors.New("CSR asks for subject alternative names")
)

// PolicyError is a CSR refused by the signing policy.
type PolicyError struct {
	RegistrationID string
	Rule           error  // one of the Err* reasons above
	Detail         string // what exactly was wrong
}

func (e *PolicyError) Error() string {
	s := "refuse CSR"
	if e.RegistrationID != "" {
		s += fmt.Sprintf(" for %q", e.RegistrationID)
	}
	s += ": " + e.Rule.Error()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *PolicyError) Unwrap() error { return e.Rule }

// KeyType names a kind of device key the policy can allow.
type KeyType string

const (
	ECDSAP256 KeyType = "ecdsa-p256"
	ECDSAP384 KeyType = "ecdsa-p384"
	// RSA is an RSA key of at least Policy.MinRSABits.
	RSA KeyType = "rsa"
)

// MinRSABits is the smallest RSA modulus any policy accepts.
const MinRSABits = 2048

// Policy is what a CSR must satisfy before a certificate is issued.
type Policy struct {
	// KeyTypes allowed for device keys. Empty allows all three.
	KeyTypes []KeyType `json:"keyTypes,omitempty"`
	// MinRSABits is the smallest RSA modulus allowed; 0 means 2048, and
	// less than 2048 is refused by Validate.
	MinRSABits int `json:"minRSABits,omitempty"`
}

// Validate reports a policy that names an unknown key type or allows RSA
// keys shorter than 2048 bits.
func (p Policy) Validate() error {
	for _, k := range p.KeyTypes {
		switch k {
		case ECDSAP256, ECDSAP384, RSA:
		default:
			return fmt.Errorf("policy: unknown key type %q (allowed: %s, %s, %s)", k, ECDSAP256, ECDSAP384, RSA)
		}
	}
	if p.MinRSABits != 0 && p.MinRSABits < MinRSABits {
		return fmt.Errorf("policy: minRSABits %d is below %d", p.MinRSABits, MinRSABits)
	}
	return nil
}

func (p Policy) allows(k KeyType) bool {
	return len(p.KeyTypes) == 0 || slices.Contains(p.KeyTypes, k)
}

func (p Policy) minRSA() int {
	if p.MinRSABits == 0 {
		return MinRSABits
	}
	return p.MinRSABits
}

var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

// Check applies the policy to csr for a board whose registration ID the
// station derived as registrationID. It returns nil or a *PolicyError.
//
// Only the public key and the common name are taken from a CSR; the
// subject and extensions of the certificate come from the template. A CSR
// that asks for more than a CN (SANs, or a CA certificate) is refused, so
// a board asking for something unexpected is noticed rather than
// silently trimmed.
func (p Policy) Check(csr *x509.CertificateRequest, registrationID string) error {
	refuse := func(rule error, format string, args ...any) error {
		return &PolicyError{RegistrationID: registrationID, Rule: rule, Detail: fmt.Sprintf(format, args...)}
	}
	if err := regid.Check(registrationID, regid.MaxLenX509); err != nil {
		return refuse(ErrRegistrationID, "%v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return refuse(ErrSignature, "%v", err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		var kt KeyType
		switch k.Curve {
		case elliptic.P256():
			kt = ECDSAP256
		case elliptic.P384():
			kt = ECDSAP384
		default:
			return refuse(ErrKeyType, "ECDSA on curve %s", k.Curve.Params().Name)
		}
		if !p.allows(kt) {
			return refuse(ErrKeyType, "%s (allowed: %s)", kt, p.allowed())
		}
	case *rsa.PublicKey:
		if !p.allows(RSA) {
			return refuse(ErrKeyType, "RSA (allowed: %s)", p.allowed())
		}
		if bits := k.N.BitLen(); bits < p.minRSA() {
			return refuse(ErrKeyType, "RSA %d bits, below %d", bits, p.minRSA())
		}
	default:
		return refuse(ErrKeyType, "%s (allowed: %s)", csr.PublicKeyAlgorithm, p.allowed())
	}
	if cn := csr.Subject.CommonName; cn != registrationID {
		return refuse(ErrCommonName, "CN is %q", cn)
	}
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidBasicConstraints) {
			continue
		}
		var bc struct {
			IsCA       bool `asn1:"optional"`
			MaxPathLen int  `asn1:"optional,default:-1"`
		}
		if _, err := asn1.Unmarshal(ext.Value, &bc); err != nil {
			return refuse(ErrMalformed, "basicConstraints: %v", err)
		}
		if bc.IsCA {
			return refuse(ErrRequestsCA, "basicConstraints CA:TRUE")
		}
	}
	var sans []string
	sans = append(sans, csr.DNSNames...)
	sans = append(sans, csr.EmailAddresses...)
	for _, ip := range csr.IPAddresses {
		sans = append(sans, ip.String())
	}
	for _, u := range csr.URIs {
		sans = append(sans, u.String())
	}
	if len(sans) > 0 {
		return refuse(ErrSANs, "%s", strings.Join(sans, ", "))
	}
	return nil
}

func (p Policy) allowed() string {
	ks := p.KeyTypes
	if len(ks) == 0 {
		ks = []KeyType{ECDSAP256, ECDSAP384, RSA}
	}
	var s []string
	for _, k := range ks {
		if k == RSA {
			s = append(s, fmt.Sprintf("rsa ≥ %d", p.minRSA()))
			continue
		}
		s = append(s, string(k))
	}
	return strings.Join(s, ", ")
}

// ParseCSR reads a CSR in PEM ("CERTIFICATE REQUEST" or "NEW CERTIFICATE
// REQUEST") or DER. Errors wrap ErrMalformed.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	der := b
	block, rest := pem.Decode(b)
	if block == nil && (len(b) == 0 || b[0] != 0x30) {
		// Neither PEM nor DER (a DER CSR is a SEQUENCE, 0x30): say so
		// rather than quote the ASN.1 parser.
		return nil, fmt.Errorf("%w: neither PEM (-----BEGIN CERTIFICATE REQUEST-----) nor DER PKCS#10", ErrMalformed)
	}
	if block != nil {
		switch block.Type {
		case "CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST":
		default:
			return nil, fmt.Errorf("%w: PEM block is %q, want CERTIFICATE REQUEST", ErrMalformed, block.Type)
		}
		if more, _ := pem.Decode(rest); more != nil {
			return nil, fmt.Errorf("%w: more than one PEM block", ErrMalformed)
		}
		der = block.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return csr, nil
}
