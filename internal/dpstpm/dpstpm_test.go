package dpstpm_test

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/google/go-tpm/tpm2"

	"zerotouch/internal/dpstpm"
)

// testKeys are an EK and an SRK made in software, with their private
// keys, so that a blob can be opened without a TPM.
type testKeys struct {
	ek, srk           *rsa.PrivateKey
	ekTPM2B, srkTPM2B []byte
}

var keysOnce = sync.OnceValues(func() (*testKeys, error) {
	ek, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	srk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &testKeys{
		ek:       ek,
		srk:      srk,
		ekTPM2B:  rsaTPM2B(tpm2.RSAEKTemplate, ek.N.Bytes()),
		srkTPM2B: rsaTPM2B(tpm2.RSASRKTemplate, srk.N.Bytes()),
	}, nil
})

func newTestKeys(t testing.TB) *testKeys {
	t.Helper()
	k, err := keysOnce()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// rsaTPM2B is the TPM2B_PUBLIC of tmpl with modulus as its unique field.
func rsaTPM2B(tmpl tpm2.TPMTPublic, modulus []byte) []byte {
	tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: modulus})
	return tpm2.Marshal(tpm2.New2B(tmpl))
}

// name is a SHA-256 object's Name (TPM 2.0 Part 1, 16).
func name(tpmtPublic []byte) []byte {
	sum := sha256.Sum256(tpmtPublic)
	return append([]byte{0x00, 0x0B}, sum[:]...)
}

// unprotect reverses the protection of a credential or an outer wrapper
// (Part 1, 24.4-24.5 and 23.3) for a SHA-256, AES-128 parent: it
// checks the HMAC over the ciphertext and name and decrypts.
func unprotect(t *testing.T, what string, seed, nm, data []byte) []byte {
	t.Helper()
	if len(data) < 2 {
		t.Fatalf("%s: %d bytes", what, len(data))
	}
	n := int(binary.BigEndian.Uint16(data))
	if n != sha256.Size || len(data) < 2+n {
		t.Fatalf("%s: integrity HMAC of %d bytes", what, n)
	}
	integrity, ciphertext := data[2:2+n], data[2+n:]
	mac := hmac.New(sha256.New, tpm2.KDFa(crypto.SHA256, seed, "INTEGRITY", nil, nil, 256))
	mac.Write(ciphertext)
	mac.Write(nm)
	if !hmac.Equal(mac.Sum(nil), integrity) {
		t.Fatalf("%s: integrity HMAC does not match", what)
	}
	return cfbDecrypt(t, tpm2.KDFa(crypto.SHA256, seed, "STORAGE", nm, nil, 128), ciphertext)
}

func cfbDecrypt(t *testing.T, key, data []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(data))
	cipher.NewCFBDecrypter(block, make([]byte, aes.BlockSize)).XORKeyStream(out, data)
	return out
}

// tpm2bContents splits a TPM2B off the front of data.
func tpm2bContents(t *testing.T, what string, data []byte) (contents, rest []byte) {
	t.Helper()
	if len(data) < 2 || len(data)-2 < int(binary.BigEndian.Uint16(data)) {
		t.Fatalf("%s: not a TPM2B: %x", what, data)
	}
	n := int(binary.BigEndian.Uint16(data))
	return data[2 : 2+n], data[2+n:]
}

