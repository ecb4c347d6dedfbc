package device_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"log"
	"os"

	"zerotouch/enroll"
	"zerotouch/enroll/device"
	"zerotouch/enroll/emulator"
)

// A board of an enrollment group registers with the key derived from the
// group's, against the DPS emulator.
func ExampleRegister() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "dps-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	dps, err := emulator.Start(ctx, "127.0.0.1:0", dir, emulator.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer dps.Close()

	// The line enrolls the group once, through the service API.
	cs, _ := enroll.ParseConnectionString(dps.ConnectionString)
	svc, err := enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: dps.CAFile})
	if err != nil {
		log.Fatal(err)
	}
	groupKey := []byte("the line's group key, kept secret")
	_, err = svc.CreateOrUpdateGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "line-7", Attestation: enroll.Attestation{
		Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(groupKey)}}}, "")
	if err != nil {
		log.Fatal(err)
	}

	// The board, on its first boot.
	roots, err := enroll.LoadCAFile(dps.CAFile)
	if err != nil {
		log.Fatal(err)
	}
	res, err := device.Register(ctx, device.Config{
		GlobalEndpoint: dps.URL,
		IDScope:        dps.IDScope,
		RegistrationID: "zt-000123",
		SymmetricKey:   device.DeriveKey(groupKey, "zt-000123"),
		TLS:            &tls.Config{RootCAs: roots},
	})
	switch {
	case errors.Is(err, device.ErrUnauthorized):
		log.Fatal("the board's key is not the group's: ", err)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println(res.Status, "to", res.AssignedHub, "as", res.DeviceID)
	// Output: assigned to zerotouch-demo.azure-devices.net as zt-000123
}

// A board asks for its operational certificate at its first boot: it
// makes its key, sends the CSR with its registration, and DPS issues the
// certificate under the credential policy its group names.
func ExampleRegister_certificate() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "dps-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	dps, err := emulator.Start(ctx, "127.0.0.1:0", dir, emulator.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer dps.Close()

	// The group names the credential policy (api-version 2026-04-01).
	cs, _ := enroll.ParseConnectionString(dps.ConnectionString)
	svc, err := enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: dps.CAFile})
	if err != nil {
		log.Fatal(err)
	}
	groupKey := []byte("the line's group key, kept secret")
	_, err = svc.CreateOrUpdateGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: "line-7", CredentialPolicyName: emulator.DefaultCredentialPolicy,
		Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(groupKey)}}}, "")
	if err != nil {
		log.Fatal(err)
	}

	// The board makes its key, which never leaves it, and the CSR.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "zt-000124"}}, key)
	if err != nil {
		log.Fatal(err)
	}
	roots, err := enroll.LoadCAFile(dps.CAFile)
	if err != nil {
		log.Fatal(err)
	}
	res, err := device.Register(ctx, device.Config{
		GlobalEndpoint: dps.URL,
		IDScope:        dps.IDScope,
		RegistrationID: "zt-000124",
		SymmetricKey:   device.DeriveKey(groupKey, "zt-000124"),
		TLS:            &tls.Config{RootCAs: roots},
		CSR:            csr,
	})
	switch {
	case errors.Is(err, device.ErrBadRequest):
		log.Fatal("DPS refused the CSR (no credential policy on the enrollment, or an api-version without csr): ", err)
	case errors.Is(err, device.ErrCertificate):
		log.Fatal("the issued chain is not the board's: ", err)
	case err != nil:
		log.Fatal(err)
	}
	chain := res.IssuedCertificateChain
	fmt.Println(len(chain), "certificates:", chain[0].Subject.CommonName, "up to", chain[len(chain)-1].Subject.CommonName)
	// Output: 3 certificates: zt-000124 up to DPS emulator policy default Root CA
}
