package enroll_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
)

// newEmulator starts a DPS emulator over HTTPS on loopback and returns it
// with a client that trusts its CA.
func newEmulator(t testing.TB, opts emulator.Options) (*emulator.Server, *enroll.Client) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if opts.DB == "" {
		opts.DB = filepath.Join(dir, "emulator.db")
	}
	srv, err := emulator.Start(ctx, "127.0.0.1:0", dir, opts)
	if err != nil {
		t.Fatalf("start emulator: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, newClient(t, srv, enroll.Config{})
}

// newClient returns a client for srv; cfg may set anything but the
// connection string and CA file.
func newClient(t testing.TB, srv *emulator.Server, cfg enroll.Config) *enroll.Client {
	t.Helper()
	cs, err := enroll.ParseConnectionString(srv.ConnectionString)
	if err != nil {
		t.Fatalf("emulator's connection string: %v", err)
	}
	cfg.ConnectionString, cfg.CAFile = cs, srv.CAFile
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	c, err := enroll.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tpm returns a TPM enrollment whose endorsement key is unique to i.
func tpm(id string, i int) enroll.Enrollment {
	ek := fmt.Sprintf("AToAAQALAAMAsgAg%08d", i)
	return enroll.Enrollment{RegistrationID: id, DeviceID: "dev-" + id,
		Attestation: enroll.Attestation{Type: enroll.AttestationTPM, TPM: &enroll.TPMAttestation{EndorsementKey: ek}}}
}