// openBlob does in software what the TPM does with a blob in
// ActivateCredential and Import, with the private EK and SRK, checking
// every integrity value on the way, and returns the HMAC key inside.
func openBlob(t *testing.T, k *testKeys, blob []byte) []byte {
	t.Helper()
	b, err := dpstpm.Parse(blob)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(b.Data) != 0 {
		t.Errorf("TPM2B_DATA = %x, want empty", b.Data)
	}

	// ActivateCredential: the EK decrypts the seed, the SRK's Name binds
	// the credential.
	credSeed, err := rsa.DecryptOAEP(sha256.New(), nil, k.ek, b.Secret, []byte("IDENTITY\x00"))
	if err != nil {
		t.Fatalf("the EK does not decrypt the credential secret: %v", err)
	}
	if len(credSeed) != sha256.Size {
		t.Errorf("credential seed of %d bytes, want %d", len(credSeed), sha256.Size)
	}
	cred := unprotect(t, "credential", credSeed, name(k.srkTPM2B[2:]), b.CredentialBlob)
	innerKey, rest := tpm2bContents(t, "credential", cred)
	if len(innerKey) != dpstpm.InnerKeySize || len(rest) != 0 {
		t.Fatalf("credential = %d-byte key and %d more bytes, want a %d-byte key", len(innerKey), len(rest), dpstpm.InnerKeySize)
	}

	// The key's public area.
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](b.Public)
	if err != nil {
		t.Fatalf("public area: %v", err)
	}
	if !bytes.Equal(tpm2.Marshal(pub), b.Public) {
		t.Errorf("public area has bytes after the TPMT_PUBLIC")
	}
	want := tpm2.TPMAObject{SignEncrypt: true, UserWithAuth: true, NoDA: true}
	if pub.Type != tpm2.TPMAlgKeyedHash || pub.NameAlg != tpm2.TPMAlgSHA256 || pub.ObjectAttributes != want || len(pub.AuthPolicy.Buffer) != 0 {
		t.Errorf("public area: type %#x, nameAlg %#x, attributes %+v, policy %x; want a SHA-256 keyed hash, %+v, no policy",
			pub.Type, pub.NameAlg, pub.ObjectAttributes, pub.AuthPolicy.Buffer, want)
	}
	parms, err := pub.Parameters.KeyedHashDetail()
	if err != nil {
		t.Fatal(err)
	}
	scheme, err := parms.Scheme.Details.HMAC()
	if parms.Scheme.Scheme != tpm2.TPMAlgHMAC || err != nil || scheme.HashAlg != tpm2.TPMAlgSHA256 {
		t.Errorf("scheme %#x (%v), want HMAC-SHA256", parms.Scheme.Scheme, err)
	}
	objName := name(b.Public)

	// Import: the SRK decrypts the seed; outer, then inner wrapper.
	dupSeed, err := rsa.DecryptOAEP(sha256.New(), nil, k.srk, b.InSymSeed, []byte("DUPLICATE\x00"))
	if err != nil {
		t.Fatalf("the SRK does not decrypt the import seed: %v", err)
	}
	inner := cfbDecrypt(t, innerKey, unprotect(t, "duplicate", dupSeed, objName, b.Duplicate))
	innerIntegrity, sensitive2B := tpm2bContents(t, "inner integrity", inner)
	sum := sha256.New()
	sum.Write(sensitive2B)
	sum.Write(objName)
	if !bytes.Equal(sum.Sum(nil), innerIntegrity) {
		t.Fatalf("inner integrity does not match")
	}
	sensitiveBytes, rest := tpm2bContents(t, "sensitive", sensitive2B)
	if len(rest) != 0 {
		t.Errorf("%d bytes after the TPM2B_SENSITIVE", len(rest))
	}
	sens, err := tpm2.Unmarshal[tpm2.TPMTSensitive](sensitiveBytes)
	if err != nil {
		t.Fatalf("sensitive area: %v", err)
	}
	key, err := sens.Sensitive.Bits()
	if err != nil || sens.SensitiveType != tpm2.TPMAlgKeyedHash || len(sens.AuthValue.Buffer) != 0 || len(sens.SeedValue.Buffer) != sha256.Size {
		t.Fatalf("sensitive area: type %#x, auth %x, %d-byte seed (%v); want a keyed hash, no auth, a 32-byte obfuscation value",
			sens.SensitiveType, sens.AuthValue.Buffer, len(sens.SeedValue.Buffer), err)
	}
	unique, err := pub.Unique.KeyedHash()
	if err != nil {
		t.Fatal(err)
	}
	if u := sha256.Sum256(append(bytes.Clone(sens.SeedValue.Buffer), key.Buffer...)); !bytes.Equal(unique.Buffer, u[:]) {
		t.Errorf("unique = %x, want SHA-256(obfuscation ‖ key) = %x", unique.Buffer, u)
	}
	return key.Buffer
}

