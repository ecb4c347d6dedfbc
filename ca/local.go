package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.step.sm/crypto/pemutil"
	"go.step.sm/crypto/x509util"

	"zerotouch/internal/atomicfile"
)

// Files of a local CA folder.
const (
	ConfigFile       = "ca.json"
	RootFile         = "root.crt"
	IntermediateFile = "intermediate.crt"
	templateFile     = "device.tpl"
)

// Default validities.
const (
	DefaultValidity             = 10 * 365 * 24 * time.Hour // device certificates
	DefaultRootValidity         = 30 * 365 * 24 * time.Hour
	DefaultIntermediateValidity = 20 * 365 * 24 * time.Hour
)

var (
	// ErrExists means ca init found a CA already in the folder.
	ErrExists = errors.New("a CA already exists")
	// ErrNoCA means the folder holds no CA.
	ErrNoCA = errors.New("no CA")
)

// localConfig is ca.json. Certificates are in RootFile and
// IntermediateFile beside it.
type localConfig struct {
	Version  int    `json:"version"`
	KMS      string `json:"kms,omitempty"`     // "" for encrypted key files
	Key      string `json:"key"`               // file in the folder, or KMS key URI
	RootKey  string `json:"rootKey,omitempty"` // absent for an imported intermediate
	Template string `json:"template,omitempty"`
	Validity string `json:"validity"`
	Policy   Policy `json:"policy"`
}

// InitOptions says how to make a local CA.
type InitOptions struct {
	Name     string // subject prefix: "<Name> Root CA", "<Name> Intermediate CA"; default "zerotouch"
	Password []byte // encrypts the key files, or the PKCS#11 PIN
	KMS      string // "" for encrypted files, or a pkcs11: or tpmkms: URI
	KeyType  KeyType

	RootValidity, IntermediateValidity time.Duration
	Validity                           time.Duration // device certificates
	Policy                             Policy
	Template                           string // x509util template file, copied into the folder

	// Import an existing intermediate instead of creating a root and an
	// intermediate: its certificate (PEM, may be followed by further
	// intermediates), its key (a PEM file, decrypted with Password if
	// encrypted; or a key URI when KMS is set), and the root.
	ImportCert, ImportKey, ImportRoot string

	Logger *slog.Logger
}

// Init makes a local CA in dir and opens it. It refuses a folder that
// already holds one (ErrExists). ca.json is written last, so a folder left
// by an interrupted Init holds no CA and Init can run again.
func Init(ctx context.Context, dir string, opts InitOptions) (*Local, error) {
	if opts.Name == "" {
		opts.Name = "zerotouch"
	}
	if opts.KeyType == "" {
		opts.KeyType = ECDSAP256
	}
	if opts.RootValidity == 0 {
		opts.RootValidity = DefaultRootValidity
	}
	if opts.IntermediateValidity == 0 {
		opts.IntermediateValidity = DefaultIntermediateValidity
	}
	if opts.Validity == 0 {
		opts.Validity = DefaultValidity
	}
	if err := opts.Policy.Validate(); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
		return nil, fmt.Errorf("%w in %s: remove the folder to start again, or use --dir for another", ErrExists, dir)
	}
	// The folder first, 0700: a TPM KMS keeps its key blobs inside it.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	ks, err := openKeyStore(ctx, dir, opts.KMS, opts.Password)
	if err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	defer ks.Close()

	cfg := localConfig{Version: 1, KMS: opts.KMS, Validity: FormatValidity(opts.Validity), Policy: opts.Policy}
	if opts.Template != "" {
		if _, err := LoadTemplate(opts.Template, opts.Policy.allows(RSA)); err != nil {
			return nil, fmt.Errorf("ca init: %w", err)
		}
		b, err := os.ReadFile(opts.Template)
		if err != nil {
			return nil, fmt.Errorf("ca init: %w", err)
		}
		if err := atomicfile.Write(filepath.Join(dir, templateFile), b, 0o600); err != nil {
			return nil, fmt.Errorf("ca init: %w", err)
		}
		cfg.Template = templateFile
	}
	var root *x509.Certificate
	var chain []*x509.Certificate
	if opts.ImportCert != "" || opts.ImportKey != "" || opts.ImportRoot != "" {
		root, chain, cfg.Key, err = importIntermediate(ks, opts)
	} else {
		root, chain, cfg.Key, cfg.RootKey, err = createHierarchy(ks, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, RootFile), EncodePEM(root), 0o600); err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, IntermediateFile), EncodePEM(chain...), 0o600); err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, ConfigFile), append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("ca init: %w", err)
	}
	return OpenLocal(ctx, dir, LocalOptions{Password: opts.Password, Logger: opts.Logger})
}

