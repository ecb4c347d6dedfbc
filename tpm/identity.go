package tpm

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"zerotouch/internal/dpstpm"
)

// IdentityKeyHandle is where the device SDKs persist the key DPS issues
// (0x81000100, DPS_ID_KEY_HANDLE in hsm_client_tpm.c).
const IdentityKeyHandle = tpm2.TPMHandle(0x81000100)

// Errors of the DPS TPM challenge, each wrapped in an *Error.
var (
	// ErrWrongTPM: TPM2_ActivateCredential refused the challenge, which
	// was made for another TPM's endorsement key or another storage root
	// key.
	ErrWrongTPM = errors.New("the DPS challenge was made for another TPM: the endorsement key or storage root key enrolled is not this board's (check that the enrollment belongs to this board, and that its TPM was not cleared since its EK and SRK were read)")
	// ErrBadChallenge: the activation blob is malformed, carries no
	// HMAC-SHA256 key, or its key does not import under the SRK.
	ErrBadChallenge = errors.New("the DPS challenge does not import: it is damaged, or its key was not wrapped for this TPM's storage root key; retry the registration, and report it if it recurs")
	// ErrNoIdentityKey: nothing persisted at IdentityKeyHandle.
	ErrNoIdentityKey = errors.New("no DPS identity key persisted at 0x81000100: the board has not completed a DPS TPM challenge")
)

// innerKeyBits is the inner wrapper of the DPS key: AES-128-CFB, as the C
// and C# device SDKs import it.
const innerKeyBits = 128

// ImportIdentityKey imports a DPS activation blob (the "authenticationKey"
// of DPS's 401 challenge or of its final registrationState) the way the
// device SDKs do (hsm_client_tpm.c insert_key_in_tpm):
//
//  1. TPM2_ActivateCredential (Part 3, 12.5) with the SRK as the activate
//     handle and the EK as the key handle, the EK authorized by a policy
//     session with TPM2_PolicySecret(TPM_RH_ENDORSEMENT): this releases
//     the inner wrapper key, and only on the TPM the blob was made for;
//  2. TPM2_Import (Part 3, 13.3) of the HMAC key under the SRK, inner
//     wrapper AES-128-CFB;
//  3. TPM2_Load, then TPM2_EvictControl: any object at IdentityKeyHandle
//     is evicted, and the new key persisted there.
//
// The EK and SRK are read (or made) as EK and SRK do. A blob made for
// another TPM is ErrWrongTPM; one that is malformed or does not import is
// ErrBadChallenge. Until step 3 the old key stays in place: a failed
// import leaves the board's identity as it was. Every transient object
// and session is flushed on every path.
func (d *Device) ImportIdentityKey(ctx context.Context, blob []byte) error {
	const parseStep = "read the DPS challenge"
	if err := d.ctxErr(ctx, parseStep); err != nil {
		return err
	}
	b, err := dpstpm.Parse(blob)
	if err != nil {
		return d.fail(parseStep, fmt.Errorf("%w: %w", ErrBadChallenge, err))
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](b.Public)
	if err != nil {
		return d.fail(parseStep, fmt.Errorf("%w: the key's public area: %w", ErrBadChallenge, err))
	}
	if err := checkIdentityKey(pub); err != nil {
		return d.fail(parseStep, fmt.Errorf("%w: the challenge carries %w", ErrBadChallenge, err))
	}

	ek, err := d.EK(ctx)
	if err != nil {
		return err
	}
	srk, err := d.SRK(ctx)
	if err != nil {
		return err
	}
	srkAuth := tpm2.AuthHandle{Handle: SRKHandle, Name: tpm2.TPM2BName{Buffer: srk.Name}, Auth: tpm2.PasswordAuth(nil)}

	const activateStep = "activate the DPS credential"
	if err := d.ctxErr(ctx, activateStep); err != nil {
		return err
	}
	innerKey, err := d.activateCredential(ek, srkAuth, b)
	if err != nil {
		return d.fail(activateStep, err)
	}

	const importStep = "import the DPS identity key"
	if err := d.ctxErr(ctx, importStep); err != nil {
		return err
	}
	public := tpm2.BytesAs2B[tpm2.TPMTPublic](b.Public)
	imported, err := tpm2.Import{
		ParentHandle:  srkAuth,
		EncryptionKey: tpm2.TPM2BData{Buffer: innerKey},
		ObjectPublic:  public,
		Duplicate:     tpm2.TPM2BPrivate{Buffer: b.Duplicate},
		InSymSeed:     tpm2.TPM2BEncryptedSecret{Buffer: b.InSymSeed},
		Symmetric: tpm2.TPMTSymDef{
			Algorithm: tpm2.TPMAlgAES,
			KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(innerKeyBits)),
			Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
		},
	}.Execute(d.tpm)
	if err != nil {
		return d.fail(importStep, d.challengeErr(err))
	}

	const loadStep = "load the DPS identity key"
	if err := d.ctxErr(ctx, loadStep); err != nil {
		return err
	}
	loaded, err := tpm2.Load{ParentHandle: srkAuth, InPrivate: imported.OutPrivate, InPublic: public}.Execute(d.tpm)
	if err != nil {
		return d.fail(loadStep, d.challengeErr(err))
	}
	defer d.flush(loaded.ObjectHandle)

	persistStep := fmt.Sprintf("persist the DPS identity key at 0x%08x", uint32(IdentityKeyHandle))
	if err := d.ctxErr(ctx, persistStep); err != nil {
		return err
	}
	old, err := tpm2.ReadPublic{ObjectHandle: IdentityKeyHandle}.Execute(d.tpm)
	replaced := err == nil
	switch {
	case replaced:
		if err := d.evict(IdentityKeyHandle, old.Name, IdentityKeyHandle); err != nil {
			return d.fail(fmt.Sprintf("remove the old DPS identity key at 0x%08x", uint32(IdentityKeyHandle)), err)
		}
	case !errors.Is(err, tpm2.TPMRCHandle):
		return d.fail(persistStep, tpmErr(err))
	}
	if err := d.evict(loaded.ObjectHandle, loaded.Name, IdentityKeyHandle); err != nil {
		return d.fail(persistStep, err)
	}
	d.log.Info("DPS identity key imported and persisted", "handle", fmt.Sprintf("0x%08x", uint32(IdentityKeyHandle)), "replaced", replaced)
	return nil
}

