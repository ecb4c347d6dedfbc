package tpm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// NV indices of EK certificates (TCG EK Credential Profile 2.0, 2.2.1.4).
const (
	EKCertIndexRSA = tpm2.TPMHandle(0x01C00002)
	EKCertIndexECC = tpm2.TPMHandle(0x01C0000A)
)

// EKCertStatus is the outcome of checking an EK certificate.
type EKCertStatus int

const (
	// EKCertVerified: the certificate chains to a configured vendor
	// certificate and certifies this EK.
	EKCertVerified EKCertStatus = iota + 1
	// EKCertAbsent: the TPM holds no EK certificate for this EK's type.
	EKCertAbsent
	// EKCertUntrusted: the certificate does not chain to any configured
	// vendor certificate (or none is configured).
	EKCertUntrusted
	// EKCertMismatch: the certificate is for another key.
	EKCertMismatch
	// EKCertUnreadable: the index could not be read, or does not hold a
	// certificate.
	EKCertUnreadable
)

var ekCertStatusNames = map[EKCertStatus]string{
	EKCertVerified: "verified", EKCertAbsent: "absent", EKCertUntrusted: "untrusted",
	EKCertMismatch: "mismatch", EKCertUnreadable: "unreadable",
}

func (s EKCertStatus) String() string {
	if n, ok := ekCertStatusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("EKCertStatus(%d)", int(s))
}

// MarshalText writes the status's name, for JSON and records.
func (s EKCertStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a status's name.
func (s *EKCertStatus) UnmarshalText(b []byte) error {
	for k, n := range ekCertStatusNames {
		if n == string(b) {
			*s = k
			return nil
		}
	}
	return fmt.Errorf("EK certificate status %q: want verified, absent, untrusted, mismatch or unreadable", b)
}

// EKCert is an EK certificate as found in the TPM, and what its check
// concluded.
type EKCert struct {
	Status EKCertStatus
	Index  tpm2.TPMHandle // the NV index it was read from
	// DER is the certificate without the vendor's wrapper or padding; nil
	// when absent or unreadable.
	DER  []byte
	Cert *x509.Certificate
	// Chain is the verified chain, from the certificate to a vendor root.
	Chain []*x509.Certificate
	// ForTCGEK is true when the certificate is for the EK the TCG default
	// template makes in this TPM rather than for the EK at 0x81010001:
	// the usual case when the EK there was made with the Azure template.
	// The certificate then proves the TPM genuine; the enrolled EK comes
	// from the same endorsement seed.
	ForTCGEK bool
	// Err says why the status is not verified, in words for the operator;
	// it is an *Error naming the board and the step.
	Err error
}

// Vendors is a bundle of TPM vendor certificates: self-signed ones are
// roots, the others intermediates.
type Vendors struct {
	roots, intermediates *x509.CertPool
	n                    int
}

// Len returns how many certificates the bundle holds.
func (v *Vendors) Len() int {
	if v == nil {
		return 0
	}
	return v.n
}

// ParseVendors reads vendor certificates from PEM (any number of
// CERTIFICATE blocks) or from one DER certificate, as vendors publish
// them.
func ParseVendors(data []byte) (*Vendors, error) {
	v := &Vendors{roots: x509.NewCertPool(), intermediates: x509.NewCertPool()}
	if err := v.add(data, "bundle"); err != nil {
		return nil, err
	}
	return v, nil
}

// LoadVendors reads vendor certificates from files, or from every file in
// directories, each PEM or DER.
func LoadVendors(paths ...string) (*Vendors, error) {
	v := &Vendors{roots: x509.NewCertPool(), intermediates: x509.NewCertPool()}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("TPM vendor certificates: %w", err)
		}
		files := []string{p}
		if st.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, fmt.Errorf("TPM vendor certificates: %w", err)
			}
			files = files[:0]
			for _, e := range entries {
				// Stat follows links, as in c_rehash folders and
				// mounted secrets.
				f := filepath.Join(p, e.Name())
				if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() {
					files = append(files, f)
				}
			}
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("TPM vendor certificates: %w", err)
			}
			// In a folder, files that hold no certificate (CRLs, notes)
			// are passed over; a file named on its own must be one.
			if err := v.add(data, f); err != nil && (!st.IsDir() || errors.Is(err, errBadCert)) {
				return nil, err
			}
		}
	}
	if v.n == 0 {
		return nil, fmt.Errorf("TPM vendor certificates: no certificate in %s", strings.Join(paths, ", "))
	}
	return v, nil
}

// errBadCert: a file that looks like a certificate does not parse.
var errBadCert = errors.New("certificate does not parse")

