package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/pkcs11"
	"go.step.sm/crypto/kms/softkms"
	"go.step.sm/crypto/kms/tpmkms"
	"go.step.sm/crypto/pemutil"

	"zerotouch/internal/atomicfile"
)

// ErrPassword means the CA password (or PKCS#11 PIN) is missing or wrong.
var ErrPassword = errors.New("CA password")

// keyStore creates and loads CA keys: in encrypted files in the CA folder,
// or in the KMS named by a URI.
type keyStore struct {
	dir      string
	kmsURI   string // "" for files
	password []byte
	km       apiv1.KeyManager
}

// kmsKind returns "file", "pkcs11" or "tpmkms" for a KMS URI.
func kmsKind(uri string) (string, error) {
	if uri == "" {
		return "file", nil
	}
	scheme, _, _ := strings.Cut(uri, ":")
	switch scheme {
	case "pkcs11", "tpmkms":
		if strings.Contains(uri, "pin-value=") {
			return "", fmt.Errorf("KMS URI %q holds a PIN: it would be stored in plain text; give it with --password-file or ZEROTOUCH_CA_PASSWORD instead, or use pin-source", redactURI(uri))
		}
		return scheme, nil
	case "softkms":
		return "file", nil
	}
	return "", fmt.Errorf("KMS URI %q: unsupported scheme %q (want pkcs11: or tpmkms:)", redactURI(uri), scheme)
}

// redactURI hides a pin-value for error messages.
func redactURI(uri string) string {
	i := strings.Index(uri, "pin-value=")
	if i < 0 {
		return uri
	}
	j := strings.IndexAny(uri[i:], ";&")
	if j < 0 {
		return uri[:i] + "pin-value=REDACTED"
	}
	return uri[:i] + "pin-value=REDACTED" + uri[i+j:]
}

func openKeyStore(ctx context.Context, dir, kmsURI string, password []byte) (*keyStore, error) {
	kind, err := kmsKind(kmsURI)
	if err != nil {
		return nil, err
	}
	ks := &keyStore{dir: dir, kmsURI: kmsURI, password: password}
	switch kind {
	case "file":
		if len(password) == 0 {
			return nil, fmt.Errorf("%w: none given; the CA key is encrypted with it", ErrPassword)
		}
		ks.km, err = softkms.New(ctx, apiv1.Options{Type: apiv1.SoftKMS})
	case "pkcs11":
		if len(password) == 0 && !strings.Contains(kmsURI, "pin-source=") {
			return nil, fmt.Errorf("%w: no PIN given for %s", ErrPassword, kmsURI)
		}
		ks.km, err = pkcs11.New(ctx, apiv1.Options{Type: apiv1.PKCS11, URI: kmsURI, Pin: string(password)})
		if err != nil && strings.Contains(err.Error(), "CKR_PIN_INCORRECT") {
			err = fmt.Errorf("%w: the token refused the PIN: %v", ErrPassword, err)
		}
	case "tpmkms":
		ks.km, err = tpmkms.New(ctx, apiv1.Options{Type: apiv1.TPMKMS, URI: kmsURI, StorageDirectory: filepath.Join(dir, "tpm")})
	}
	if err != nil {
		return nil, fmt.Errorf("open KMS %s: %w", kind, err)
	}
	return ks, nil
}

func (ks *keyStore) Close() error { return ks.km.Close() }

func (ks *keyStore) kind() string {
	k, _ := kmsKind(ks.kmsURI)
	return k
}

