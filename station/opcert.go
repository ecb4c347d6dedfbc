package station

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"zerotouch/enroll"
	"zerotouch/enroll/device"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/flasher"
	"zerotouch/station/records"
)

// DefaultOperationalCertificatePath is the file a zerotouch board writes
// the chain DPS issued it to, when operational_certificate.path is left
// out (a stock board's default is in flasher.StockMount).
const DefaultOperationalCertificatePath = "/lfs/zerotouch/operational.pem"

// OperationalCertificateConfig is a line whose boards get their
// operational certificate from DPS at their first registration: the
// station names the credential policy on each board's enrollment (or the
// line's enrollment group), the board's configuration asks the board to
// send a CSR when it registers, and the end-of-line registration check
// reads the chain the board kept and verifies it.
type OperationalCertificateConfig struct {
	// CredentialPolicy is the Azure Device Registry credential policy
	// DPS issues the certificates under (credentialPolicyName): 3 to 50
	// letters, digits and hyphens, starting and ending with a letter or
	// digit.
	CredentialPolicy string `yaml:"credential_policy"`
	// Path is the file on the board the board writes the issued chain
	// to (PEM, device certificate first); default
	// DefaultOperationalCertificatePath.
	Path string `yaml:"path"`
	// Roots is a PEM file of the CA certificates the chain must verify
	// to (the policy's root); empty: the chain must verify to the root
	// it ends in.
	Roots string `yaml:"roots"`
}

// CredentialPolicy is the credential policy the line's enrollments name:
// operational_certificate.credential_policy, or "" for a line without
// operational certificates.
func (c *Config) CredentialPolicy() string {
	if c.OperationalCertificate == nil {
		return ""
	}
	return c.OperationalCertificate.CredentialPolicy
}

// operationalCertificatePath is the file on the board that holds the
// issued chain, "" for a line without operational certificates.
func (c *Config) operationalCertificatePath() string {
	oc := c.OperationalCertificate
	switch {
	case oc == nil:
		return ""
	case oc.Path != "":
		return oc.Path
	case c.Board.Profile == ProfileStock:
		return flasher.StockMount + "/operational.pem"
	}
	return DefaultOperationalCertificatePath
}

// validateOperationalCertificate checks the operational_certificate
// section, when there is one.
func (c *Config) validateOperationalCertificate() error {
	oc := c.OperationalCertificate
	if oc == nil {
		return nil
	}
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch {
	case oc.CredentialPolicy == "":
		return bad("operational_certificate.credential_policy", "missing: the credential policy DPS issues the boards' certificates under, as default")
	case !enroll.CredentialPolicyNameOK(oc.CredentialPolicy):
		return bad("operational_certificate.credential_policy", "%q: %s", oc.CredentialPolicy, enroll.PolicyNameRule)
	}
	if !c.VerifyRegistration.Enabled {
		return bad("operational_certificate", "needs verify_registration.enabled: true: the end-of-line registration check is where the board gets its chain and the station verifies it")
	}
	p := c.operationalCertificatePath()
	switch {
	case !strings.HasPrefix(p, "/"):
		return bad("operational_certificate.path", "%q: want an absolute path on the board, as %s", p, DefaultOperationalCertificatePath)
	case p == "/" || path.Clean(p) != p:
		return bad("operational_certificate.path", "%q: want a clean path to a file on the board, as %s", p, DefaultOperationalCertificatePath)
	case strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return bad("operational_certificate.path", "%q holds a control character", p)
	}
	for _, f := range []struct{ field, path string }{
		{"template.path", c.Template.Path},
		{"template.certificate_path", c.Template.CertificatePath},
		{"template.key_path", c.Template.KeyPath},
		{"board.registration_path", c.Board.RegistrationPath},
	} {
		if f.path == p {
			return bad("operational_certificate.path", "%q is also %s: give the issued chain a file of its own", p, f.field)
		}
	}
	return nil
}

