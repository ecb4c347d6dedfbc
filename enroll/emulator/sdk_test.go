package emulator_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
)

// sdkInstall is what makes the Node SDK harness runnable.
const sdkInstall = "run .ci/install, or: (cd enroll/testdata/node-sdk && npm ci --no-audit --no-fund)"

// sdkSummary is the JSON line sdk.js prints when every check passed.
type sdkSummary struct {
	OK            bool     `json:"ok"`
	Checks        int      `json:"checks"`
	Prefix        string   `json:"prefix"`
	Kept          []string `json:"kept"`
	Deleted       []string `json:"deleted"`
	GroupsDeleted []string `json:"groupsDeleted"`
	Warnings      []string `json:"warnings"`
}

// needSDK skips the test, or fails it under CI, when what the Node SDK
// harness needs is not there: why, then what to do about it.
func needSDK(t *testing.T, why, fix string) {
	t.Helper()
	msg := why + ": " + fix
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// newCAPEM makes a self-signed P-256 CA certificate in PEM, for an X.509
// enrollment group's signing certificate.
func newCAPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(7),
		Subject:               pkix.Name{CommonName: "zerotouch SDK test CA", Organization: []string{"zerotouch"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create CA certificate: %v", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestNodeSDK runs the official Azure DPS service SDK for Node
// (azure-iot-provisioning-service 1.11.2, enroll/testdata/node-sdk/sdk.js)
// against the emulator, unchanged but for the host name and the CA it
// trusts: individual enrollments (create, get, update with If-Match, a
// stale etag, delete), bulk operations, a paged query and enrollment
// groups. The SDK cannot take a port, so the emulator listens on
// 127.0.0.1:443, which needs root or CAP_NET_BIND_SERVICE.
func TestNodeSDK(t *testing.T) {
	dir, err := filepath.Abs(filepath.Join("..", "testdata", "node-sdk"))
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		needSDK(t, "node is not installed", sdkInstall)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "azure-iot-provisioning-service", "package.json")); err != nil {
		needSDK(t, "the Node SDK is not installed in "+dir, sdkInstall)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := emulator.Start(ctx, "127.0.0.1:443", t.TempDir(), emulator.Options{HostNames: []string{"localhost"}})
	switch {
	case errors.Is(err, fs.ErrPermission):
		needSDK(t, err.Error(), "the Node SDK cannot take a port, so the emulator needs 127.0.0.1:443: run the test as root or give its binary CAP_NET_BIND_SERVICE (go test -exec 'sudo')")
	case errors.Is(err, syscall.EADDRINUSE):
		t.Fatalf("emulator.Start: %v: something else holds port 443, which the Node SDK needs", err)
	case err != nil:
		t.Fatalf("emulator.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close emulator: %v", err)
		}
	})

	// The SDK dials the connection string's HostName on 443 and checks
	// the server certificate against it: localhost.
	cs, err := enroll.ParseConnectionString(srv.ConnectionString)
	if err != nil {
		t.Fatalf("ParseConnectionString(emulator's) = %v", err)
	}
	cs.HostName = "localhost"

	cmd := exec.CommandContext(ctx, node, "sdk.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"DPS_CONNECTION_STRING="+cs.Secret(),
		"NODE_EXTRA_CA_CERTS="+srv.CAFile,
		"DPS_TEST_CA_PEM="+newCAPEM(t),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("node sdk.js: %v (after %v)\nstderr:\n%s\nstdout:\n%s", err, time.Since(start).Round(time.Millisecond), stderr.String(), stdout.String())
	}
	t.Logf("node sdk.js ran in %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(stdout.String()))

	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var sum sdkSummary
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil {
		t.Fatalf("node sdk.js summary %q: %v\nstderr:\n%s", lines[len(lines)-1], err, stderr.String())
	}
	if !sum.OK || sum.Checks < 60 {
		t.Errorf("node sdk.js summary: ok=%v after %d checks, want ok after at least 60", sum.OK, sum.Checks)
	}
	for _, w := range sum.Warnings {
		t.Errorf("node sdk.js: %s", w)
	}
	if len(sum.Kept) != 5 || len(sum.Deleted) != 1 || len(sum.GroupsDeleted) != 2 {
		t.Fatalf("node sdk.js summary: kept %q, deleted %q, groups deleted %q; want 5, 1 and 2", sum.Kept, sum.Deleted, sum.GroupsDeleted)
	}

	// What the SDK made and deleted is what the emulator holds.
	for _, id := range sum.Kept {
		for _, asked := range []string{id, strings.ToUpper(id)} {
			n, err := srv.Emulator.Writes(ctx, asked)
			if err != nil || n != 1 {
				t.Errorf("Writes(%q) = %d, %v; want 1 (bulk-created once by the SDK)", asked, n, err)
			}
		}
	}
	for _, id := range sum.Deleted {
		if n, err := srv.Emulator.Writes(ctx, id); err != nil || n != 0 {
			t.Errorf("Writes(%q) = %d, %v; want 0 (deleted by the SDK)", id, n, err)
		}
	}
	if st := srv.Emulator.Stats(); st.Unauthorized != 0 || st.Throttled != 0 {
		t.Errorf("emulator stats %+v: want no 401 and no 429 for the SDK", st)
	}
}
