package tpm_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"zerotouch/tpm"
)

// testCA is a certificate authority standing in for a TPM vendor's.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newTestCA(t testing.TB, name string, parent *testCA) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Fake TPM Vendor"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	issuer, signer := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

var (
	oidTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
)

// issueEK makes an EK certificate as the TCG profile has vendors write
// them: an empty subject, and a critical subject alternative name holding
// only the TPM's manufacturer, model and version.
func (ca *testCA) issueEK(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	rdn, err := asn1.Marshal(pkix.RDNSequence{{
		{Type: oidTPMManufacturer, Value: "id:5A54454B"},
		{Type: oidTPMModel, Value: "zerotouch test"},
		{Type: oidTPMVersion, Value: "id:00010002"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: rdn}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(time.Now().UnixNano()),
		NotBefore:          time.Now().Add(-time.Hour),
		NotAfter:           time.Now().Add(24 * time.Hour),
		KeyUsage:           x509.KeyUsageKeyEncipherment,
		UnknownExtKeyUsage: []asn1.ObjectIdentifier{{2, 23, 133, 8, 1}},
		ExtraExtensions:    []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Critical: true, Value: san}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (ca *testCA) vendors(t testing.TB, more ...*testCA) *tpm.Vendors {
	t.Helper()
	var buf bytes.Buffer
	for _, c := range append([]*testCA{ca}, more...) {
		pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
	}
	v, err := tpm.ParseVendors(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// writeNV (re)defines an NV index readable with its own empty password,
// as EK certificate indices are, and writes data into it.
func writeNV(t testing.TB, tr transport.TPM, index tpm2.TPMHandle, data []byte) {
	t.Helper()
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	if rp, err := (tpm2.NVReadPublic{NVIndex: index}).Execute(tr); err == nil {
		if _, err := (tpm2.NVUndefineSpace{AuthHandle: owner, NVIndex: tpm2.NamedHandle{Handle: index, Name: rp.NVName}}).Execute(tr); err != nil {
			t.Fatalf("undefine %#x: %v", uint32(index), err)
		}
	}
	_, err := tpm2.NVDefineSpace{
		AuthHandle: owner,
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex: index,
			NameAlg: tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{
				OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true,
				NT: tpm2.TPMNTOrdinary,
			},
			DataSize: uint16(len(data)),
		}),
	}.Execute(tr)
	if err != nil {
		t.Fatalf("define %#x: %v", uint32(index), err)
	}
	rp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 512 {
		end := min(off+512, len(data))
		_, err := tpm2.NVWrite{
			AuthHandle: owner,
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: rp.NVName},
			Data:       tpm2.TPM2BMaxNVBuffer{Buffer: data[off:end]},
			Offset:     uint16(off),
		}.Execute(tr)
		if err != nil {
			t.Fatalf("write %#x at %d: %v", uint32(index), off, err)
		}
	}
}

func TestEKCertificate(t *testing.T) {
	sim := newSim(t, 4)
	d := tpm.New(sim, tpm.Options{Board: "ZT44"})
	ctx := testCtx(t)
	ek, err := d.EK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vendor := newTestCA(t, "Fake TPM Vendor Root", nil)
	other := newTestCA(t, "Someone Else's Root", nil)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := vendor.issueEK(t, ek.Key)
	// What vendors ship: a certificate for the TCG template's EK.
	tcgPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](createPrimaryTPM2B(t, sim, tpm2.New2B(tpm2.RSAEKTemplate))[2:])
	if err != nil {
		t.Fatal(err)
	}
	tcgKey, err := tpm2.Pub(*tcgPub)
	if err != nil {
		t.Fatal(err)
	}
	tcgCert := vendor.issueEK(t, tcgKey)
	garbage := make([]byte, 300)
	rand.Read(garbage)
	wrapped := append([]byte{0x10, 0x01, 0x00, byte(len(good) >> 8), byte(len(good))}, good...)

	tests := []struct {
		name    string
		nv      []byte // nil: no index
		vendors *tpm.Vendors
		want    tpm.EKCertStatus
	}{
		{"absent", nil, vendor.vendors(t), tpm.EKCertAbsent},
		{"verified", good, vendor.vendors(t), tpm.EKCertVerified},
		{"verified with 0xFF padding", append(bytes.Clone(good), bytes.Repeat([]byte{0xFF}, 100)...), vendor.vendors(t), tpm.EKCertVerified},
		{"verified with zero padding", append(bytes.Clone(good), make([]byte, 37)...), vendor.vendors(t), tpm.EKCertVerified},
		{"verified with TCG header and padding", append(wrapped, 0, 0, 0), vendor.vendors(t), tpm.EKCertVerified},
		{"verified for the TCG EK", tcgCert, vendor.vendors(t), tpm.EKCertVerified},
		{"TCG EK, untrusted chain", other.issueEK(t, tcgKey), vendor.vendors(t), tpm.EKCertUntrusted},
		{"TCG EK, no vendor certificates", tcgCert, nil, tpm.EKCertUntrusted},
		{"untrusted chain", other.issueEK(t, ek.Key), vendor.vendors(t), tpm.EKCertUntrusted},
		{"no vendor certificates", good, nil, tpm.EKCertUntrusted},
		{"key mismatch", vendor.issueEK(t, otherKey.Public()), vendor.vendors(t), tpm.EKCertMismatch},
		{"garbage", garbage, vendor.vendors(t), tpm.EKCertUnreadable},
		{"trailing junk", append(bytes.Clone(good), 1, 2, 3), vendor.vendors(t), tpm.EKCertUnreadable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.nv != nil {
				writeNV(t, sim, tpm.EKCertIndexRSA, tt.nv)
			}
			got, err := d.EKCertificate(ctx, ek, tt.vendors)
			if err != nil {
				t.Fatalf("EKCertificate: %v", err)
			}
			if got.Status != tt.want {
				t.Fatalf("EKCertificate status = %v (%v), want %v", got.Status, got.Err, tt.want)
			}
			if tt.want == tpm.EKCertVerified {
				forTCG := bytes.Equal(tt.nv, tcgCert)
				want := good
				if forTCG {
					want = tcgCert
				}
				if got.Err != nil || !bytes.Equal(got.DER, want) || len(got.Chain) != 2 || got.ForTCGEK != forTCG {
					t.Errorf("verified: err %v, DER matches %v, chain of %d, for the TCG EK %v (want %v)", got.Err, bytes.Equal(got.DER, want), len(got.Chain), got.ForTCGEK, forTCG)
				}
				return
			}
			var te *tpm.Error
			if !errors.As(got.Err, &te) || te.Board != "ZT44" || te.Step == "" {
				t.Errorf("%v: Err = %v, want an *Error naming the board and the step", got.Status, got.Err)
			}
			t.Logf("%v: %v", got.Status, got.Err)
		})
	}
}

