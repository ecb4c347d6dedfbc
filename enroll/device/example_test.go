package device_test

import (
	"context"
	"crypto/tls"
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