func (v *Vendors) add(data []byte, name string) error {
	var ders [][]byte
	if bytes.Contains(data, []byte("-----BEGIN")) {
		for rest := data; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type == "CERTIFICATE" {
				ders = append(ders, b.Bytes)
			}
		}
	} else {
		ders = append(ders, data)
	}
	if len(ders) == 0 {
		return fmt.Errorf("TPM vendor certificates %s: no certificate found", name)
	}
	for i, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			if len(ders) == 1 && !bytes.Contains(data, []byte("-----BEGIN")) {
				// One DER blob: it may be something else (a CRL).
				return fmt.Errorf("TPM vendor certificates %s: not a certificate: %w", name, err)
			}
			return fmt.Errorf("TPM vendor certificates %s, certificate %d: %w: %w", name, i+1, errBadCert, err)
		}
		if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			v.roots.AddCert(c)
		} else {
			v.intermediates.AddCert(c)
		}
		v.n++
	}
	return nil
}

// EKCertificate reads and checks the certificate of ek from its NV index
// (EKCertIndexRSA for an RSA EK, EKCertIndexECC for an ECC one): that it
// certifies ek, or else the EK the TCG template makes in the same TPM
// (made for the comparison and flushed: on a real TPM an RSA primary key
// can take seconds), and that it chains to vendors. The outcome is in the
// result's Status; only a cancelled ctx or a failed link (ErrTransport)
// is returned as an error, as the board cannot be judged.
func (d *Device) EKCertificate(ctx context.Context, ek *Public, vendors *Vendors) (*EKCert, error) {
	index := EKCertIndexRSA
	if ek.pub.Type == tpm2.TPMAlgECC {
		index = EKCertIndexECC
	}
	step := fmt.Sprintf("read EK certificate at 0x%08x", uint32(index))
	if err := d.ctxErr(ctx, step); err != nil {
		return nil, err
	}
	res := &EKCert{Index: index}
	data, err := d.readNV(index)
	switch {
	case errors.Is(err, ErrTransport):
		return nil, d.fail(step, err)
	case errors.Is(err, errNVAbsent):
		res.Status = EKCertAbsent
		res.Err = d.fail(step, errors.New("the TPM holds no EK certificate"))
		return res, nil
	case err != nil:
		res.Status = EKCertUnreadable
		res.Err = d.fail(step, err)
		return res, nil
	}
	der, cert, err := ParseEKCertificate(data)
	if err != nil {
		res.Status = EKCertUnreadable
		res.Err = d.fail(step, err)
		return res, nil
	}
	res.DER, res.Cert = der, cert

	checkStep := "check EK certificate"
	type equaler interface{ Equal(crypto.PublicKey) bool }
	k, ok := cert.PublicKey.(equaler)
	if !ok || !k.Equal(ek.Key) {
		// Vendors certify the EK the TCG template makes; an EK made with
		// the Azure template is another key from the same seed.
		tcg, err := d.tcgEK(ek)
		if errors.Is(err, ErrTransport) {
			return nil, d.fail(checkStep, err)
		}
		if err != nil || !ok || !k.Equal(tcg) {
			res.Status = EKCertMismatch
			res.Err = d.fail(checkStep, errors.New("the certificate is for another key than this TPM's EK (at 0x81010001, or made with the TCG template): the TPM or its NV was tampered with or mixed up"))
			if err != nil {
				res.Err = d.fail(checkStep, fmt.Errorf("the certificate is for another key than the EK at 0x81010001, and the TCG template's EK could not be made to compare: %w", err))
			}
			return res, nil
		}
		res.ForTCGEK = true
	}
	if vendors.Len() == 0 {
		res.Status = EKCertUntrusted
		res.Err = d.fail(checkStep, errors.New("no TPM vendor certificates are configured to check it against"))
		return res, nil
	}
	chains, err := cert.Verify(x509.VerifyOptions{
		Roots:         vendors.roots,
		Intermediates: vendors.intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		res.Status = EKCertUntrusted
		res.Err = d.fail(checkStep, fmt.Errorf("issued by %q, which does not chain to a configured TPM vendor certificate: %w", cert.Issuer, err))
		return res, nil
	}
	res.Chain = chains[0]
	res.Status = EKCertVerified
	return res, nil
}

// tcgEK makes, and flushes, the EK of the TCG default template of ek's
// type (TPM2_CreatePrimary, which creates nothing persistent), and returns
// its public key.
func (d *Device) tcgEK(ek *Public) (crypto.PublicKey, error) {
	tmpl := tpm2.RSAEKTemplate
	if ek.pub.Type == tpm2.TPMAlgECC {
		tmpl = tpm2.ECCEKTemplate
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(d.tpm)
	if err != nil {
		return nil, tpmErr(err)
	}
	d.flush(rsp.ObjectHandle)
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return tpm2.Pub(*pub)
}

// errNVAbsent: the NV index is not defined, or never written.
var errNVAbsent = errors.New("NV index absent")

// readNV reads the whole of an NV index (TPM2_NV_ReadPublic and
// TPM2_NV_Read, Part 3, 31.6 and 31.13) in chunks the TPM accepts, with an
// empty password: the index's own if its attributes allow reading with
// it, the owner's if not, the platform's as a last choice.
func (d *Device) readNV(index tpm2.TPMHandle) ([]byte, error) {
	rp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(d.tpm)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, errNVAbsent
	}
	if err != nil {
		return nil, tpmErr(err)
	}
	pub, err := rp.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("%w: NV public area: %w", ErrMalformed, err)
	}
	if !pub.Attributes.Written {
		return nil, errNVAbsent
	}
	auth := tpm2.AuthHandle{Handle: index, Name: rp.NVName, Auth: tpm2.PasswordAuth(nil)}
	switch {
	case pub.Attributes.AuthRead:
	case pub.Attributes.OwnerRead:
		auth = tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	case pub.Attributes.PPRead:
		auth = tpm2.AuthHandle{Handle: tpm2.TPMRHPlatform, Auth: tpm2.PasswordAuth(nil)}
	default:
		return nil, errors.New("the NV index is readable only with a policy")
	}
	chunk := d.nvBufferMax()
	out := make([]byte, 0, pub.DataSize)
	for off := 0; off < int(pub.DataSize); {
		n := min(chunk, int(pub.DataSize)-off)
		rsp, err := tpm2.NVRead{
			AuthHandle: auth,
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: rp.NVName},
			Size:       uint16(n),
			Offset:     uint16(off),
		}.Execute(d.tpm)
		if err != nil {
			return nil, tpmErr(err)
		}
		if len(rsp.Data.Buffer) != n {
			return nil, fmt.Errorf("%w: asked for %d NV bytes, got %d", ErrMalformed, n, len(rsp.Data.Buffer))
		}
		out = append(out, rsp.Data.Buffer...)
		off += n
	}
	return out, nil
}