// TestChallengeOpens opens blobs in software, as a TPM would, and finds
// the key; each blob is fresh.
func TestChallengeOpens(t *testing.T) {
	k := newTestKeys(t)
	seen := map[string]bool{}
	for _, n := range []int{dpstpm.MinKeySize, 48, dpstpm.MaxKeySize} {
		key := make([]byte, n)
		rand.Read(key)
		blob, err := dpstpm.Challenge(rand.Reader, k.ekTPM2B, k.srkTPM2B, key)
		if err != nil {
			t.Fatalf("Challenge(%d-byte key): %v", n, err)
		}
		if got := openBlob(t, k, blob); !bytes.Equal(got, key) {
			t.Errorf("Challenge(%d-byte key) carries %x, want %x", n, got, key)
		}
		if seen[string(blob)] {
			t.Errorf("Challenge made the same blob twice")
		}
		seen[string(blob)] = true
	}
}

// TestChallengeBadInput checks the refusals and that they say what is
// wrong.
func TestChallengeBadInput(t *testing.T) {
	k := newTestKeys(t)
	modulus := k.ek.N.Bytes()

	signing := tpm2.RSASRKTemplate
	signing.ObjectAttributes.Restricted = false
	signing.ObjectAttributes.Decrypt = false
	signing.ObjectAttributes.SignEncrypt = true
	signing.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
		KeyBits:   2048,
	})
	big := tpm2.RSAEKTemplate
	big.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
		Symmetric: tpm2.TPMTSymDefObject{
			Algorithm: tpm2.TPMAlgAES,
			KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
			Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
		},
		KeyBits: 3072,
	})
	small := tpm2.RSASRKTemplate
	small.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
		Symmetric: tpm2.TPMTSymDefObject{
			Algorithm: tpm2.TPMAlgAES,
			KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
			Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
		},
		KeyBits: 1024,
	})
	noAES := tpm2.RSAEKTemplate
	noAES.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
		KeyBits:   2048,
	})
	ecc := tpm2.ECCEKTemplate
	ecc.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
	})
	eccTPM2B := tpm2.Marshal(tpm2.New2B(ecc))
	trailing := append(bytes.Clone(k.ekTPM2B), 0)
	binary.BigEndian.PutUint16(trailing, uint16(len(trailing)-2))

	key := make([]byte, 32)
	for _, tt := range []struct {
		name      string
		ek, srk   []byte
		key       []byte
		wantErr   error
		wantInMsg string
	}{
		{"ECC EK", eccTPM2B, k.srkTPM2B, key, dpstpm.ErrBadEK, "type ECC, not RSA"},
		{"RSA-3072 EK", rsaTPM2B(big, make([]byte, 384)), k.srkTPM2B, key, dpstpm.ErrBadEK, "RSA-3072, not RSA-2048"},
		{"signing key as EK", rsaTPM2B(signing, modulus), k.srkTPM2B, key, dpstpm.ErrBadEK, "not a restricted decryption key"},
		{"EK without AES", rsaTPM2B(noAES, modulus), k.srkTPM2B, key, dpstpm.ErrBadEK, "symmetric algorithm NULL, not AES"},
		{"EK modulus too short", rsaTPM2B(tpm2.RSAEKTemplate, modulus[1:]), k.srkTPM2B, key, dpstpm.ErrBadEK, "a 255-byte modulus for RSA-2048"},
		{"EK truncated", k.ekTPM2B[:100], k.srkTPM2B, key, dpstpm.ErrBadEK, "not a TPM2B_PUBLIC"},
		{"EK with a byte after it", trailing, k.srkTPM2B, key, dpstpm.ErrBadEK, "bytes after the TPMT_PUBLIC"},
		{"EK empty", nil, k.srkTPM2B, key, dpstpm.ErrBadEK, "not a TPM2B_PUBLIC"},
		{"TPMT_PUBLIC as EK", k.ekTPM2B[2:], k.srkTPM2B, key, dpstpm.ErrBadEK, "not a TPM2B_PUBLIC"},
		{"ECC SRK", k.ekTPM2B, eccTPM2B, key, dpstpm.ErrBadSRK, "type ECC, not RSA"},
		{"signing key as SRK", k.ekTPM2B, rsaTPM2B(signing, modulus), key, dpstpm.ErrBadSRK, "not a storage key"},
		{"RSA-1024 SRK", k.ekTPM2B, rsaTPM2B(small, modulus[:128]), key, dpstpm.ErrBadSRK, "RSA-1024, under 2048 bits"},
		{"empty key", k.ekTPM2B, k.srkTPM2B, nil, dpstpm.ErrKeySize, "0 bytes, want 32 to 64"},
		{"31-byte key", k.ekTPM2B, k.srkTPM2B, make([]byte, 31), dpstpm.ErrKeySize, "31 bytes"},
		{"65-byte key", k.ekTPM2B, k.srkTPM2B, make([]byte, 65), dpstpm.ErrKeySize, "65 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			blob, err := dpstpm.Challenge(rand.Reader, tt.ek, tt.srk, tt.key)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantInMsg) {
				t.Fatalf("Challenge(%s) = %d bytes, %v; want %v saying %q", tt.name, len(blob), err, tt.wantErr, tt.wantInMsg)
			}
		})
	}

	// A random source that fails fails the challenge, at any point: all
	// 176 bytes come from it.
	const randomBytes = 16 + 32 + 32 + 32 + 32 + 32
	errNoEntropy := errors.New("no entropy")
	for n := range randomBytes {
		r := io.MultiReader(bytes.NewReader(make([]byte, n)), iotest.ErrReader(errNoEntropy))
		if _, err := dpstpm.Challenge(r, k.ekTPM2B, k.srkTPM2B, key); !errors.Is(err, errNoEntropy) {
			t.Fatalf("Challenge with a random source that fails after %d bytes = %v, want its error", n, err)
		}
	}
	r := io.MultiReader(bytes.NewReader(make([]byte, randomBytes)), iotest.ErrReader(errNoEntropy))
	if _, err := dpstpm.Challenge(r, k.ekTPM2B, k.srkTPM2B, key); err != nil {
		t.Errorf("Challenge with %d random bytes: %v", randomBytes, err)
	}
}

