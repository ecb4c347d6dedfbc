package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"zerotouch/internal/dpstpm"
	"zerotouch/internal/regid"
)

// EKTemplate returns the template the Azure device SDKs create the EK
// from (hsm_client_tpm.c): the TCG RSA-2048 EK template (SHA-256,
// AES-128-CFB, the EK policy) but with an empty unique field, where the
// TCG template has 256 zero bytes. The two make different keys from the
// same seed; only this one is the key a device's SDK will present.
func EKTemplate() tpm2.TPMTPublic {
	t := tpm2.RSAEKTemplate
	t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{})
	return t
}

// SRKTemplate returns the Azure SDKs' storage root key template: the TCG
// RSA-2048 SRK template (no DA, user auth, AES-128-CFB) with an empty
// unique field.
func SRKTemplate() tpm2.TPMTPublic {
	t := tpm2.RSASRKTemplate
	t.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{})
	return t
}

// Public is a key the TPM holds at a persistent handle, as the TPM
// reports it.
type Public struct {
	Handle tpm2.TPMHandle
	// TPM2B is the marshalled TPM2B_PUBLIC, with its 2-byte size prefix:
	// the bytes DPS receives as endorsementKey or storageRootKey.
	TPM2B []byte
	// Key is the public key: *rsa.PublicKey or *ecdsa.PublicKey.
	Key crypto.PublicKey
	// Created is true when this call created and persisted the key.
	Created bool
	// Name is the key's TPM name (nameAlg and digest of its public area).
	Name []byte

	pub tpm2.TPMTPublic
}

// EndorsementKey is the DPS attestation.tpm.endorsementKey: the TPM2B
// bytes in standard base64.
func (p *Public) EndorsementKey() string { return base64.StdEncoding.EncodeToString(p.TPM2B) }

// RegistrationID is the registration ID the device SDK derives from this
// key (see RegistrationID).
func (p *Public) RegistrationID() string { return RegistrationID(p.TPM2B) }

// Fingerprint is the hex SHA-256 of the key's DER SubjectPublicKeyInfo:
// the same figure for the EK as read from the TPM and as found in its
// certificate.
func (p *Public) Fingerprint() string {
	der, err := x509.MarshalPKIXPublicKey(p.Key)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// RegistrationID derives a TPM device's registration ID from its EK's
// TPM2B_PUBLIC bytes as every Azure device SDK does (prov_auth_client.c
// load_registration_id): SHA-256 over the bytes, RFC 4648 base32 in lower
// case, the padding stripped: 52 characters of [a-z2-7].
func RegistrationID(ekTPM2B []byte) string { return regid.FromEK(ekTPM2B) }

// EK returns the board's endorsement key from EKHandle. If the handle is
// empty, it creates the EK from EKTemplate in the endorsement hierarchy
// and persists it there (unless Options.NoCreate), so that the device's
// SDK reads the same key on first boot. A key at EKHandle that is not an
// RSA EK with the EK policy is ErrNotEK: it is reported, never replaced.
//
// Creating needs the endorsement and owner authorizations to be empty, as
// they are on a TPM fresh from its vendor; otherwise it is ErrAuth.
func (d *Device) EK(ctx context.Context) (*Public, error) {
	return d.persistent(ctx, "EK", EKHandle, tpm2.TPMRHEndorsement, EKTemplate(), !d.opts.NoCreate, checkEK)
}

// SRK returns the storage root key from SRKHandle, creating and
// persisting it from SRKTemplate in the owner hierarchy when the handle
// is empty. Options.NoCreate does not apply: the SRK is not an identity.
func (d *Device) SRK(ctx context.Context) (*Public, error) {
	return d.persistent(ctx, "SRK", SRKHandle, tpm2.TPMRHOwner, SRKTemplate(), true, checkSRK)
}

// persistent reads the key at handle, or creates it from tmpl under
// hierarchy and persists it at handle.
func (d *Device) persistent(ctx context.Context, what string, handle, hierarchy tpm2.TPMHandle, tmpl tpm2.TPMTPublic, create bool, check func(*tpm2.TPMTPublic) error) (*Public, error) {
	readStep := fmt.Sprintf("read %s at 0x%08x", what, uint32(handle))
	if err := d.ctxErr(ctx, readStep); err != nil {
		return nil, err
	}
	p, err := d.readPublic(handle)
	switch {
	case err == nil:
		if err := check(&p.pub); err != nil {
			return nil, d.fail(readStep, err)
		}
		return p, nil
	case !errors.Is(err, tpm2.TPMRCHandle):
		return nil, d.fail(readStep, err)
	case !create:
		return nil, d.fail(readStep, ErrNoEK)
	}

	createStep := fmt.Sprintf("create %s", what)
	if err := d.ctxErr(ctx, createStep); err != nil {
		return nil, err
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: hierarchy, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(d.tpm)
	if err != nil {
		return nil, d.fail(createStep, tpmErr(err))
	}
	defer d.flush(rsp.ObjectHandle)

	persistStep := fmt.Sprintf("persist %s at 0x%08x", what, uint32(handle))
	if err := d.ctxErr(ctx, persistStep); err != nil {
		return nil, err
	}
	if err := d.evict(rsp.ObjectHandle, rsp.Name, handle); err != nil {
		return nil, d.fail(persistStep, err)
	}
	d.log.Info("key created and persisted", "key", what, "handle", fmt.Sprintf("0x%08x", uint32(handle)))

	// Read it back as the SDK will: the persisted object is the truth.
	p, err = d.readPublic(handle)
	if err != nil {
		return nil, d.fail(readStep, err)
	}
	if !bytes.Equal(p.TPM2B, tpm2.Marshal(rsp.OutPublic)) {
		return nil, d.fail(readStep, fmt.Errorf("%w: the key read back differs from the key created", ErrMalformed))
	}
	p.Created = true
	return p, nil
}

// readPublic runs TPM2_ReadPublic (Part 3, 12.4) on handle.
func (d *Device) readPublic(handle tpm2.TPMHandle) (*Public, error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: handle}.Execute(d.tpm)
	if err != nil {
		return nil, tpmErr(err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("%w: public area: %w", ErrMalformed, err)
	}
	key, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %w", ErrMalformed, err)
	}
	return &Public{
		Handle: handle,
		TPM2B:  tpm2.Marshal(rsp.OutPublic),
		Key:    key,
		Name:   rsp.Name.Buffer,
		pub:    *pub,
	}, nil
}

// evict persists the transient object at handle (TPM2_EvictControl, Part
// 3, 28.5) with the owner's empty authorization.
func (d *Device) evict(obj tpm2.TPMHandle, name tpm2.TPM2BName, handle tpm2.TPMHandle) error {
	_, err := tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     &tpm2.NamedHandle{Handle: obj, Name: name},
		PersistentHandle: handle,
	}.Execute(d.tpm)
	return tpmErr(err)
}