// create makes a new key for role ("root" or "intermediate") and returns
// its name for ca.json (a file name in the folder or a KMS key URI) and a
// signer.
func (ks *keyStore) create(role string, kt KeyType) (string, crypto.Signer, error) {
	alg, bits := apiv1.ECDSAWithSHA256, 0
	switch kt {
	case ECDSAP256:
	case ECDSAP384:
		alg = apiv1.ECDSAWithSHA384
	case RSA:
		alg, bits = apiv1.SHA256WithRSA, 3072
	default:
		return "", nil, fmt.Errorf("CA key type %q (want %s, %s or %s)", kt, ECDSAP256, ECDSAP384, RSA)
	}
	var id [8]byte
	if _, err := io.ReadFull(rand.Reader, id[:]); err != nil {
		return "", nil, err
	}
	var name string
	switch ks.kind() {
	case "file":
		key, err := generateKey(kt)
		if err != nil {
			return "", nil, err
		}
		name = role + ".key"
		if err := writeEncryptedKey(filepath.Join(ks.dir, name), key, ks.password); err != nil {
			return "", nil, err
		}
		return name, key, nil
	case "pkcs11":
		name = fmt.Sprintf("pkcs11:id=%s;object=zerotouch-%s", hex.EncodeToString(id[:]), role)
	case "tpmkms":
		name = fmt.Sprintf("tpmkms:name=zerotouch-%s-%s", role, hex.EncodeToString(id[:4]))
	}
	resp, err := ks.km.CreateKey(&apiv1.CreateKeyRequest{Name: name, SignatureAlgorithm: alg, Bits: bits})
	if err != nil {
		return "", nil, fmt.Errorf("create %s key in %s: %w", role, ks.kind(), err)
	}
	signer, err := ks.load(resp.Name)
	if err != nil {
		return "", nil, err
	}
	return resp.Name, signer, nil
}

// load returns a signer for a key named in ca.json.
func (ks *keyStore) load(name string) (crypto.Signer, error) {
	if ks.kind() == "file" {
		path := name
		if !filepath.IsAbs(path) {
			path = filepath.Join(ks.dir, name)
		}
		if err := refusePlainKey(path); err != nil {
			return nil, err
		}
		s, err := ks.km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: path, Password: ks.password})
		if err != nil {
			if errors.Is(err, x509.IncorrectPasswordError) || strings.Contains(err.Error(), "password") {
				return nil, fmt.Errorf("%w: cannot decrypt %s with it", ErrPassword, path)
			}
			return nil, fmt.Errorf("load CA key %s: %w", path, err)
		}
		return s, nil
	}
	s, err := ks.km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: name})
	if err != nil {
		return nil, fmt.Errorf("load CA key %s: %w", name, err)
	}
	// A token or TPM session is shared: one signature at a time.
	return &lockedSigner{Signer: s}, nil
}

// refusePlainKey refuses a key file that is not encrypted: the CA key is
// never kept in plain text.
func refusePlainKey(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("load CA key: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return fmt.Errorf("load CA key %s: not PEM", path)
	}
	if block.Type != "ENCRYPTED PRIVATE KEY" && block.Headers["Proc-Type"] == "" {
		return fmt.Errorf("load CA key %s: the key is not encrypted (%s); encrypt it with the CA password", path, block.Type)
	}
	return nil
}

type lockedSigner struct {
	mu sync.Mutex
	crypto.Signer
}

func (s *lockedSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Signer.Sign(r, digest, opts)
}

// generateKey makes a CA key in memory. On error the signer is nil, not
// a nil key in a non-nil crypto.Signer.
func generateKey(kt KeyType) (crypto.Signer, error) {
	var key crypto.Signer
	var err error
	switch kt {
	case ECDSAP384:
		key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA:
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	return key, nil
}

// writeEncryptedKey writes key as PKCS#8 encrypted with password
// (PBES2: PBKDF2 and AES-256-CBC), mode 0600, atomically.
func writeEncryptedKey(path string, key crypto.Signer, password []byte) error {
	block, err := pemutil.Serialize(key, pemutil.WithPassword(password), pemutil.WithPKCS8(true))
	if err != nil {
		return fmt.Errorf("encrypt CA key: %w", err)
	}
	return atomicfile.Write(path, pem.EncodeToMemory(block), 0o600)
}

// readImportedKey reads a PEM private key to import, decrypting it with
// password if it is encrypted.
func readImportedKey(path string, password []byte) (crypto.Signer, error) {
	v, err := pemutil.Read(path, pemutil.WithPassword(password))
	if err != nil {
		if errors.Is(err, x509.IncorrectPasswordError) || strings.Contains(err.Error(), "password") {
			return nil, fmt.Errorf("%w: cannot decrypt %s with it", ErrPassword, path)
		}
		return nil, fmt.Errorf("read key %s: %w", path, err)
	}
	s, ok := v.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("read key %s: %T is not a private key", path, v)
	}
	return s, nil
}

// kmsKeyURIValid reports whether name is a key URI for the KMS kind.
func kmsKeyURIValid(kind, name string) error {
	u, err := url.Parse(name)
	if err != nil || u.Scheme != kind {
		return fmt.Errorf("key %q is not a %s: URI", name, kind)
	}
	return nil
}