// activateCredential runs TPM2_ActivateCredential on the blob's
// credential and returns the inner wrapper key it releases. The EK's
// policy session is flushed whatever happens.
func (d *Device) activateCredential(ek *Public, srkAuth tpm2.AuthHandle, b *dpstpm.Blob) ([]byte, error) {
	sess, closeSess, err := tpm2.PolicySession(d.tpm, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return nil, fmt.Errorf("start the EK's policy session: %w", tpmErr(err))
	}
	defer func() {
		if err := closeSess(); err != nil {
			d.log.Warn("flush the EK's policy session", "err", err)
		}
	}()
	_, err = tpm2.PolicySecret{
		AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		PolicySession: sess.Handle(),
		NonceTPM:      sess.NonceTPM(),
	}.Execute(d.tpm)
	if err != nil {
		return nil, fmt.Errorf("authorize the EK (PolicySecret): %w", tpmErr(err))
	}
	rsp, err := tpm2.ActivateCredential{
		ActivateHandle: srkAuth,
		KeyHandle:      tpm2.AuthHandle{Handle: EKHandle, Name: tpm2.TPM2BName{Buffer: ek.Name}, Auth: sess},
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: b.CredentialBlob},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: b.Secret},
	}.Execute(d.tpm)
	switch {
	case errors.Is(err, tpm2.TPMRCValue), errors.Is(err, tpm2.TPMRCIntegrity), errors.Is(err, tpm2.TPMRCSize),
		errors.Is(err, tpm2.TPMRCFailure) && d.working():
		// The EK could not decrypt the secret (another EK), or the
		// credential's HMAC, which covers the SRK's Name, did not match
		// (another SRK, or a damaged blob). libtpms (swtpm) reports a
		// secret its EK cannot decrypt as TPM_RC_FAILURE, yet keeps
		// working: only a TPM still in failure mode afterwards has failed.
		return nil, fmt.Errorf("%w (%w)", ErrWrongTPM, err)
	case err != nil:
		return nil, tpmErr(err)
	case len(rsp.CertInfo.Buffer) != innerKeyBits/8:
		return nil, fmt.Errorf("%w: the credential is a %d-byte key, want an AES-%d key", ErrBadChallenge, len(rsp.CertInfo.Buffer), innerKeyBits)
	}
	return rsp.CertInfo.Buffer, nil
}

