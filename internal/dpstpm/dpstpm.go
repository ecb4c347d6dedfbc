// Package dpstpm builds and parses the activation blob of the Azure DPS
// TPM attestation: the "authenticationKey" DPS sends a TPM device in its
// 401 challenge and again in the final registrationState. The blob
// carries an HMAC-SHA256 key that only the TPM holding a given EK, with a
// given SRK, can import; the device signs its SAS tokens with that key
// inside the TPM.
//
// The server side is done in software, as TPM 2.0 Library Part 1
// describes it: MakeCredential's credential protection (section 24) to the
// EK, bound to the SRK's Name, carries a 16-byte key; that key is the
// inner wrapper, and a seed encrypted to the SRK the outer wrapper, of a
// duplicated KEYEDHASH object (section 23.3). The device recovers the
// inner key with TPM2_ActivateCredential and imports the object under its
// SRK with TPM2_Import (package tpm, Device.ImportIdentityKey).
//
// Layout and device steps: the Azure IoT C SDK's hsm_client_tpm.c
// (insert_key_in_tpm), summarised in dps-notes section 4.4.
//
// Everything here is safe for concurrent use; Challenge is as safe as the
// random source it is given.
package dpstpm

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// Key sizes.
const (
	// InnerKeySize is the inner wrapper's AES-128 key, the credential that
	// ActivateCredential releases: the device SDKs import with
	// AES-128-CFB, and Node's SDK takes the key length as the key size.
	InnerKeySize = 16
	// MinKeySize and MaxKeySize bound the HMAC-SHA256 key Challenge
	// wraps: no shorter than the SHA-256 output (RFC 2104, section 3), no
	// longer than the SHA-256 block, the largest HMAC key a TPM imports.
	MinKeySize = 32
	MaxKeySize = 64
)

// Errors Challenge returns, wrapped with the reason.
var (
	// ErrBadEK: the endorsement key is not one a DPS challenge can be made
	// for (an RSA-2048 restricted decryption key with AES-CFB protection).
	ErrBadEK = errors.New("endorsement key unusable for the TPM challenge")
	// ErrBadSRK: the storage root key is not an RSA storage key with
	// AES-CFB protection.
	ErrBadSRK = errors.New("storage root key unusable for the TPM challenge")
	// ErrKeySize: the HMAC key is shorter than MinKeySize or longer than
	// MaxKeySize.
	ErrKeySize = errors.New("HMAC key size out of range")
)

// Labels of the KDFa derivations and the OAEP encryptions (Part 1,
// 24 and 23.3; OAEP labels end with a NUL byte).
const (
	labelIdentity  = "IDENTITY\x00"
	labelDuplicate = "DUPLICATE\x00"
	labelStorage   = "STORAGE"
	labelIntegrity = "INTEGRITY"
)

// hmacKeyAttributes are the attributes of the key Challenge wraps: an
// unrestricted HMAC signing key, used with its (empty) password. Import
// requires fixedTPM and fixedParent to be clear; sensitiveDataOrigin is
// clear as the key comes from outside; noDA is set because an empty
// password gains nothing from dictionary-attack protection, and a DA
// lockout would otherwise stop the device from signing its SAS tokens.
var hmacKeyAttributes = tpm2.TPMAObject{
	SignEncrypt:  true,
	UserWithAuth: true,
	NoDA:         true,
}

