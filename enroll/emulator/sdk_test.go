package emulator_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	OK                  bool     `json:"ok"`
	Checks              int      `json:"checks"`
	Prefix              string   `json:"prefix"`
	Kept                []string `json:"kept"`
	Deleted             []string `json:"deleted"`
	GroupsDeleted       []string `json:"groupsDeleted"`
	RegistrationDeleted string   `json:"registrationDeleted"`
	Warnings            []string `json:"warnings"`
}

// registerSymmetric registers the symmetric-key device id, signing with
// key, through s's device API, and polls until it is assigned.
func registerSymmetric(ctx context.Context, t *testing.T, s *emulator.Server, id string, key []byte) {
	t.Helper()
	pool, err := enroll.LoadCAFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: time.Minute}
	auth := enroll.SASToken(s.IDScope+"/registrations/"+id, "registration", key, time.Now().Add(time.Hour))
	send := func(method, path string, body []byte) []byte {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, s.URL+"/"+s.IDScope+"/registrations/"+id+path+"?api-version=2021-06-01", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("register %s: %s %s: %v", id, method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
			t.Fatalf("register %s: %s %s: %d %s", id, method, path, resp.StatusCode, b)
		}
		return b
	}
	var op struct {
		OperationID string `json:"operationId"`
		Status      string `json:"status"`
	}
	if err := json.Unmarshal(send(http.MethodPut, "/register", []byte(`{"registrationId":"`+id+`"}`)), &op); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
	for i := 0; op.Status != "assigned"; i++ {
		if i == 20 || op.Status == "failed" || op.Status == "disabled" {
			t.Fatalf("register %s: status %q", id, op.Status)
		}
		if err := json.Unmarshal(send(http.MethodGet, "/operations/"+op.OperationID, nil), &op); err != nil {
			t.Fatalf("poll %s: %v", id, err)
		}
	}
}

// groupMemberKey is a group member's key: HMAC-SHA256(group key, ID).
func groupMemberKey(groupKey []byte, id string) []byte {
	m := hmac.New(sha256.New, groupKey)
	m.Write([]byte(id))
	return m.Sum(nil)
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

func mustConn(t *testing.T, s string) enroll.ConnectionString {
	t.Helper()
	cs, err := enroll.ParseConnectionString(s)
	if err != nil {
		t.Fatalf("ParseConnectionString(emulator's) = %v", err)
	}
	return cs
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
// groups, the query forms the tools send ("*", "SELECT *"), a group's
// registration states, and a device's registration state read, refused
// deletion with a stale etag (412) and deleted. The SDK cannot take a port, so the emulator listens on
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

	// Devices that registered: one through its individual enrollment,
	// two through a group.
	client, err := enroll.NewClient(enroll.Config{ConnectionString: mustConn(t, srv.ConnectionString), CAFile: srv.CAFile, Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	regID, groupID := "sdk-reg-"+suffix, "sdk-reg-group-"+suffix
	members := []string{"sdk-member-1-" + suffix, "sdk-member-2-" + suffix}
	devKey, groupKey := make([]byte, 32), make([]byte, 64)
	rand.Read(devKey)
	rand.Read(groupKey)
	if _, err := client.CreateOrUpdate(ctx, &enroll.Enrollment{RegistrationID: regID, Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey,
		SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(devKey)}}}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateOrUpdateGroup(ctx, &enroll.EnrollmentGroup{EnrollmentGroupID: groupID, Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey,
		SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(groupKey)}}}, ""); err != nil {
		t.Fatal(err)
	}
	registerSymmetric(ctx, t, srv, regID, devKey)
	for _, m := range members {
		registerSymmetric(ctx, t, srv, m, groupMemberKey(groupKey, m))
	}

	cmd := exec.CommandContext(ctx, node, "sdk.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"DPS_CONNECTION_STRING="+cs.Secret(),
		"NODE_EXTRA_CA_CERTS="+srv.CAFile,
		"DPS_TEST_CA_PEM="+newCAPEM(t),
		"DPS_TEST_REGISTRATION="+regID,
		"DPS_TEST_GROUP="+groupID,
		"DPS_TEST_GROUP_MEMBERS="+strings.Join(members, ","),
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
	if !sum.OK || sum.Checks < 90 {
		t.Errorf("node sdk.js summary: ok=%v after %d checks, want ok after at least 90", sum.OK, sum.Checks)
	}
	if !strings.EqualFold(sum.RegistrationDeleted, regID) {
		t.Errorf("node sdk.js deleted registration %q, want %q", sum.RegistrationDeleted, regID)
	}
	if n, err := srv.Emulator.Registrations(ctx, regID); err != nil || n != 0 {
		t.Errorf("Registrations(%q) = %d, %v after the SDK deleted its state; want 0", regID, n, err)
	}
	if n, err := srv.Emulator.Registrations(ctx, members[0]); err != nil || n != 1 {
		t.Errorf("Registrations(%q) = %d, %v; want 1 (listed by the SDK, not deleted)", members[0], n, err)
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