// working reports whether the TPM is out of failure mode, where it
// refuses every command but TPM2_GetCapability and TPM2_GetTestResult
// (Part 1, failure mode): it asks for a random byte.
func (d *Device) working() bool {
	_, err := tpm2.GetRandom{BytesRequested: 1}.Execute(d.tpm)
	return err == nil
}

// challengeErr translates an Import or Load failure: the TPM's refusal of
// the blob's contents (a bad size, value, integrity or key; or, from
// libtpms, TPM_RC_FAILURE for a seed the SRK cannot decrypt) is
// ErrBadChallenge; the rest as tpmErr does.
func (d *Device) challengeErr(err error) error {
	for _, rc := range []tpm2.TPMRC{tpm2.TPMRCValue, tpm2.TPMRCIntegrity, tpm2.TPMRCSize, tpm2.TPMRCKey, tpm2.TPMRCKeySize, tpm2.TPMRCAttributes, tpm2.TPMRCType, tpm2.TPMRCHash, tpm2.TPMRCScheme, tpm2.TPMRCInsufficient} {
		if errors.Is(err, rc) {
			return fmt.Errorf("%w (%w)", ErrBadChallenge, err)
		}
	}
	if errors.Is(err, tpm2.TPMRCFailure) && d.working() {
		return fmt.Errorf("%w (%w)", ErrBadChallenge, err)
	}
	return tpmErr(err)
}

// checkIdentityKey accepts an unrestricted HMAC-SHA256 signing key, the
// only kind IdentityHMAC uses.
func checkIdentityKey(p *tpm2.TPMTPublic) error {
	if p.Type != tpm2.TPMAlgKeyedHash {
		return fmt.Errorf("a %s key, not an HMAC key", dpstpm.AlgName(p.Type))
	}
	parms, err := p.Parameters.KeyedHashDetail()
	if err != nil || parms.Scheme.Scheme != tpm2.TPMAlgHMAC {
		return errors.New("a keyed-hash object that is not an HMAC key")
	}
	scheme, err := parms.Scheme.Details.HMAC()
	if err != nil || scheme.HashAlg != tpm2.TPMAlgSHA256 {
		return errors.New("an HMAC key for another hash than SHA-256")
	}
	if a := p.ObjectAttributes; !a.SignEncrypt || a.Restricted || a.Decrypt {
		return errors.New("an HMAC key not usable for signing")
	}
	return nil
}

// hmacInputMin is the largest TPM2_HMAC buffer IdentityHMAC sends without
// asking the TPM: the MAX_DIGEST_BUFFER of the reference implementation
// and of PC Client TPMs.
const hmacInputMin = 1024

