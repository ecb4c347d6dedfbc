package emulator

// Credential policies: the certificate authorities that issue a device's
// operational certificate when it sends a CSR at registration
// (api-version 2026-04-01, device.json DeviceRegistration.csr and
// DeviceRegistrationResult.issuedCertificateChain). In DPS an enrollment
// (or its group) names an Azure Device Registry credential policy, whose
// issuing CA signs the CSR under the namespace's root; the device gets
// the chain leaf, issuing CA, root.
//
// The emulator keeps each policy as a local CA of package ca (a root and
// an issuing CA, ECDSA P-384 as ADR's) in the folder policies/{name}
// beside its SQLite file, with the password of its key files in
// policies/{name}/password. A policy is made the first time a device
// registers with a CSR under it, and its CA is kept open from its first
// use to Close; DefaultCredentialPolicy is the name to put on enrollments
// when any CA will do. To issue from a CA of one's own, make its folder
// before the first registration:
//
//	zerotouch ca init --dir DATA/policies/NAME --password-file DATA/policies/NAME/password
//
// CSRs are checked by package ca's signing policy (ECDSA P-256 or P-384,
// RSA of 2048 bits or more; no SANs; not a CA), and the CN must be the
// registration ID (case-insensitively, as DPS compares registration IDs).

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"zerotouch/ca"
	"zerotouch/enroll"
)

// DefaultCredentialPolicy is the credential policy the emulator makes
// first, with nothing but a name to choose.
const DefaultCredentialPolicy = "default"

// PoliciesFolder is the folder, beside the emulator's SQLite file, that
// holds its credential policies, one CA folder each.
const PoliciesFolder = "policies"

// PolicyPasswordFile is the file in a policy's folder that holds the
// password of its CA's key files.
const PolicyPasswordFile = "password"

// ErrCredentialPolicy means a credential policy's name is not one, or its
// CA cannot be made or opened.
var ErrCredentialPolicy = errors.New("credential policy")

// CheckPolicyName reports whether name can name a credential policy.
// Errors wrap ErrCredentialPolicy.
func CheckPolicyName(name string) error {
	if !enroll.CredentialPolicyNameOK(name) {
		return fmt.Errorf("%w: name %q: %s", ErrCredentialPolicy, name, enroll.PolicyNameRule)
	}
	return nil
}

// Log attribute keys.
const (
	keyPolicy    = "credential_policy"
	keyPolicyDir = "dir"
)

// csrAPIVersion is the api-version named in refusals of a csr.
const csrAPIVersion = "2026-04-01"

