package tpm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"zerotouch/internal/dpstpm"

	"zerotouch/internal/regid"
)

// KeyAlg is the algorithm of a signing key made in the TPM.
type KeyAlg string

// Signing key algorithms.
const (
	ECDSAP256 KeyAlg = "ecdsa-p256"
	RSA2048   KeyAlg = "rsa-2048"
)

// ParseKeyAlg checks a key algorithm's name, as configuration gives it.
func ParseKeyAlg(s string) (KeyAlg, error) {
	switch a := KeyAlg(strings.ToLower(s)); a {
	case ECDSAP256, RSA2048:
		return a, nil
	}
	return "", fmt.Errorf("key algorithm %q: want %s or %s", s, ECDSAP256, RSA2048)
}

// keyAttributes make a signing key that never leaves the TPM: fixedTPM
// and fixedParent forbid duplication, sensitiveDataOrigin means the TPM
// made the private part itself. It is not restricted, so it signs any
// digest (a CSR, a TLS handshake); it is protected against dictionary
// attacks like any user key.
var keyAttributes = tpm2.TPMAObject{
	FixedTPM:            true,
	FixedParent:         true,
	SensitiveDataOrigin: true,
	UserWithAuth:        true,
	SignEncrypt:         true,
}

// KeyTemplate returns the template of a signing key of this algorithm,
// with no fixed scheme so that the caller picks the hash.
func KeyTemplate(alg KeyAlg) (tpm2.TPMTPublic, error) {
	switch alg {
	case ECDSAP256:
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgECC,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: keyAttributes,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
				CurveID:   tpm2.TPMECCNistP256,
				KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
		}, nil
	case RSA2048:
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgRSA,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: keyAttributes,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
				KeyBits:   2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}, nil
	}
	return tpm2.TPMTPublic{}, fmt.Errorf("key algorithm %q: want %s or %s", alg, ECDSAP256, RSA2048)
}

// ErrNoKey: no signing key at the handle LoadSigner was given.
var ErrNoKey = errors.New("no signing key at the handle: provision the board first")

// SigningKey returns the board's signing key at handle as a crypto.Signer.
// If the handle is empty, it creates a key of alg under the SRK (creating
// the SRK first if need be) and persists it there; a re-run finds it and
// keeps it. A handle holding a key of another kind is ErrHandleInUse.
func (d *Device) SigningKey(ctx context.Context, alg KeyAlg, handle tpm2.TPMHandle) (*Signer, error) {
	tmpl, err := KeyTemplate(alg)
	if err != nil {
		return nil, d.fail("create signing key", err)
	}
	readStep := fmt.Sprintf("read signing key at 0x%08x", uint32(handle))
	if err := checkKeyHandle(handle); err != nil {
		return nil, d.fail(readStep, err)
	}
	if err := d.ctxErr(ctx, readStep); err != nil {
		return nil, err
	}
	p, err := d.readPublic(handle)
	switch {
	case err == nil:
		if err := checkKey(&p.pub, &tmpl); err != nil {
			return nil, d.fail(readStep, fmt.Errorf("%w (%v): %w", ErrHandleInUse, err, errKeyHint(handle)))
		}
		return &Signer{d: d, pub: p}, nil
	case !errors.Is(err, tpm2.TPMRCHandle):
		return nil, d.fail(readStep, err)
	}

	srk, err := d.SRK(ctx)
	if err != nil {
		return nil, err
	}
	step := fmt.Sprintf("create %s signing key", alg)
	if err := d.ctxErr(ctx, step); err != nil {
		return nil, err
	}
	parent := tpm2.AuthHandle{Handle: SRKHandle, Name: tpm2.TPM2BName{Buffer: srk.Name}, Auth: tpm2.PasswordAuth(nil)}
	created, err := tpm2.Create{ParentHandle: parent, InPublic: tpm2.New2B(tmpl)}.Execute(d.tpm)
	if err != nil {
		return nil, d.fail(step, tpmErr(err))
	}
	loaded, err := tpm2.Load{ParentHandle: parent, InPrivate: created.OutPrivate, InPublic: created.OutPublic}.Execute(d.tpm)
	if err != nil {
		return nil, d.fail("load the new signing key", tpmErr(err))
	}
	defer d.flush(loaded.ObjectHandle)
	persistStep := fmt.Sprintf("persist signing key at 0x%08x", uint32(handle))
	if err := d.evict(loaded.ObjectHandle, loaded.Name, handle); err != nil {
		return nil, d.fail(persistStep, err)
	}
	d.log.Info("signing key created and persisted", "alg", string(alg), "handle", fmt.Sprintf("0x%08x", uint32(handle)))
	if p, err = d.readPublic(handle); err != nil {
		return nil, d.fail(readStep, err)
	}
	p.Created = true
	return &Signer{d: d, pub: p}, nil
}

