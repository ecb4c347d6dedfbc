package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"text/template"
	"time"

	"go.step.sm/crypto/x509util"
)

// ErrTemplate means the device certificate template cannot be used: it
// does not parse, or what it makes is not a device certificate.
var ErrTemplate = errors.New("device certificate template")

// DefaultTemplate is the device certificate: the registration ID as the
// only subject field, no SANs, client authentication only, not a CA. It is
// an x509util JSON template; .Subject.CommonName is the registration ID
// and .Insecure.CR the board's CSR.
const DefaultTemplate = `{
	"subject": {"commonName": {{ toJson .Subject.CommonName }}},
{{- if typeIs "*rsa.PublicKey" .Insecure.CR.PublicKey }}
	"keyUsage": ["digitalSignature", "keyEncipherment"],
{{- else }}
	"keyUsage": ["digitalSignature"],
{{- end }}
	"extKeyUsage": ["clientAuth"],
	"basicConstraints": {"isCA": false}
}`

// Template is a device certificate template, checked when loaded.
type Template struct {
	name   string // file name, or "built-in"
	text   string
	parsed *template.Template // parsed once: parsing costs more than signing
}

// LoadTemplate reads an x509util JSON template from file, or returns the
// built-in one when file is empty. The template is tried on sample CSRs
// (ECDSA P-256, and RSA 2048 unless rsa is false) so that a broken
// template stops the station before the first board, not at it.
func LoadTemplate(file string, rsa bool) (*Template, error) {
	t := &Template{name: "built-in", text: DefaultTemplate}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrTemplate, err)
		}
		t = &Template{name: file, text: string(b)}
	}
	var err error
	if t.parsed, err = template.New("device").Funcs(x509util.GetFuncMap()).Parse(t.text); err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrTemplate, t.name, err)
	}
	if err := t.check(rsa); err != nil {
		return nil, err
	}
	return t, nil
}

// Text returns the template's source.
func (t *Template) Text() string { return t.text }

func (t *Template) check(withRSA bool) error {
	keys := []crypto.Signer{}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	keys = append(keys, ec)
	if withRSA {
		rk, err := sampleRSAKey()
		if err != nil {
			return err
		}
		keys = append(keys, rk)
	}
	const sampleID = "sample-device-0001"
	for _, k := range keys {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: sampleID}}, k)
		if err != nil {
			return err
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return err
		}
		if _, err := t.certificate(csr, sampleID, time.Hour, time.Now()); err != nil {
			return fmt.Errorf("%w (sample %T key)", err, k.Public())
		}
	}
	return nil
}

// sampleRSAKey is made once per process: a 2048-bit key takes a while,
// and it only ever signs sample CSRs.
var sampleRSAKey = sync.OnceValues(func() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
})

// execute is x509util.WithTemplate for the parsed template. A template's
// `fail "message"` stops it with that message.
func (t *Template) execute(data x509util.TemplateData) x509util.Option {
	return func(cr *x509.CertificateRequest, o *x509util.Options) error {
		var failed string
		tmpl, err := t.parsed.Clone()
		if err != nil {
			return err
		}
		tmpl.Funcs(template.FuncMap{"fail": func(msg string) (string, error) {
			failed = msg
			return "", errors.New(msg)
		}})
		data.SetCertificateRequest(cr)
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, data); err != nil {
			if failed != "" {
				return errors.New(failed)
			}
			return fmt.Errorf("execute: %w", err)
		}
		o.CertBuffer = &buf
		return nil
	}
}

// certificate renders the template for csr (whose signature the caller
// has checked) and checks that the result is
// a device certificate for registrationID. The serial number is always a
// fresh random 128-bit number; the validity is the template's if it sets
// one, else now−1 min to now+validity.
func (t *Template) certificate(csr *x509.CertificateRequest, registrationID string, validity time.Duration, now time.Time) (*x509.Certificate, error) {
	data := x509util.CreateTemplateData(registrationID, nil)
	// The policy has checked the CSR's signature; NewCertificateFromX509
	// does not check it again. The template sees the CSR's key, subject
	// and requested names and extensions as .Insecure.CR.
	c, err := x509util.NewCertificateFromX509(&x509.Certificate{
		PublicKey:          csr.PublicKey,
		PublicKeyAlgorithm: csr.PublicKeyAlgorithm,
		Subject:            csr.Subject,
		DNSNames:           csr.DNSNames,
		EmailAddresses:     csr.EmailAddresses,
		IPAddresses:        csr.IPAddresses,
		URIs:               csr.URIs,
		ExtraExtensions:    csr.Extensions,
	}, t.execute(data))
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrTemplate, t.name, err)
	}
	cert := c.GetCertificate()
	if cert.Subject.CommonName != registrationID {
		return nil, fmt.Errorf("%w %s: subject CN is %q, want the registration ID", ErrTemplate, t.name, cert.Subject.CommonName)
	}
	if cert.IsCA {
		return nil, fmt.Errorf("%w %s: makes a CA certificate", ErrTemplate, t.name)
	}
	if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return nil, fmt.Errorf("%w %s: extKeyUsage lacks clientAuth", ErrTemplate, t.name)
	}
	cert.SerialNumber = nil
	if cert.NotBefore.IsZero() {
		cert.NotBefore = now.Add(-time.Minute).UTC().Truncate(time.Second)
	}
	if cert.NotAfter.IsZero() {
		cert.NotAfter = now.Add(validity).UTC().Truncate(time.Second)
	}
	if !cert.NotAfter.After(cert.NotBefore) {
		return nil, fmt.Errorf("%w %s: notAfter %s is not after notBefore %s", ErrTemplate, t.name, cert.NotAfter, cert.NotBefore)
	}
	return cert, nil
}