// flush frees a transient object; a failure only costs a slot until the
// TPM's next reset, so it is logged, not returned.
func (d *Device) flush(h tpm2.TPMHandle) {
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(d.tpm); err != nil {
		d.log.Warn("flush transient TPM object", "handle", fmt.Sprintf("0x%08x", uint32(h)), "err", err)
	}
}

// ekPolicy is TPM2_PolicySecret(TPM_RH_ENDORSEMENT), the EK's authPolicy
// in the TCG and Azure templates.
var ekPolicy = tpm2.RSAEKTemplate.AuthPolicy.Buffer

// checkEK accepts an RSA restricted decryption key with the EK's
// attributes and policy: the Azure template's key or a vendor's EK made
// from the TCG template.
func checkEK(p *tpm2.TPMTPublic) error {
	a := p.ObjectAttributes
	var wrong []string
	if p.Type != tpm2.TPMAlgRSA {
		wrong = append(wrong, fmt.Sprintf("type %s, not RSA", dpstpm.AlgName(p.Type)))
	}
	if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin {
		wrong = append(wrong, "not fixed to the TPM")
	}
	if !a.Restricted || !a.Decrypt || a.SignEncrypt {
		wrong = append(wrong, "not a restricted decryption key")
	}
	if !a.AdminWithPolicy || a.UserWithAuth || !bytes.Equal(p.AuthPolicy.Buffer, ekPolicy) {
		wrong = append(wrong, "not the EK policy")
	}
	if len(wrong) > 0 {
		return fmt.Errorf("%w: the EK handle holds a key that is %s; the device SDK would present it as its EK and never provision: find what put it there before clearing it (tpm2_evictcontrol -c 0x81010001)", ErrNotEK, strings.Join(wrong, ", "))
	}
	return nil
}

// checkSRK accepts an RSA restricted decryption key usable with an empty
// password: what the device SDK imports its DPS key under.
func checkSRK(p *tpm2.TPMTPublic) error {
	a := p.ObjectAttributes
	var wrong []string
	if p.Type != tpm2.TPMAlgRSA {
		wrong = append(wrong, fmt.Sprintf("type %s, not RSA", dpstpm.AlgName(p.Type)))
	}
	if !a.FixedTPM || !a.FixedParent {
		wrong = append(wrong, "not fixed to the TPM")
	}
	if !a.Restricted || !a.Decrypt || a.SignEncrypt {
		wrong = append(wrong, "not a storage key")
	}
	if !a.UserWithAuth {
		wrong = append(wrong, "not usable with its password")
	}
	if len(wrong) > 0 {
		return fmt.Errorf("%w: the SRK handle holds a key that is %s: find what put it there before clearing it (tpm2_evictcontrol -c 0x81000001)", ErrHandleInUse, strings.Join(wrong, ", "))
	}
	return nil
}