// LoadSigner returns the signing key already persisted at handle, of
// either algorithm; an empty handle is ErrNoKey.
func (d *Device) LoadSigner(ctx context.Context, handle tpm2.TPMHandle) (*Signer, error) {
	step := fmt.Sprintf("read signing key at 0x%08x", uint32(handle))
	if err := checkKeyHandle(handle); err != nil {
		return nil, d.fail(step, err)
	}
	if err := d.ctxErr(ctx, step); err != nil {
		return nil, err
	}
	p, err := d.readPublic(handle)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, d.fail(step, ErrNoKey)
	}
	if err != nil {
		return nil, d.fail(step, err)
	}
	for _, alg := range []KeyAlg{ECDSAP256, RSA2048} {
		tmpl, _ := KeyTemplate(alg)
		if checkKey(&p.pub, &tmpl) == nil {
			return &Signer{d: d, pub: p}, nil
		}
	}
	return nil, d.fail(step, fmt.Errorf("%w: not a signing key zerotouch makes: %w", ErrHandleInUse, errKeyHint(handle)))
}

// checkKeyHandle refuses handles outside the owner's persistent range
// (0x81000000-0x817FFFFF) and those the device SDK uses.
func checkKeyHandle(h tpm2.TPMHandle) error {
	switch {
	case h == EKHandle || h == SRKHandle || h == IdentityKeyHandle:
		return fmt.Errorf("%w: %#x is reserved for the device SDK's keys; choose another key handle", ErrHandleInUse, uint32(h))
	case h < 0x81000000 || h > 0x817FFFFF:
		return fmt.Errorf("%w: %#x is not a persistent handle of the owner (0x81000000-0x817fffff)", ErrHandleInUse, uint32(h))
	}
	return nil
}

func errKeyHint(h tpm2.TPMHandle) error {
	return fmt.Errorf("choose another key handle, or remove that key if nothing needs it (tpm2_evictcontrol -c %#x)", uint32(h))
}

// checkKey accepts a key of the template's type and size with the
// attributes that keep it in the TPM.
func checkKey(p, tmpl *tpm2.TPMTPublic) error {
	if p.Type != tmpl.Type {
		return fmt.Errorf("a %s key", dpstpm.AlgName(p.Type))
	}
	switch p.Type {
	case tpm2.TPMAlgECC:
		got, err1 := p.Parameters.ECCDetail()
		want, err2 := tmpl.Parameters.ECCDetail()
		if err1 != nil || err2 != nil || got.CurveID != want.CurveID {
			return errors.New("an ECC key on another curve")
		}
	case tpm2.TPMAlgRSA:
		got, err1 := p.Parameters.RSADetail()
		want, err2 := tmpl.Parameters.RSADetail()
		if err1 != nil || err2 != nil || got.KeyBits != want.KeyBits {
			return errors.New("an RSA key of another size")
		}
	}
	a := p.ObjectAttributes
	if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin || !a.SignEncrypt || a.Decrypt || a.Restricted || !a.UserWithAuth {
		return errors.New("a key with other attributes than a non-exportable signing key's")
	}
	return nil
}

// Signer is a signing key inside the TPM. Its private part never leaves
// the TPM: Sign sends the digest in and gets the signature back. It is
// safe for concurrent use only if its Device's transport is.
type Signer struct {
	d   *Device
	pub *Public
}