// DataFolder is the folder that holds the emulator's SQLite file, where
// it keeps its credential policies.
func (e *Emulator) DataFolder(ctx context.Context) (string, error) {
	var file string
	if err := e.db.QueryRowContext(ctx, `SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&file); err != nil {
		return "", fmt.Errorf("%w: locate the emulator's data folder: %v", ErrCredentialPolicy, err)
	}
	if file == "" {
		return "", fmt.Errorf("%w: the emulator's store is not a file: it has no data folder", ErrCredentialPolicy)
	}
	return filepath.Dir(file), nil
}

// PolicyFolder is the folder of credential policy name: DATA/policies/
// followed by the name in lower case (ADR's names are case-insensitive).
func (e *Emulator) PolicyFolder(ctx context.Context, name string) (string, error) {
	if err := CheckPolicyName(name); err != nil {
		return "", err
	}
	data, err := e.DataFolder(ctx)
	if err != nil {
		return "", err
	}
	return filepath.Join(data, PoliciesFolder, strings.ToLower(name)), nil
}

// PolicyChain returns credential policy name's CA certificates, issuing
// CA first and root last, making the policy if it does not exist yet.
// Errors wrap ErrCredentialPolicy. Safe for concurrent use, by several
// emulators on one data folder too.
func (e *Emulator) PolicyChain(ctx context.Context, name string) ([]*x509.Certificate, error) {
	dir, err := e.ensurePolicy(ctx, name)
	if err != nil {
		return nil, err
	}
	chain, err := ca.ReadChain(dir)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrCredentialPolicy, name, err)
	}
	return chain, nil
}

// ensurePolicy returns the folder of policy name, making its CA first if
// the folder holds none. The CA is made in a folder of its own and
// renamed into place, so that devices registering at once under a new
// policy all get the one CA that won the rename.
func (e *Emulator) ensurePolicy(ctx context.Context, name string) (string, error) {
	dir, err := e.PolicyFolder(ctx, name)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, ca.ConfigFile)); err == nil {
		return dir, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w %q: %v", ErrCredentialPolicy, name, err)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrCredentialPolicy, name, err)
	}
	tmp, err := os.MkdirTemp(parent, ".new-"+filepath.Base(dir)+"-")
	if err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrCredentialPolicy, name, err)
	}
	defer os.RemoveAll(tmp) // gone once renamed
	pw := make([]byte, 24)
	rand.Read(pw)
	password := []byte(hex.EncodeToString(pw))
	if err := os.WriteFile(filepath.Join(tmp, PolicyPasswordFile), append(password, '\n'), 0o600); err != nil {
		return "", fmt.Errorf("%w %q: %v", ErrCredentialPolicy, name, err)
	}
	l, err := ca.Init(ctx, tmp, ca.InitOptions{Name: "DPS emulator policy " + strings.ToLower(name), Password: password, KeyType: ca.ECDSAP384})
	if err != nil {
		return "", fmt.Errorf("%w %q: make its CA: %w", ErrCredentialPolicy, name, err)
	}
	l.Close()
	if err := os.Rename(tmp, dir); err != nil {
		// Another registration made it first: use that one.
		if _, serr := os.Stat(filepath.Join(dir, ca.ConfigFile)); serr == nil {
			return dir, nil
		}
		return "", fmt.Errorf("%w %q: %v", ErrCredentialPolicy, name, err)
	}
	e.log.LogAttrs(ctx, slog.LevelInfo, "credential policy made", slog.String(keyPolicy, strings.ToLower(name)), slog.String(keyPolicyDir, dir))
	return dir, nil
}

// issue signs csr for registration regID under credential policy name
// and returns the chain as DPS returns it: the device certificate, the
// issuing CA, the root.
func (e *Emulator) issue(ctx context.Context, name string, csr *x509.CertificateRequest, regID string) ([]*x509.Certificate, error) {
	l, err := e.policyCA(ctx, name)
	if err != nil {
		return nil, err
	}
	cert, err := l.Issue(ctx, csr, csr.Subject.CommonName)
	if err != nil {
		return nil, fmt.Errorf("issue the certificate of %s under policy %q: %w", regID, name, err)
	}
	return append(append([]*x509.Certificate{}, cert.Chain...), cert.Root), nil
}

// policyCA returns the CA of credential policy name, open: made if its
// folder holds none, opened with its password file on first use and kept
// open until Close, as opening it (decrypting its key) takes most of a
// registration's time. A CA put in the folder by hand after the policy
// was first used is read at the emulator's next start. Errors wrap
// ErrCredentialPolicy.
func (e *Emulator) policyCA(ctx context.Context, name string) (ca.Issuer, error) {
	if err := CheckPolicyName(name); err != nil {
		return nil, err
	}
	return e.policyCAs.get(ctx, strings.ToLower(name), func(ctx context.Context) (ca.Issuer, error) {
		dir, err := e.ensurePolicy(ctx, name)
		if err != nil {
			return nil, err
		}
		password, err := os.ReadFile(filepath.Join(dir, PolicyPasswordFile))
		if err != nil {
			return nil, fmt.Errorf("%w %q: its CA password: %v", ErrCredentialPolicy, name, err)
		}
		l, err := ca.OpenLocal(ctx, dir, ca.LocalOptions{Password: []byte(strings.TrimSpace(string(password)))})
		if err != nil {
			return nil, fmt.Errorf("%w %q: %w", ErrCredentialPolicy, name, err)
		}
		return l, nil
	})
}

// policyCache keeps credential policies' CAs open, by lower-cased policy
// name. Its zero value is an empty cache. It is safe for concurrent use:
// of the callers that ask at once for a policy not open yet, one opens it
// (making it if need be) while the others wait, then all share it.
type policyCache struct {
	mu     sync.Mutex
	closed bool
	cas    map[string]*cachedPolicy
}

// cachedPolicy is one policy's place in a policyCache.
type cachedPolicy struct {
	opening chan struct{} // holds a token while a caller opens the CA
	ca      ca.Issuer     // nil until opened; guarded by policyCache.mu
}

// errPoliciesClosed is what a closed policyCache answers.
var errPoliciesClosed = fmt.Errorf("%w: the emulator is closed", ErrCredentialPolicy)

// get returns the open CA of policy name, calling open for it if it is
// not open yet. A failed open is not kept: the next caller tries again.
// A caller waiting for another's open gives up when ctx is done. After
// close, get fails with errPoliciesClosed.
func (c *policyCache) get(ctx context.Context, name string, open func(context.Context) (ca.Issuer, error)) (ca.Issuer, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errPoliciesClosed
	}
	p := c.cas[name]
	if p == nil {
		if c.cas == nil {
			c.cas = map[string]*cachedPolicy{}
		}
		p = &cachedPolicy{opening: make(chan struct{}, 1)}
		c.cas[name] = p
	}
	l := p.ca
	c.mu.Unlock()
	if l != nil {
		return l, nil
	}

	select {
	case p.opening <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w %q: wait for its CA: %w", ErrCredentialPolicy, name, ctx.Err())
	}
	defer func() { <-p.opening }()
	c.mu.Lock()
	l, closed := p.ca, c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return nil, errPoliciesClosed
	case l != nil: // opened while this caller waited
		return l, nil
	}
	l, err := open(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		l.Close()
		return nil, errPoliciesClosed
	}
	p.ca = l
	return l, nil
}

// close closes the open CAs; later gets fail. A certificate being issued
// meanwhile may fail.
func (c *policyCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for name, p := range c.cas {
		if p.ca != nil {
			if err := p.ca.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close the CA of credential policy %q: %w", name, err))
			}
			p.ca = nil
		}
	}
	c.cas = nil
	return errors.Join(errs...)
}

// parseDeviceCSR checks a register request's csr: base64 of a DER
// PKCS#10 request whose signature verifies, whose CN is the registration
// ID and which package ca's signing policy accepts. 400 otherwise.
func parseDeviceCSR(s, regID string) (*x509.CertificateRequest, *apiError) {
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, badRequest(enroll.CodeBadBody, "csr is not base64: send the DER PKCS#10 request, base64-encoded, without PEM headers")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, badRequest(enroll.CodeBadBody, "csr is not a DER PKCS#10 certificate signing request: %v", err)
	}
	if !strings.EqualFold(csr.Subject.CommonName, regID) {
		return nil, badRequest(enroll.CodeBadBody, "csr's CN %q is not the registration ID %q", csr.Subject.CommonName, regID)
	}
	if err := (ca.Policy{}).Check(csr, csr.Subject.CommonName); err != nil {
		return nil, badRequest(enroll.CodeBadBody, "csr: %v", err)
	}
	return csr, nil
}

// credentialPolicy is the credential policy a registration's CSR is
// issued under: its enrollment's, else its group's; 400 when neither
// names one.
func (a *attestation) credentialPolicy(regID string) (string, *apiError) {
	var name, whose string
	switch {
	case a.enrollment != nil:
		name, whose = a.enrollment.CredentialPolicyName, fmt.Sprintf("enrollment %q", a.enrollment.RegistrationID)
	case a.group != nil:
		name, whose = a.group.CredentialPolicyName, fmt.Sprintf("enrollment group %q", a.group.EnrollmentGroupID)
	}
	if name == "" {
		return "", badRequest(enroll.CodeBadBody, "registration %q sent a csr, and its %s names no credentialPolicyName: no certificate can be issued (set one with api-version %s, or register without a csr)", regID, whose, csrAPIVersion)
	}
	if err := CheckPolicyName(name); err != nil {
		return "", badRequest(enroll.CodeBadBody, "the %s: %v", whose, err)
	}
	return name, nil
}