// Challenge builds the activation blob DPS sends in a 401's
// "authenticationKey" (and again in the final
// registrationState.tpm.authenticationKey): key, an HMAC-SHA256 key of
// MinKeySize to MaxKeySize bytes, wrapped so that only the TPM holding the
// EK ekTPM2B, with the SRK srkTPM2B, can import it.
//
// ekTPM2B and srkTPM2B are marshaled TPM2B_PUBLIC (a 2-byte size, then the
// TPMT_PUBLIC), as the device sends them in tpm.endorsementKey and
// tpm.storageRootKey once base64-decoded. The EK must be an RSA-2048
// restricted decryption key (ErrBadEK), the SRK an RSA storage key
// (ErrBadSRK), both with AES-CFB symmetric parameters as the TCG and Azure
// templates have. A key of the wrong size is ErrKeySize.
//
// The blob is TPM2B_ID_OBJECT ‖ TPM2B_ENCRYPTED_SECRET (MakeCredential to
// the EK, objectName = the SRK's Name, credential = a fresh 16-byte inner
// wrapper key) ‖ TPM2B_PRIVATE (the HMAC key duplicated with that inner
// wrapper and an outer wrapper keyed by a fresh seed) ‖
// TPM2B_ENCRYPTED_SECRET (the seed, encrypted to the SRK) ‖ TPM2B_PUBLIC
// (the HMAC key's public area: a KEYEDHASH object, HMAC-SHA256 scheme,
// attributes sign, userWithAuth and noDA) ‖ an empty TPM2B_DATA.
// rand supplies all the randomness: the inner key, the two seeds, the
// key's obfuscation value and the OAEP padding (176 bytes in all).
func Challenge(rand io.Reader, ekTPM2B, srkTPM2B, key []byte) ([]byte, error) {
	if len(key) < MinKeySize || len(key) > MaxKeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d to %d", ErrKeySize, len(key), MinKeySize, MaxKeySize)
	}
	ek, err := parseStorage(ekTPM2B, true)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadEK, err)
	}
	srk, err := parseStorage(srkTPM2B, false)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSRK, err)
	}

	innerKey := make([]byte, InnerKeySize)
	if _, err := io.ReadFull(rand, innerKey); err != nil {
		return nil, fmt.Errorf("make TPM challenge: random inner key: %w", err)
	}

	// Credential protection (Part 1, 24): the inner key, as a
	// TPM2B_DIGEST, sealed to the EK and bound to the SRK's Name, so that
	// ActivateCredential releases it only with both keys loaded.
	credSeed, credSecret, err := ek.encryptSeed(rand, labelIdentity)
	if err != nil {
		return nil, fmt.Errorf("make TPM challenge: credential seed: %w", err)
	}
	idObject := ek.protect(credSeed, srk.name, appendTPM2B(nil, innerKey))

	// The HMAC key as an object: public area and sensitive area.
	public, sensitive, err := hmacObject(rand, key)
	if err != nil {
		return nil, fmt.Errorf("make TPM challenge: %w", err)
	}
	name := objectName(crypto.SHA256, public)

	// Inner wrapper (Part 1, 23.3): TPM2B_DIGEST(H(sensitive ‖ Name))
	// ‖ sensitive, encrypted with the inner key, AES-128-CFB, zero IV.
	h := crypto.SHA256.New()
	h.Write(sensitive)
	h.Write(name)
	inner := appendTPM2B(nil, h.Sum(nil))
	inner = cfbEncrypt(innerKey, append(inner, sensitive...))

	// Outer wrapper (Part 1, 23.3): keyed by a seed encrypted to the
	// SRK, bound to the object's Name.
	dupSeed, dupSecret, err := srk.encryptSeed(rand, labelDuplicate)
	if err != nil {
		return nil, fmt.Errorf("make TPM challenge: import seed: %w", err)
	}
	duplicate := srk.protect(dupSeed, name, inner)

	b := Blob{
		CredentialBlob: idObject,
		Secret:         credSecret,
		Duplicate:      duplicate,
		InSymSeed:      dupSecret,
		Public:         public,
	}
	return b.Marshal(), nil
}

// storageKey is an RSA decryption key (the EK or the SRK) a secret is
// sealed to.
type storageKey struct {
	pub     *rsa.PublicKey
	hash    crypto.Hash // the key's nameAlg
	symBits int         // its AES key size
	name    []byte      // its Name: nameAlg ‖ H(TPMT_PUBLIC)
}