func createHierarchy(ks *keyStore, opts InitOptions) (root *x509.Certificate, chain []*x509.Certificate, key, rootKey string, err error) {
	rootKey, rootSigner, err := ks.create("root", opts.KeyType)
	if err != nil {
		return nil, nil, "", "", err
	}
	now := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	root, err = caCertificate(x509util.DefaultRootTemplate, opts.Name+" Root CA", rootSigner.Public(), nil, rootSigner, now, opts.RootValidity)
	if err != nil {
		return nil, nil, "", "", fmt.Errorf("make root: %w", err)
	}
	key, signer, err := ks.create("intermediate", opts.KeyType)
	if err != nil {
		return nil, nil, "", "", err
	}
	inter, err := caCertificate(x509util.DefaultIntermediateTemplate, opts.Name+" Intermediate CA", signer.Public(), root, rootSigner, now, opts.IntermediateValidity)
	if err != nil {
		return nil, nil, "", "", fmt.Errorf("make intermediate: %w", err)
	}
	return root, []*x509.Certificate{inter}, key, rootKey, nil
}

// caCertificate makes a root (parent nil: self-signed) or an intermediate.
func caCertificate(tmpl, cn string, pub crypto.PublicKey, parent *x509.Certificate, signer crypto.Signer, notBefore time.Time, validity time.Duration) (*x509.Certificate, error) {
	data := x509util.CreateTemplateData(cn, nil)
	data.SetSubject(x509util.Subject{CommonName: cn})
	c, err := x509util.NewCertificateFromX509(&x509.Certificate{PublicKey: pub, Subject: pkix.Name{CommonName: cn}}, x509util.WithTemplate(tmpl, data))
	if err != nil {
		return nil, err
	}
	t := c.GetCertificate()
	t.NotBefore, t.NotAfter = notBefore, notBefore.Add(validity)
	if parent == nil {
		parent = t
	} else if t.NotAfter.After(parent.NotAfter) {
		t.NotAfter = parent.NotAfter
	}
	return x509util.CreateCertificate(t, parent, pub, signer)
}

func importIntermediate(ks *keyStore, opts InitOptions) (root *x509.Certificate, chain []*x509.Certificate, key string, err error) {
	if opts.ImportCert == "" || opts.ImportKey == "" || opts.ImportRoot == "" {
		return nil, nil, "", errors.New("import needs the intermediate's certificate, its key and the root")
	}
	chain, err = pemutil.ReadCertificateBundle(opts.ImportCert)
	if err != nil {
		return nil, nil, "", fmt.Errorf("read %s: %w", opts.ImportCert, err)
	}
	root, err = pemutil.ReadCertificate(opts.ImportRoot)
	if err != nil {
		return nil, nil, "", fmt.Errorf("read %s: %w", opts.ImportRoot, err)
	}
	if err := checkCAChain(chain, root); err != nil {
		return nil, nil, "", err
	}
	var signer crypto.Signer
	if kind := ks.kind(); kind == "file" {
		signer, err = readImportedKey(opts.ImportKey, opts.Password)
		if err != nil {
			return nil, nil, "", err
		}
		key = "intermediate.key"
		if err := writeEncryptedKey(filepath.Join(ks.dir, key), signer, opts.Password); err != nil {
			return nil, nil, "", err
		}
	} else {
		if err := kmsKeyURIValid(kind, opts.ImportKey); err != nil {
			return nil, nil, "", err
		}
		key = opts.ImportKey
		if signer, err = ks.load(key); err != nil {
			return nil, nil, "", err
		}
	}
	if !samePublicKey(signer.Public(), chain[0].PublicKey) {
		return nil, nil, "", fmt.Errorf("the key %s is not the key of the certificate %s", opts.ImportKey, opts.ImportCert)
	}
	return root, chain, key, nil
}

// checkCAChain checks that chain[0] is a CA that can sign device
// certificates and that chain verifies to root.
func checkCAChain(chain []*x509.Certificate, root *x509.Certificate) error {
	inter := chain[0]
	if !inter.IsCA || inter.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%q is not a CA certificate that may sign certificates", inter.Subject)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	pool := x509.NewCertPool()
	for _, c := range chain[1:] {
		pool.AddCert(c)
	}
	if _, err := inter.Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("%q does not chain to the root %q: %w", inter.Subject, root.Subject, err)
	}
	return nil
}

// LocalOptions opens a local CA. Zero fields keep the CA's own settings.
type LocalOptions struct {
	Password []byte        // decrypts the key file, or the PKCS#11 PIN
	Template string        // device template file, instead of the CA's
	Validity time.Duration // device certificate validity, instead of the CA's
	Policy   *Policy       // signing policy, instead of the CA's
	Logger   *slog.Logger
}

// Local is a CA kept in a folder.
type Local struct {
	dir      string
	root     *x509.Certificate
	chain    []*x509.Certificate // intermediates, issuing CA first
	signer   crypto.Signer
	ks       *keyStore
	tmpl     *Template
	validity time.Duration
	policy   Policy
	log      *slog.Logger
	now      func() time.Time
}