// IdentityHMAC computes HMAC-SHA256 of data with the key persisted at
// IdentityKeyHandle, inside the TPM: TPM2_HMAC (Part 3, 15.5), or
// TPM2_HMAC_Start, TPM2_SequenceUpdate and TPM2_SequenceComplete (Part 3,
// 17.2, 17.4, 17.5) when data exceeds the TPM's input buffer. This is how
// the device signs its SAS tokens for DPS. No key there is
// ErrNoIdentityKey; a key that is not an HMAC-SHA256 key is
// ErrHandleInUse.
func (d *Device) IdentityHMAC(ctx context.Context, data []byte) ([]byte, error) {
	step := fmt.Sprintf("HMAC with the DPS identity key at 0x%08x", uint32(IdentityKeyHandle))
	if err := d.ctxErr(ctx, step); err != nil {
		return nil, err
	}
	rp, err := tpm2.ReadPublic{ObjectHandle: IdentityKeyHandle}.Execute(d.tpm)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, d.fail(step, ErrNoIdentityKey)
	}
	if err != nil {
		return nil, d.fail(step, tpmErr(err))
	}
	pub, err := rp.OutPublic.Contents()
	if err != nil {
		return nil, d.fail(step, fmt.Errorf("%w: public area: %w", ErrMalformed, err))
	}
	if err := checkIdentityKey(pub); err != nil {
		return nil, d.fail(step, fmt.Errorf("%w: the DPS identity key handle holds %w: find what put it there before clearing it (tpm2_evictcontrol -c 0x81000100)", ErrHandleInUse, err))
	}
	key := tpm2.AuthHandle{Handle: IdentityKeyHandle, Name: rp.Name, Auth: tpm2.PasswordAuth(nil)}

	chunk := hmacInputMin
	if len(data) > chunk {
		chunk = d.inputBufferMax()
	}
	if len(data) <= chunk {
		rsp, err := tpm2.Hmac{Handle: key, Buffer: tpm2.TPM2BMaxBuffer{Buffer: data}, HashAlg: tpm2.TPMAlgSHA256}.Execute(d.tpm)
		if err != nil {
			return nil, d.fail(step, tpmErr(err))
		}
		return rsp.OutHMAC.Buffer, nil
	}
	sum, err := d.hmacSequence(ctx, step, key, data, chunk)
	if err != nil {
		return nil, d.fail(step, err)
	}
	return sum, nil
}

// hmacSequence computes the HMAC of data in chunks through an HMAC
// sequence object, which is flushed if the sequence does not complete.
func (d *Device) hmacSequence(ctx context.Context, step string, key tpm2.AuthHandle, data []byte, chunk int) ([]byte, error) {
	start, err := tpm2.HmacStart{Handle: key, HashAlg: tpm2.TPMAlgSHA256}.Execute(d.tpm)
	if err != nil {
		return nil, tpmErr(err)
	}
	seq := tpm2.AuthHandle{Handle: start.SequenceHandle, Auth: tpm2.PasswordAuth(nil)}
	complete := false
	defer func() {
		if !complete {
			d.flush(start.SequenceHandle)
		}
	}()
	for len(data) > chunk {
		if err := d.ctxErr(ctx, step); err != nil {
			return nil, err
		}
		if _, err := (tpm2.SequenceUpdate{SequenceHandle: seq, Buffer: tpm2.TPM2BMaxBuffer{Buffer: data[:chunk]}}).Execute(d.tpm); err != nil {
			return nil, tpmErr(err)
		}
		data = data[chunk:]
	}
	rsp, err := tpm2.SequenceComplete{SequenceHandle: seq, Buffer: tpm2.TPM2BMaxBuffer{Buffer: data}, Hierarchy: tpm2.TPMRHNull}.Execute(d.tpm)
	if err != nil {
		return nil, tpmErr(err)
	}
	complete = true // TPM2_SequenceComplete flushed the sequence object
	return rsp.Result.Buffer, nil
}

// inputBufferMax returns the largest parameter the TPM takes
// (TPM_PT_INPUT_BUFFER), or hmacInputMin if it will not say.
func (d *Device) inputBufferMax() int {
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTInputBuffer),
		PropertyCount: 1,
	}.Execute(d.tpm)
	if err != nil {
		return hmacInputMin
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err == nil && len(props.TPMProperty) == 1 && props.TPMProperty[0].Property == tpm2.TPMPTInputBuffer {
		if v := int(props.TPMProperty[0].Value); v >= 64 && v <= 1<<14 {
			return v
		}
	}
	return hmacInputMin
}
