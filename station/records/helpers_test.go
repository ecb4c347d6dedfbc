package records_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"zerotouch/enroll"
	"zerotouch/station/records"
)

// newTestStore opens a store in a fresh folder and closes it at the end
// of the test. It returns the store and the database's path.
func newTestStore(t testing.TB) (*records.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "zerotouch.db")
	s, err := records.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// rawDB opens the database file directly, behind the store's back.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fakeEK makes a TPM2B_PUBLIC-shaped blob (size prefix, then bytes)
// unique to i.
func fakeEK(i int) []byte {
	body := make([]byte, 64)
	copy(body, fmt.Sprintf("ek-%08d", i))
	b := binary.BigEndian.AppendUint16(nil, uint16(len(body)))
	return append(b, body...)
}

// tpmRegID derives the registration ID from an EK as the Azure device
// SDKs do: lower-case base32 of SHA-256 over the TPM2B bytes, unpadded.
func tpmRegID(ek []byte) string {
	sum := sha256.Sum256(ek)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
}

// tpmRecord is a passed board in the tpm mode with the i-th EK.
func tpmRecord(serial string, i int) *records.Record {
	ek := fakeEK(i)
	id := tpmRegID(ek)
	return &records.Record{
		Serial: serial, Model: "zt-1", HW: "rev-b", Firmware: "1.2.0",
		Attestation: records.AttestationTPM, RegistrationID: id, DeviceID: "dev-" + serial,
		EKPublic: ek, EKFingerprint: fmt.Sprintf("%x", sha256.Sum256(ek)),
		ConfigSHA256: []byte("0123456789abcdef0123456789abcdef"), ConfigPath: "/lfs/config.json",
		Station: "st-1", Line: "line-a", Slot: "1", Operator: "ana", WorkOrder: "wo-7",
		Result: records.ResultPassed,
		Enrollment: &enroll.Enrollment{RegistrationID: id, DeviceID: "dev-" + serial,
			Attestation: enroll.Attestation{Type: enroll.AttestationTPM,
				TPM: &enroll.TPMAttestation{EndorsementKey: base64.StdEncoding.EncodeToString(ek)}}},
	}
}

// x509Record is a passed board in the x509-keygen mode with a
// certificate for regID.
func x509Record(t testing.TB, serial, regID string) *records.Record {
	t.Helper()
	certPEM, notAfter, certSerial := newTestCert(t, regID)
	return &records.Record{
		Serial: serial, Model: "zt-2", Attestation: records.AttestationX509Keygen, RegistrationID: regID,
		CertificateChain: certPEM, CertSerial: certSerial, CertNotAfter: notAfter,
		Station: "st-1", Slot: "2", Operator: "ana", Result: records.ResultPassed,
		Enrollment: &enroll.Enrollment{RegistrationID: regID, Attestation: enroll.Attestation{Type: enroll.AttestationX509,
			X509: &enroll.X509Attestation{ClientCertificates: &enroll.X509Certificates{
				Primary: &enroll.X509Certificate{Certificate: certPEM}}}}},
	}
}

// groupRecord is a passed board in the symmetric-key (group) mode: it has
// nothing to enroll of its own.
func groupRecord(serial, regID string) *records.Record {
	return &records.Record{Serial: serial, Model: "zt-3", Attestation: records.AttestationSymmetricKey,
		RegistrationID: regID, Station: "st-1", Slot: "3", Result: records.ResultPassed}
}

func newTestCert(t testing.TB, cn string) (string, time.Time, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := time.Now().Add(24 * time.Hour).Truncate(time.Second).UTC()
	serial := big.NewInt(time.Now().UnixNano())
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), notAfter, serial.Text(16)
}

func save(t testing.TB, s *records.Store, r *records.Record) records.SaveResult {
	t.Helper()
	res, err := s.Save(context.Background(), r)
	if err != nil {
		t.Fatalf("Save(%s): %v", r.Serial, err)
	}
	return res
}

func get(t testing.TB, s *records.Store, key string) *records.Record {
	t.Helper()
	r, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return r
}

func events(t testing.TB, s *records.Store, key string) []string {
	t.Helper()
	as, err := s.Audit(context.Background(), key)
	if err != nil {
		t.Fatalf("Audit(%q): %v", key, err)
	}
	var ev []string
	for _, a := range as {
		ev = append(ev, a.Event)
	}
	return ev
}

func counts(t testing.TB, s *records.Store) map[enroll.State]int {
	t.Helper()
	c, err := s.Counts(context.Background())
	if err != nil {
		t.Fatalf("Counts: %v", err)
	}
	return c
}