var _ crypto.Signer = (*Signer)(nil)

// Public returns the key's public half (*ecdsa.PublicKey or
// *rsa.PublicKey).
func (s *Signer) Public() crypto.PublicKey { return s.pub.Key }

// Key describes the key as the TPM holds it: handle, TPM2B_PUBLIC, and
// whether this run created it.
func (s *Signer) Key() *Public { return s.pub }

// Sign signs digest inside the TPM (TPM2_Sign, Part 3, 20.2): ECDSA, or
// RSASSA-PKCS1-v1_5 for an RSA key; RSA-PSS is refused, as TPMs differ on
// its salt length (so the key cannot serve RSA in TLS 1.3: use ECDSA
// there). The hash is opts.HashFunc(): SHA-256, or SHA-384 and -512 where
// the TPM implements them (many implement only SHA-1 and SHA-256).
// rand is unused: the TPM has its own.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	step := fmt.Sprintf("sign with the key at 0x%08x", uint32(s.pub.Handle))
	var h tpm2.TPMAlgID
	switch opts.HashFunc() {
	case crypto.SHA256:
		h = tpm2.TPMAlgSHA256
	case crypto.SHA384:
		h = tpm2.TPMAlgSHA384
	case crypto.SHA512:
		h = tpm2.TPMAlgSHA512
	default:
		return nil, s.d.fail(step, fmt.Errorf("hash %v is not supported: use SHA-256, -384 or -512", opts.HashFunc()))
	}
	if len(digest) != opts.HashFunc().Size() {
		return nil, s.d.fail(step, fmt.Errorf("digest of %d bytes for %v", len(digest), opts.HashFunc()))
	}
	var scheme tpm2.TPMTSigScheme
	switch s.pub.pub.Type {
	case tpm2.TPMAlgECC:
		scheme = tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: h})}
	case tpm2.TPMAlgRSA:
		if _, ok := opts.(*rsa.PSSOptions); ok {
			return nil, s.d.fail(step, errors.New("RSA-PSS is not supported: use PKCS #1 v1.5"))
		}
		scheme = tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgRSASSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSchemeHash{HashAlg: h})}
	}
	rsp, err := tpm2.Sign{
		KeyHandle:  tpm2.AuthHandle{Handle: s.pub.Handle, Name: tpm2.TPM2BName{Buffer: s.pub.Name}, Auth: tpm2.PasswordAuth(nil)},
		Digest:     tpm2.TPM2BDigest{Buffer: digest},
		InScheme:   scheme,
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(s.d.tpm)
	if err != nil {
		return nil, s.d.fail(step, tpmErr(err))
	}
	switch s.pub.pub.Type {
	case tpm2.TPMAlgECC:
		sig, err := rsp.Signature.Signature.ECDSA()
		if err != nil {
			return nil, s.d.fail(step, fmt.Errorf("%w: %w", ErrMalformed, err))
		}
		return asn1.Marshal(struct{ R, S *big.Int }{
			new(big.Int).SetBytes(sig.SignatureR.Buffer),
			new(big.Int).SetBytes(sig.SignatureS.Buffer),
		})
	default:
		sig, err := rsp.Signature.Signature.RSASSA()
		if err != nil {
			return nil, s.d.fail(step, fmt.Errorf("%w: %w", ErrMalformed, err))
		}
		return sig.Sig.Buffer, nil
	}
}

// CSR makes a certificate signing request signed by signer, whose subject
// is CN = registrationID and nothing else: the CA takes the rest from its
// template. The registration ID must be one DPS accepts for X.509 (at most
// 64 characters). It returns DER.
func CSR(signer crypto.Signer, registrationID string) ([]byte, error) {
	if err := regid.Check(registrationID, regid.MaxLenX509); err != nil {
		return nil, fmt.Errorf("make CSR: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: registrationID},
	}, signer)
	if err != nil {
		return nil, fmt.Errorf("make CSR for %s: %w", registrationID, err)
	}
	return der, nil
}