// nvBufferMax returns the largest NV read the TPM takes at once
// (TPM_PT_NV_BUFFER_MAX), or 512 if it will not say.
func (d *Device) nvBufferMax() int {
	if d.nvMax > 0 {
		return d.nvMax
	}
	d.nvMax = 512
	rsp, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTNVBufferMax),
		PropertyCount: 1,
	}.Execute(d.tpm)
	if err != nil {
		return d.nvMax
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err == nil && len(props.TPMProperty) == 1 && props.TPMProperty[0].Property == tpm2.TPMPTNVBufferMax {
		if v := int(props.TPMProperty[0].Value); v >= 64 && v <= 4096 {
			d.nvMax = v
		}
	}
	return d.nvMax
}

// tcgWrapper is the header some TPMs put before the certificate in NV: a
// tag 0x1001, a zero byte and a 2-byte length.
var tcgWrapper = []byte{0x10, 0x01, 0x00}

var oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

// ParseEKCertificate parses an EK certificate as TPM vendors ship it in
// NV: plain DER, DER after a 5-byte TCG header, or PEM; trailing padding
// (0x00 or 0xFF) after the DER is ignored. It returns the bare DER too.
// A critical subject alternative name that holds only the TPM's directory
// name (manufacturer, model, version, as the TCG profile puts it) is
// accepted, where crypto/x509 would leave it unhandled.
func ParseEKCertificate(data []byte) ([]byte, *x509.Certificate, error) {
	if b, _ := pem.Decode(data); b != nil && b.Type == "CERTIFICATE" {
		data = b.Bytes
	}
	if bytes.HasPrefix(data, tcgWrapper) && len(data) >= 5 {
		n := int(binary.BigEndian.Uint16(data[3:5]))
		if n > len(data)-5 {
			return nil, nil, fmt.Errorf("EK certificate: header says %d bytes, only %d follow", n, len(data)-5)
		}
		data = data[5 : 5+n]
	}
	in := cryptobyte.String(data)
	var der cryptobyte.String
	if !in.ReadASN1Element(&der, cbasn1.SEQUENCE) {
		return nil, nil, errors.New("EK certificate: not a DER certificate")
	}
	if !padding(in) {
		return nil, nil, fmt.Errorf("EK certificate: %d unexpected bytes after the certificate", len(in))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("EK certificate: %w", err)
	}
	kept := cert.UnhandledCriticalExtensions[:0]
	for _, oid := range cert.UnhandledCriticalExtensions {
		if !oid.Equal(oidSAN) {
			kept = append(kept, oid)
		}
	}
	cert.UnhandledCriticalExtensions = kept
	return der, cert, nil
}

// padding reports whether b is empty or one byte, 0x00 or 0xFF, repeated.
func padding(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	for _, c := range b {
		if c != b[0] || c != 0 && c != 0xFF {
			return false
		}
	}
	return true
}
