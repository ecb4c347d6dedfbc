package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"

	"zerotouch/ca"
)

// A station's local CA: made once, then a board's CSR is signed for the
// registration ID the station derived.
func ExampleInit() {
	dir, _ := os.MkdirTemp("", "ca")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	issuer, err := ca.Init(ctx, dir, ca.InitOptions{Name: "Line 3", Password: []byte("from a file, not a flag")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer issuer.Close()

	// The board makes its key and CSR; here, a key in memory.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "sensor-0042"}}, key)
	csr, _ := ca.ParseCSR(der)

	cert, err := issuer.Issue(ctx, csr, "sensor-0042")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cert.Subject)
	fmt.Println(cert.Chain[1].Subject.CommonName, "<", cert.Root.Subject.CommonName)

	// A CSR whose CN is not the registration ID is refused.
	_, err = issuer.Issue(ctx, csr, "sensor-0043")
	fmt.Println(errors.Is(err, ca.ErrCommonName))
	// Output:
	// CN=sensor-0042
	// Line 3 Intermediate CA < Line 3 Root CA
	// true
}