// parseStorage reads a TPM2B_PUBLIC and checks that it is an RSA
// restricted decryption key with AES-CFB protection; with ek, an RSA-2048
// one. The reasons it gives name what is wrong.
func parseStorage(tpm2b []byte, ek bool) (*storageKey, error) {
	if len(tpm2b) < 2 || int(tpm2b[0])<<8|int(tpm2b[1]) != len(tpm2b)-2 {
		return nil, fmt.Errorf("not a TPM2B_PUBLIC: %d bytes do not match a 2-byte size prefix", len(tpm2b))
	}
	raw := tpm2b[2:]
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](raw)
	if err != nil {
		return nil, fmt.Errorf("not a TPM2B_PUBLIC: %w", err)
	}
	// The Name is hashed over the bytes as given: they must be exactly one
	// TPMT_PUBLIC, in its only encoding.
	if string(tpm2.Marshal(pub)) != string(raw) {
		return nil, errors.New("not a TPM2B_PUBLIC: bytes after the TPMT_PUBLIC")
	}
	var wrong []string
	if pub.Type != tpm2.TPMAlgRSA {
		return nil, fmt.Errorf("type %s, not RSA", AlgName(pub.Type))
	}
	hash, err := pub.NameAlg.Hash()
	if err != nil {
		return nil, fmt.Errorf("name algorithm %#x is not a hash this package knows", uint16(pub.NameAlg))
	}
	parms, err := pub.Parameters.RSADetail()
	if err != nil {
		return nil, fmt.Errorf("RSA parameters: %w", err)
	}
	unique, err := pub.Unique.RSA()
	if err != nil {
		return nil, fmt.Errorf("RSA modulus: %w", err)
	}
	switch {
	case ek && parms.KeyBits != 2048:
		wrong = append(wrong, fmt.Sprintf("RSA-%d, not RSA-2048", parms.KeyBits))
	case parms.KeyBits < 2048:
		wrong = append(wrong, fmt.Sprintf("RSA-%d, under 2048 bits", parms.KeyBits))
	case len(unique.Buffer)*8 != int(parms.KeyBits):
		wrong = append(wrong, fmt.Sprintf("a %d-byte modulus for RSA-%d", len(unique.Buffer), parms.KeyBits))
	}
	a := pub.ObjectAttributes
	if !a.Restricted || !a.Decrypt || a.SignEncrypt {
		if ek {
			wrong = append(wrong, "not a restricted decryption key")
		} else {
			wrong = append(wrong, "not a storage key (restricted, decrypt, not sign)")
		}
	}
	symBits, err := aesCFBBits(&parms.Symmetric)
	if err != nil {
		wrong = append(wrong, err.Error())
	}
	if len(wrong) > 0 {
		return nil, errors.New(strings.Join(wrong, ", "))
	}
	rsaPub, err := tpm2.RSAPub(parms, unique)
	if err != nil {
		return nil, fmt.Errorf("RSA public key: %w", err)
	}
	return &storageKey{pub: rsaPub, hash: hash, symBits: symBits, name: objectName(hash, raw)}, nil
}

// aesCFBBits returns the key size of an AES-CFB symmetric definition.
func aesCFBBits(s *tpm2.TPMTSymDefObject) (int, error) {
	if s.Algorithm != tpm2.TPMAlgAES {
		return 0, fmt.Errorf("symmetric algorithm %s, not AES", AlgName(s.Algorithm))
	}
	mode, err1 := s.Mode.AES()
	bits, err2 := s.KeyBits.AES()
	switch {
	case err1 != nil || err2 != nil:
		return 0, errors.New("unreadable AES parameters")
	case *mode != tpm2.TPMAlgCFB:
		return 0, fmt.Errorf("AES mode %#x, not CFB", uint16(*mode))
	case *bits != 128 && *bits != 192 && *bits != 256:
		return 0, fmt.Errorf("AES-%d", *bits)
	}
	return int(*bits), nil
}

// encryptSeed makes a random seed of the key's nameAlg digest size and
// encrypts it with RSA-OAEP (the nameAlg, label) to the key (Part 1,
// annex B, RSA secret sharing).
func (k *storageKey) encryptSeed(rand io.Reader, label string) (seed, secret []byte, err error) {
	seed = make([]byte, k.hash.Size())
	if _, err := io.ReadFull(rand, seed); err != nil {
		return nil, nil, err
	}
	secret, err = rsa.EncryptOAEP(k.hash.New(), rand, k.pub, seed, []byte(label))
	if err != nil {
		return nil, nil, err
	}
	return seed, secret, nil
}

