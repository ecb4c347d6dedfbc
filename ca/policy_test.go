package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
)

func sampleCSR(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device-1"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestParseCSR(t *testing.T) {
	der := sampleCSR(t)
	block := func(typ string) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	for _, tt := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"DER", der, true},
		{"PEM", block("CERTIFICATE REQUEST"), true},
		{"old PEM type", block("NEW CERTIFICATE REQUEST"), true},
		{"certificate PEM", block("CERTIFICATE"), false},
		{"two blocks", append(block("CERTIFICATE REQUEST"), block("CERTIFICATE REQUEST")...), false},
		{"truncated", der[:len(der)/2], false},
		{"empty", nil, false},
		{"text", []byte("hello"), false},
	} {
		csr, err := ParseCSR(tt.in)
		if tt.ok && (err != nil || csr.Subject.CommonName != "device-1") {
			t.Errorf("ParseCSR(%s) = %v, %v; want the CSR", tt.name, csr, err)
		}
		if !tt.ok && !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseCSR(%s) = %v, %v; want ErrMalformed", tt.name, csr, err)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := (Policy{KeyTypes: []KeyType{"dsa"}}).Validate(); err == nil || !strings.Contains(err.Error(), `"dsa"`) {
		t.Errorf("Validate(dsa) = %v, want an error naming it", err)
	}
	if err := (Policy{KeyTypes: []KeyType{ECDSAP256, RSA}, MinRSABits: 3072}).Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
}

func TestPolicyErrorWords(t *testing.T) {
	csr, _ := ParseCSR(sampleCSR(t))
	err := Policy{KeyTypes: []KeyType{RSA}}.Check(csr, "device-1")
	want := `refuse CSR for "device-1": key type not allowed: ecdsa-p256 (allowed: rsa ≥ 2048)`
	if err == nil || err.Error() != want {
		t.Fatalf("Check = %v, want %s", err, want)
	}
}

// FuzzParseCSR: any input gives a CSR or ErrMalformed, and the policy
// never panics on what parses.
func FuzzParseCSR(f *testing.F) {
	der := sampleCSR(f)
	f.Add(der)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		csr, err := ParseCSR(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseCSR error %v does not wrap ErrMalformed", err)
			}
			return
		}
		err = Policy{}.Check(csr, csr.Subject.CommonName)
		var pe *PolicyError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("Check error %v is not a *PolicyError", err)
		}
	})
}
