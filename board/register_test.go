package board

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"zerotouch/enroll"
	"zerotouch/enroll/device"
	"zerotouch/enroll/emulator"
	"zerotouch/flasher"
)

// putEnrollment stores en at api-version 2026-04-01 (which keeps its
// credentialPolicyName) in the emulator s.
func putEnrollment(t *testing.T, s *emulator.Server, en enroll.Enrollment) {
	t.Helper()
	cs, err := enroll.ParseConnectionString(s.ConnectionString)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	b, _ := json.Marshal(en)
	req, _ := http.NewRequest(http.MethodPut, s.URL+"/enrollments/"+en.RegistrationID+"?api-version=2026-04-01", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", enroll.SASToken(s.HostName, emulator.DefaultKeyName, cs.Key, time.Now().Add(time.Hour)))
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, Timeout: time.Minute}
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("PUT enrollment %s: %v", en.RegistrationID, err)
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT enrollment %s: %d %s", en.RegistrationID, resp.StatusCode, body)
	}
}

// committedBoard starts a board without a TPM whose committed
// configuration (json) is config, as a station leaves it.
func committedBoard(t *testing.T, s *emulator.Server, config string) *Board {
	t.Helper()
	b, err := Start(Config{Serial: "VB-CSR", Dir: t.TempDir(), TPM: TPMNone, DPSRoots: s.CAFile, NoSync: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	const name = "/lfs/zerotouch/config"
	p, err := b.fsPath(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	b.st.Provisioned, b.st.ConfigPath = true, name
	b.mu.Unlock()
	return b
}

func csrConfig(s *emulator.Server, regID string, key []byte, operational string) string {
	return `{"provisioning": {"globalEndpoint": "` + s.URL + `", "idScope": "` + s.IDScope + `", "registrationId": "` + regID + `",
  "attestation": {"type": "symmetricKey", "symmetricKey": "` + base64.StdEncoding.EncodeToString(key) + `"}` + operational + `}}`
}

func TestRegisterWithCSR(t *testing.T) {
	s, err := emulator.Start(context.Background(), "127.0.0.1:0", filepath.Join(t.TempDir(), "dps"), emulator.Options{})
	if err != nil {
		t.Fatalf("emulator.Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	key := []byte("virtual board operational test key")
	sym := func(id, policy string) enroll.Enrollment {
		return enroll.Enrollment{RegistrationID: id, CredentialPolicyName: policy, Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey,
			SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(key)}}}
	}
	putEnrollment(t, s, sym("vb-csr-1", emulator.DefaultCredentialPolicy))
	putEnrollment(t, s, sym("vb-csr-2", ""))

	// Under a credential policy: the chain is kept where the
	// configuration says, and verifies to the policy's CA.
	b := committedBoard(t, s, csrConfig(s, "vb-csr-1", key, `, "operationalCertificate": {"issuer": "dps", "path": "/lfs/certs/op.pem"}`))
	r := b.Register(ctx)
	if r.State != flasher.RegAssigned {
		t.Fatalf("Register = %+v, want assigned", r)
	}
	data, err := b.ReadFile("/lfs/certs/op.pem")
	if err != nil {
		t.Fatalf("the operational certificate's file: %v", err)
	}
	var chain []*x509.Certificate
	for rest := data; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	policy, err := s.Emulator.PolicyChain(ctx, emulator.DefaultCredentialPolicy)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(policy[len(policy)-1])
	b.mu.Lock()
	opKey, _ := b.keys[operationalKeyName].(crypto.Signer)
	b.mu.Unlock()
	if opKey == nil {
		t.Fatal("the board keeps no operational key")
	}
	if err := device.VerifyIssuedChain(chain, opKey.Public(), "vb-csr-1", roots, time.Now()); err != nil || chain[0].Subject.CommonName != "vb-csr-1" {
		t.Errorf("the kept chain (%d certificates): %v; want vb-csr-1's under the default policy's root", len(chain), err)
	}

	// Without a credential policy on the enrollment: DPS's 400.
	b2 := committedBoard(t, s, csrConfig(s, "vb-csr-2", key, `, "operationalCertificate": {"issuer": "dps"}`))
	r = b2.Register(ctx)
	if r.State != flasher.RegFailed || r.Status != http.StatusBadRequest || r.ErrorCode != enroll.CodeBadBody || !strings.Contains(r.Error, "credentialPolicyName") {
		t.Errorf("Register without a credential policy = %+v, want failed, 400 %d", r, enroll.CodeBadBody)
	}
	if _, err := b2.ReadFile("/lfs/zerotouch/operational.pem"); err == nil {
		t.Error("a refused registration left an operational certificate")
	}

	// An issuer the board does not know is a configuration error, sent
	// nowhere.
	b3 := committedBoard(t, s, csrConfig(s, "vb-csr-1", key, `, "operationalCertificate": {"issuer": "est"}`))
	if r = b3.Register(ctx); r.State != flasher.RegFailed || !strings.Contains(r.Error, "operationalCertificate.issuer") {
		t.Errorf("Register with issuer est = %+v, want failed naming the setting", r)
	}
}