// ReadIssuerRoots reads operational_certificate.roots, the CA
// certificates (PEM) the chains DPS issues must verify to. It returns nil
// for a line without operational certificates or without roots, and a
// *ConfigError for a file that cannot be read or holds no certificate.
func ReadIssuerRoots(cfg *Config) (*x509.CertPool, error) {
	oc := cfg.OperationalCertificate
	if oc == nil || oc.Roots == "" {
		return nil, nil
	}
	data, err := os.ReadFile(oc.Roots)
	if err != nil {
		return nil, &ConfigError{Field: "operational_certificate.roots", Msg: err.Error()}
	}
	certs, err := parseChainPEM(data)
	if err == nil && len(certs) == 0 {
		err = errors.New("holds no PEM certificate")
	}
	if err != nil {
		return nil, &ConfigError{Field: "operational_certificate.roots", Msg: fmt.Sprintf("%s: %v", oc.Roots, err)}
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}

// parseChainPEM parses PEM CERTIFICATE blocks, in order; other blocks
// and text after the last block are errors.
func parseChainPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", len(out)+1, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("text that is not PEM after the certificates")
	}
	return out, nil
}

// checkOperationalTemplate checks that the line's template asks the board
// for its operational certificate: a json template whose output for d
// carries provisioning.operationalCertificate with issuer dps and the
// line's path.
func checkOperationalTemplate(cfg *Config, t *fwtemplates.Template, d fwtemplates.Data) error {
	p := cfg.operationalCertificatePath()
	if p == "" {
		return nil
	}
	bad := func(format string, args ...any) error {
		return &ConfigError{Field: "operational_certificate", Msg: fmt.Sprintf(format, args...)}
	}
	if t.Format != fwtemplates.FormatJSON {
		return bad("template %s is in the %s format, which cannot carry the board's request for its certificate: use the json template (template.name: json) or a json template of your own", t.Name, t.Format)
	}
	d.OperationalCertificatePath = p
	out, err := t.Render(d)
	if err != nil {
		return nil // CheckSample reports it
	}
	var doc struct {
		Provisioning struct {
			OperationalCertificate *struct {
				Issuer string `json:"issuer"`
				Path   string `json:"path"`
			} `json:"operationalCertificate"`
		} `json:"provisioning"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil // CheckSample reports it
	}
	if oc := doc.Provisioning.OperationalCertificate; oc == nil || oc.Issuer != "dps" || oc.Path != p {
		return bad("template %s does not write provisioning.operationalCertificate {\"issuer\": \"dps\", \"path\": .OperationalCertificatePath} (see the json template), so the boards would not ask DPS for their certificate", t.Name)
	}
	return nil
}

// ChainError is a board's issued chain that the station could not
// verify: Path is the file on the board it read.
type ChainError struct {
	Path string
	Err  error
}

func (e *ChainError) Error() string { return "issued chain " + e.Path + ": " + e.Err.Error() }
func (e *ChainError) Unwrap() error { return e.Err }

// verifyIssuedChain reads the chain DPS issued to the board, which the
// board wrote to operational_certificate.path at its registration, checks
// it (device.VerifyIssuedChain, against the line's roots when it has
// them) and keeps it in reg.
func (r *run) verifyIssuedChain(ctx context.Context, c *flasher.Client, rec *records.Record, reg *records.Registration) error {
	s := r.s
	p := s.cfg.operationalCertificatePath()
	data, err := c.FileDownload(ctx, p, nil)
	if err != nil {
		return r.fail(fmt.Sprintf("the board registered but its operational certificate (%s) could not be read: does its firmware ask DPS for one (json configuration, provisioning.operationalCertificate)? Press Retry; if it fails again, set the board aside for the line engineer", p),
			&ChainError{Path: p, Err: err})
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return r.fail(fmt.Sprintf("the board registered but kept no operational certificate in %s: does its firmware ask DPS for one (json configuration, provisioning.operationalCertificate)? Set the board aside and call the line engineer", p),
			&ChainError{Path: p, Err: errors.New("empty: DPS issued no chain, or the board did not keep it")})
	}
	chain, err := parseChainPEM(data)
	if err == nil && len(chain) == 0 {
		err = errors.New("holds no certificate")
	}
	if err == nil {
		err = device.VerifyIssuedChain(chain, nil, rec.RegistrationID, s.deps.IssuerRoots, s.deps.Now())
	}
	if err != nil {
		what := "does not verify"
		if s.deps.IssuerRoots != nil {
			what = "does not verify to the line's roots (operational_certificate.roots)"
		}
		return r.fail(fmt.Sprintf("the operational certificate DPS issued to this board %s: set the board aside and call the line engineer (credential policy %s)", what, s.cfg.CredentialPolicy()),
			&ChainError{Path: p, Err: err})
	}
	reg.IssuedChain = string(data)
	return nil
}
