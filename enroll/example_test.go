package enroll_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
)

func ExampleParseConnectionString() {
	cs, err := enroll.ParseConnectionString("HostName=line1-dps.azure-devices-provisioning.net;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=c2VjcmV0")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cs) // the key is never printed
	// Output: HostName=line1-dps.azure-devices-provisioning.net;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=<hidden>
}

// An upload of a file's worth of enrollments, here to a DPS emulator:
// queue them in a state file, then let an Uploader drain it.
func ExampleUploader() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "enroll-example")
	defer os.RemoveAll(dir)
	srv, err := emulator.Start(ctx, "127.0.0.1:0", filepath.Join(dir, "dps"), emulator.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	cs, err := enroll.ParseConnectionString(srv.ConnectionString)
	if err != nil {
		log.Fatal(err)
	}
	client, err := enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: srv.CAFile})
	if err != nil {
		log.Fatal(err)
	}
	state, err := enroll.OpenStateFile(ctx, filepath.Join(dir, "upload.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer state.Close()
	var es []enroll.Enrollment
	for i := range 25 {
		es = append(es, enroll.Enrollment{
			RegistrationID: fmt.Sprintf("board-%04d", i),
			Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey,
				SymmetricKey: &enroll.SymmetricKeyAttestation{}},
		})
	}
	if _, err := state.Add(ctx, es); err != nil {
		log.Fatal(err)
	}

	up, err := enroll.NewUploader(enroll.UploaderConfig{Client: client, Queue: state, Quota: 60000})
	if err != nil {
		log.Fatal(err)
	}
	stats, err := up.Run(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("uploaded %d, failed %d, conflicts %d\n", stats.Uploaded, stats.Failed, stats.Conflicts)

	e, err := client.Get(ctx, "board-0007")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.RegistrationID, e.Attestation.Type, e.ProvisioningStatus)
	// Output:
	// uploaded 25, failed 0, conflicts 0
	// board-0007 symmetricKey enabled
}

// An enrollment whose board gets its operational certificate from DPS at
// registration names a credential policy (api-version 2026-04-01, the
// client's default); a delete guarded by the etag read is refused once
// the enrollment has changed since.
func ExampleClient_Delete() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "enroll-example")
	defer os.RemoveAll(dir)
	srv, err := emulator.Start(ctx, "127.0.0.1:0", filepath.Join(dir, "dps"), emulator.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	cs, err := enroll.ParseConnectionString(srv.ConnectionString)
	if err != nil {
		log.Fatal(err)
	}
	client, err := enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: srv.CAFile})
	if err != nil {
		log.Fatal(err)
	}

	e := &enroll.Enrollment{RegistrationID: "board-0001", CredentialPolicyName: "line-7-ops",
		Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey}}
	first, err := client.CreateOrUpdate(ctx, e, "")
	if err != nil {
		log.Fatal(err)
	}
	e.DeviceID = "pump-0001"
	if _, err := client.CreateOrUpdate(ctx, e, first.ETag); err != nil {
		log.Fatal(err)
	}
	err = client.Delete(ctx, "board-0001", first.ETag) // stale: the update changed it
	fmt.Println(first.CredentialPolicyName, errors.Is(err, enroll.ErrPrecondition))
	now, err := client.Get(ctx, "board-0001")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(now.DeviceID, client.Delete(ctx, "board-0001", now.ETag))
	// Output:
	// line-7-ops true
	// pump-0001 <nil>
}