// protect seals plaintext under seed for this key, bound to name: the
// protection MakeCredential gives a credential (Part 1, 24.4-24.5) and the
// outer duplication wrapper gives a sensitive area (23.3). It returns
// TPM2B_DIGEST(HMAC) ‖ ciphertext, where the ciphertext is plaintext in
// AES-CFB (zero IV) under KDFa(nameAlg, seed, "STORAGE", name) and the
// HMAC, keyed by KDFa(nameAlg, seed, "INTEGRITY"), covers ciphertext ‖
// name.
func (k *storageKey) protect(seed, name, plaintext []byte) []byte {
	symKey := tpm2.KDFa(k.hash, seed, labelStorage, name, nil, k.symBits)
	ciphertext := cfbEncrypt(symKey, plaintext)
	mac := hmac.New(k.hash.New, tpm2.KDFa(k.hash, seed, labelIntegrity, nil, nil, k.hash.Size()*8))
	mac.Write(ciphertext)
	mac.Write(name)
	return append(appendTPM2B(nil, mac.Sum(nil)), ciphertext...)
}

// hmacObject makes the public area (TPMT_PUBLIC) and the sensitive area
// (TPM2B_SENSITIVE) of an HMAC-SHA256 KEYEDHASH object holding key. Its
// unique field is SHA-256(obfuscation value ‖ key), as the TPM checks on
// Import and Load.
func hmacObject(rand io.Reader, key []byte) (public, sensitive []byte, err error) {
	obfuscate := make([]byte, crypto.SHA256.Size())
	if _, err := io.ReadFull(rand, obfuscate); err != nil {
		return nil, nil, fmt.Errorf("random obfuscation value: %w", err)
	}
	h := crypto.SHA256.New()
	h.Write(obfuscate)
	h.Write(key)
	pub := tpm2.TPMTPublic{
		Type:             tpm2.TPMAlgKeyedHash,
		NameAlg:          tpm2.TPMAlgSHA256,
		ObjectAttributes: hmacKeyAttributes,
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{
				Scheme:  tpm2.TPMAlgHMAC,
				Details: tpm2.NewTPMUSchemeKeyedHash(tpm2.TPMAlgHMAC, &tpm2.TPMSSchemeHMAC{HashAlg: tpm2.TPMAlgSHA256}),
			},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{Buffer: h.Sum(nil)}),
	}
	sens := tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgKeyedHash,
		SeedValue:     tpm2.TPM2BDigest{Buffer: obfuscate},
		Sensitive:     tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BSensitiveData{Buffer: key}),
	}
	return tpm2.Marshal(&pub), appendTPM2B(nil, tpm2.Marshal(&sens)), nil
}

// objectName is an object's Name: its nameAlg, then the digest of its
// marshaled TPMT_PUBLIC (Part 1, 16).
func objectName(h crypto.Hash, public []byte) []byte {
	var alg tpm2.TPMAlgID
	switch h {
	case crypto.SHA1:
		alg = tpm2.TPMAlgSHA1
	case crypto.SHA256:
		alg = tpm2.TPMAlgSHA256
	case crypto.SHA384:
		alg = tpm2.TPMAlgSHA384
	case crypto.SHA512:
		alg = tpm2.TPMAlgSHA512
	}
	d := h.New()
	d.Write(public)
	return d.Sum([]byte{byte(alg >> 8), byte(alg)})
}

// cfbEncrypt encrypts data with AES in CFB mode and a zero IV, the TPM's
// symmetric protection of sensitive data (Part 1, 24.4 and 23.3).
func cfbEncrypt(key, data []byte) []byte {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // the callers' keys are 16, 24 or 32 bytes
	}
	out := make([]byte, len(data))
	cipher.NewCFBEncrypter(block, make([]byte, aes.BlockSize)).XORKeyStream(out, data)
	return out
}

// AlgName names a TPM algorithm for an error message.
func AlgName(a tpm2.TPMAlgID) string {
	switch a {
	case tpm2.TPMAlgRSA:
		return "RSA"
	case tpm2.TPMAlgECC:
		return "ECC"
	case tpm2.TPMAlgKeyedHash:
		return "keyed hash"
	case tpm2.TPMAlgSymCipher:
		return "symmetric"
	case tpm2.TPMAlgAES:
		return "AES"
	case tpm2.TPMAlgNull:
		return "NULL"
	}
	return fmt.Sprintf("%#x", uint16(a))
}