// TestEKCertificateChain checks a certificate issued by a vendor's
// intermediate, with the bundle loaded from a folder of PEM and DER files.
func TestEKCertificateChain(t *testing.T) {
	sim := newSim(t, 5)
	d := tpm.New(sim, tpm.Options{})
	ek, err := d.EK(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	root := newTestCA(t, "Vendor Root", nil)
	inter := newTestCA(t, "Vendor EK CA 7", root)
	writeNV(t, sim, tpm.EKCertIndexRSA, inter.issueEK(t, ek.Key))

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.cer"), root.cert.Raw, 0o644)
	os.WriteFile(filepath.Join(dir, "inter.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: inter.cert.Raw}), 0o644)
	v, err := tpm.LoadVendors(dir)
	if err != nil || v.Len() != 2 {
		t.Fatalf("LoadVendors = %d certificates, %v; want 2", v.Len(), err)
	}
	got, err := d.EKCertificate(testCtx(t), ek, v)
	if err != nil || got.Status != tpm.EKCertVerified || len(got.Chain) != 3 {
		t.Fatalf("EKCertificate = %v (%v), chain of %d, %v; want verified through the intermediate", got.Status, got.Err, len(got.Chain), err)
	}
	// Without the intermediate the chain is broken.
	only, _ := tpm.LoadVendors(filepath.Join(dir, "root.cer"))
	if got, _ := d.EKCertificate(testCtx(t), ek, only); got.Status != tpm.EKCertUntrusted {
		t.Errorf("EKCertificate without the intermediate = %v, want untrusted", got.Status)
	}
	// In a folder, a file that is no certificate (a CRL) is passed over;
	// a folder with no certificate at all is an error.
	os.WriteFile(filepath.Join(dir, "vendor.crl"), []byte{0x30, 0x03, 0x02, 0x01, 0x01}, 0o644)
	if v, err := tpm.LoadVendors(dir); err != nil || v.Len() != 2 {
		t.Errorf("LoadVendors with a CRL in the folder = %d certificates, %v; want 2", v.Len(), err)
	}
	if _, err := tpm.LoadVendors(filepath.Join(dir, "vendor.crl")); err == nil {
		t.Errorf("LoadVendors of a CRL named on its own succeeded")
	}
	if _, err := tpm.LoadVendors(t.TempDir()); err == nil {
		t.Errorf("LoadVendors of an empty folder succeeded")
	}
	if _, err := tpm.LoadVendors(filepath.Join(dir, "missing")); err == nil {
		t.Errorf("LoadVendors of a missing file succeeded")
	}
	if _, err := tpm.ParseVendors([]byte("not a certificate")); err == nil {
		t.Errorf("ParseVendors of garbage succeeded")
	}
}

func TestParseEKCertificate(t *testing.T) {
	ca := newTestCA(t, "Vendor", nil)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der := ca.issueEK(t, key.Public())
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"DER", der, true},
		{"PEM", pemData, true},
		{"header", append([]byte{0x10, 0x01, 0x00, byte(len(der) >> 8), byte(len(der))}, der...), true},
		{"header longer than the data", append([]byte{0x10, 0x01, 0x00, 0xFF, 0xFF}, der...), false},
		{"mixed padding", append(bytes.Clone(der), 0, 0xFF), false},
		{"cut short", der[:len(der)-10], false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		got, cert, err := tpm.ParseEKCertificate(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseEKCertificate(%s) = %v, want ok=%v", tt.name, err, tt.ok)
			continue
		}
		if tt.ok {
			if !bytes.Equal(got, der) || len(cert.UnhandledCriticalExtensions) != 0 {
				t.Errorf("ParseEKCertificate(%s): DER matches %v, unhandled %v", tt.name, bytes.Equal(got, der), cert.UnhandledCriticalExtensions)
			}
		}
	}
}

func FuzzParseEKCertificate(f *testing.F) {
	ca := newTestCA(f, "Vendor", nil)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der := ca.issueEK(f, key.Public())
	f.Add(der)
	f.Add(append([]byte{0x10, 0x01, 0x00, byte(len(der) >> 8), byte(len(der))}, der...))
	f.Add([]byte{0x30, 0x82, 0x01})
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, cert, err := tpm.ParseEKCertificate(data)
		if err != nil {
			return
		}
		if !bytes.Equal(got, cert.Raw) {
			t.Errorf("returned DER is not the certificate's")
		}
		if _, err := x509.ParseCertificate(got); err != nil {
			t.Errorf("returned DER does not parse: %v", err)
		}
	})
}