func TestParse(t *testing.T) {
	k := newTestKeys(t)
	blob, err := dpstpm.Challenge(rand.Reader, k.ekTPM2B, k.srkTPM2B, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	b, err := dpstpm.Parse(blob)
	if err != nil {
		t.Fatalf("Parse(a blob from Challenge): %v", err)
	}
	if got := b.Marshal(); !bytes.Equal(got, blob) {
		t.Errorf("Parse(blob).Marshal() differs from blob")
	}
	// The parts of an RSA-2048, SHA-256, AES-128 blob have fixed sizes.
	for _, p := range []struct {
		name string
		part []byte
		want int
	}{
		{"credential blob", b.CredentialBlob, 2 + 32 + 2 + 16},
		{"credential secret", b.Secret, 256},
		{"duplicate", b.Duplicate, 2 + 32 + 2 + 32 + 2 + 2 + 2 + 2 + 32 + 2 + 32},
		{"import seed", b.InSymSeed, 256},
		{"public", b.Public, 2 + 2 + 4 + 2 + 2 + 2 + 2 + 32},
		{"data", b.Data, 0},
	} {
		if len(p.part) != p.want {
			t.Errorf("Parse: %s of %d bytes, want %d", p.name, len(p.part), p.want)
		}
	}

	withData := *b
	withData.Data = []byte("uri")
	if got, err := dpstpm.Parse(withData.Marshal()); err != nil || string(got.Data) != "uri" {
		t.Errorf("Parse(blob with data) = %+v, %v; want the data", got, err)
	}

	// Every prefix is truncated.
	for n := range len(blob) {
		_, err := dpstpm.Parse(blob[:n])
		if !errors.Is(err, dpstpm.ErrMalformed) || !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("Parse(first %d of %d bytes) = %v, want ErrMalformed, truncated", n, len(blob), err)
		}
	}

	for _, tt := range []struct {
		name      string
		blob      []byte
		wantInMsg string
	}{
		{"trailing garbage", append(bytes.Clone(blob), 0xde, 0xad), "2 bytes of trailing garbage"},
		{"empty", nil, "TPM2B_ID_OBJECT (credential blob) at offset 0: truncated"},
		{"size past the end", []byte{0xff, 0xff, 1, 2, 3}, "size 65535, 3 bytes left"},
		{"empty secret", (&dpstpm.Blob{CredentialBlob: b.CredentialBlob, Duplicate: b.Duplicate, InSymSeed: b.InSymSeed, Public: b.Public}).Marshal(), "TPM2B_ENCRYPTED_SECRET (credential secret) at offset 54: empty"},
		{"empty public", (&dpstpm.Blob{CredentialBlob: b.CredentialBlob, Secret: b.Secret, Duplicate: b.Duplicate, InSymSeed: b.InSymSeed}).Marshal(), "TPM2B_PUBLIC (HMAC key)"},
		{"no data", blob[:len(blob)-2], "TPM2B_DATA"},
	} {
		if _, err := dpstpm.Parse(tt.blob); !errors.Is(err, dpstpm.ErrMalformed) || !strings.Contains(err.Error(), tt.wantInMsg) {
			t.Errorf("Parse(%s) = %v, want ErrMalformed saying %q", tt.name, err, tt.wantInMsg)
		}
	}
}