// OpenLocal opens the CA in dir: it loads the certificates, unlocks the
// key and checks that it is the intermediate's, and tries the template.
func OpenLocal(ctx context.Context, dir string, opts LocalOptions) (*Local, error) {
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s: run zerotouch ca init --dir %s", ErrNoCA, dir, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	var cfg localConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("open CA: %s: %w", filepath.Join(dir, ConfigFile), err)
	}
	if cfg.Version != 1 {
		return nil, fmt.Errorf("open CA: %s: version %d, this zerotouch reads version 1", filepath.Join(dir, ConfigFile), cfg.Version)
	}
	l := &Local{dir: dir, policy: cfg.Policy, log: opts.Logger, now: time.Now}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if opts.Policy != nil {
		l.policy = *opts.Policy
	}
	if err := l.policy.Validate(); err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	if l.validity, err = ParseValidity(cfg.Validity); err != nil {
		return nil, fmt.Errorf("open CA: %s: %w", ConfigFile, err)
	}
	if opts.Validity != 0 {
		l.validity = opts.Validity
	}
	tf := opts.Template
	if tf == "" && cfg.Template != "" {
		tf = filepath.Join(dir, cfg.Template)
	}
	if l.tmpl, err = LoadTemplate(tf, l.policy.allows(RSA)); err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	if l.root, err = pemutil.ReadCertificate(filepath.Join(dir, RootFile)); err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	if l.chain, err = pemutil.ReadCertificateBundle(filepath.Join(dir, IntermediateFile)); err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	if err := checkCAChain(l.chain, l.root); err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	if l.ks, err = openKeyStore(ctx, dir, cfg.KMS, opts.Password); err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	if l.signer, err = l.ks.load(cfg.Key); err != nil {
		l.ks.Close()
		return nil, fmt.Errorf("open CA: %w", err)
	}
	if !samePublicKey(l.signer.Public(), l.chain[0].PublicKey) {
		l.ks.Close()
		return nil, fmt.Errorf("open CA: the key %s is not the key of %s", cfg.Key, IntermediateFile)
	}
	if left := time.Until(l.chain[0].NotAfter); left < l.validity {
		l.log.Warn("device certificates will be cut short by the intermediate's expiry",
			"intermediate_not_after", l.chain[0].NotAfter, "validity", l.validity)
	}
	return l, nil
}

// ReadChain reads a CA folder's certificates without unlocking its key:
// the intermediates, issuing CA first, then the root.
func ReadChain(dir string) ([]*x509.Certificate, error) {
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s: run zerotouch ca init --dir %s", ErrNoCA, dir, dir)
	}
	root, err := pemutil.ReadCertificate(filepath.Join(dir, RootFile))
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	chain, err := pemutil.ReadCertificateBundle(filepath.Join(dir, IntermediateFile))
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	if err := checkCAChain(chain, root); err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	return append(chain, root), nil
}

// CATemplate returns the device template of the CA in dir: its own, or
// the built-in one if it has none or dir is empty.
func CATemplate(dir string) (*Template, error) {
	if dir == "" {
		return LoadTemplate("", true)
	}
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoCA, dir)
	}
	if err != nil {
		return nil, err
	}
	var cfg localConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, ConfigFile), err)
	}
	if cfg.Template == "" {
		return LoadTemplate("", cfg.Policy.allows(RSA))
	}
	return LoadTemplate(filepath.Join(dir, cfg.Template), cfg.Policy.allows(RSA))
}

// Dir returns the CA's folder.
func (l *Local) Dir() string { return l.dir }

// Issue implements Issuer.
func (l *Local) Issue(ctx context.Context, csr *x509.CertificateRequest, registrationID string) (*Certificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := l.policy.Check(csr, registrationID); err != nil {
		return nil, err
	}
	t, err := l.tmpl.certificate(csr, registrationID, l.validity, l.now())
	if err != nil {
		return nil, err
	}
	issuer := l.chain[0]
	if t.NotAfter.After(issuer.NotAfter) {
		t.NotAfter = issuer.NotAfter
	}
	leaf, err := x509util.CreateCertificate(t, issuer, csr.PublicKey, l.signer)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", registrationID, err)
	}
	return accept(append([]*x509.Certificate{leaf}, l.chain...), l.root, csr, registrationID, true)
}

// Chain implements Issuer.
func (l *Local) Chain(context.Context) ([]*x509.Certificate, error) {
	return append(append([]*x509.Certificate{}, l.chain...), l.root), nil
}

// Close releases the KMS.
func (l *Local) Close() error { return l.ks.Close() }

// ParseValidity reads a validity: a Go duration ("8760h"), or a whole
// number of days ("365d") or years of 365 days ("10y").
func ParseValidity(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	switch {
	case strings.HasSuffix(s, "d"), strings.HasSuffix(s, "y"):
		n, perr := strconv.Atoi(s[:len(s)-1])
		unit := 24 * time.Hour
		if strings.HasSuffix(s, "y") {
			unit *= 365
		}
		d, err = time.Duration(n)*unit, perr
		if n > 1000*365 {
			err = errors.New("too long")
		}
	default:
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("validity %q: want a positive duration such as 8760h, 365d or 10y", s)
	}
	return d, nil
}

// FormatValidity writes d in the shortest form ParseValidity reads.
func FormatValidity(d time.Duration) string {
	day := 24 * time.Hour
	switch {
	case d%(365*day) == 0:
		return fmt.Sprintf("%dy", d/(365*day))
	case d%day == 0:
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}