// FuzzParse checks that Parse never panics, that what it accepts it gives
// back byte for byte, and that what it refuses is ErrMalformed. The seeds
// run with go test; go test -fuzz FuzzParse explores further.
func FuzzParse(f *testing.F) {
	k := newTestKeys(f)
	blob, err := dpstpm.Challenge(rand.Reader, k.ekTPM2B, k.srkTPM2B, make([]byte, 32))
	if err != nil {
		f.Fatal(err)
	}
	one := []byte{1}
	f.Add(blob)
	f.Add(blob[:len(blob)-1])
	f.Add(append(bytes.Clone(blob), 0))
	f.Add((&dpstpm.Blob{CredentialBlob: one, Secret: one, Duplicate: one, InSymSeed: one, Public: one}).Marshal())
	f.Add((&dpstpm.Blob{CredentialBlob: one, Secret: one, Duplicate: one, InSymSeed: one, Public: one, Data: one}).Marshal())
	f.Add([]byte{})
	f.Add([]byte{0, 0})
	f.Add(bytes.Repeat([]byte{0xff}, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := dpstpm.Parse(data)
		if err != nil {
			if !errors.Is(err, dpstpm.ErrMalformed) {
				t.Fatalf("Parse(%x) = %v, not ErrMalformed", data, err)
			}
			return
		}
		if got := b.Marshal(); !bytes.Equal(got, data) {
			t.Fatalf("Parse(%x).Marshal() = %x", data, got)
		}
		for i, p := range [][]byte{b.CredentialBlob, b.Secret, b.Duplicate, b.InSymSeed, b.Public} {
			if len(p) == 0 {
				t.Fatalf("Parse(%x) accepted an empty part %d", data, i)
			}
		}
	})
}

// BenchmarkChallenge measures making one blob: two RSA-OAEP encryptions
// and the symmetric work around them.
func BenchmarkChallenge(b *testing.B) {
	k := newTestKeys(b)
	key := make([]byte, 32)
	for b.Loop() {
		if _, err := dpstpm.Challenge(rand.Reader, k.ekTPM2B, k.srkTPM2B, key); err != nil {
			b.Fatal(err)
		}
	}
}
