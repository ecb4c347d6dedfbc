package enroll_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
)

func TestClientEnrollmentCRUD(t *testing.T) {
	ctx := context.Background()
	_, c := newEmulator(t, emulator.Options{})
	e := tpm("Board-0001", 1)
	got, err := c.CreateOrUpdate(ctx, &e, "")
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if got.ETag == "" || got.CreatedDateTimeUTC == nil || got.ProvisioningStatus != "enabled" {
		t.Errorf("created = %+v: want etag, created time and status enabled filled by the service", got)
	}
	if d := enroll.Differences(&e, got); len(d) > 0 {
		t.Errorf("created enrollment differs in %v", d)
	}
	// IDs are case-insensitive.
	read, err := c.Get(ctx, "board-0001")
	if err != nil || read.ETag != got.ETag {
		t.Fatalf("Get = %+v, %v", read, err)
	}
	att, err := c.AttestationMechanism(ctx, "board-0001")
	if err != nil || att.TPM == nil || att.TPM.EndorsementKey != e.Attestation.TPM.EndorsementKey {
		t.Errorf("AttestationMechanism = %+v, %v", att, err)
	}

	// Update with the current etag succeeds and changes it; with the old
	// one it is refused.
	e.DeviceID = "renamed"
	upd, err := c.CreateOrUpdate(ctx, &e, got.ETag)
	if err != nil || upd.DeviceID != "renamed" || upd.ETag == got.ETag {
		t.Fatalf("update with current etag = %+v, %v", upd, err)
	}
	e.DeviceID = "again"
	if _, err := c.CreateOrUpdate(ctx, &e, got.ETag); !errors.Is(err, enroll.ErrPrecondition) {
		t.Errorf("update with a stale etag = %v, want ErrPrecondition", err)
	}
	if err := c.Delete(ctx, e.RegistrationID, got.ETag); !errors.Is(err, enroll.ErrPrecondition) {
		t.Errorf("delete with a stale etag = %v, want ErrPrecondition", err)
	}
	if err := c.Delete(ctx, e.RegistrationID, upd.ETag); err != nil {
		t.Fatalf("delete with current etag: %v", err)
	}
	_, err = c.Get(ctx, e.RegistrationID)
	var se *enroll.ServiceError
	if !errors.Is(err, enroll.ErrNotFound) || !errors.As(err, &se) || se.Code != enroll.CodeNotFound || se.TrackingID == "" {
		t.Errorf("Get after delete = %v, want ErrNotFound with code %d and a trackingId", err, enroll.CodeNotFound)
	}
	if err := c.Delete(ctx, e.RegistrationID, ""); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("delete again = %v, want ErrNotFound", err)
	}
}

func TestClientBulk(t *testing.T) {
	ctx := context.Background()
	_, c := newEmulator(t, emulator.Options{})
	es := manyTPM(10)
	res, err := c.Bulk(ctx, enroll.ModeCreate, es)
	if err != nil || !res.IsSuccessful {
		t.Fatalf("bulk create = %+v, %v", res, err)
	}
	// Again: every item already exists.
	res, err = c.Bulk(ctx, enroll.ModeCreate, es[:3])
	if err != nil || res.IsSuccessful || len(res.Errors) != 3 || res.Errors[0].Status() != 409 {
		t.Errorf("bulk create of existing = %+v, %v; want 3 errors with status 409", res, err)
	}
	// update replaces; updateIfMatchETag needs the etag.
	es[0].DeviceID = "changed"
	if res, err := c.Bulk(ctx, enroll.ModeUpdate, es[:1]); err != nil || !res.IsSuccessful {
		t.Errorf("bulk update = %+v, %v", res, err)
	}
	cur, _ := c.Get(ctx, es[1].RegistrationID)
	stale := es[1]
	stale.ETag = `"not-the-etag"`
	fresh := es[2]
	fresh.ETag = ""
	ok := es[1]
	ok.ETag = cur.ETag
	res, err = c.Bulk(ctx, enroll.ModeUpdateIfMatchETag, []enroll.Enrollment{ok, fresh})
	if err != nil || res.IsSuccessful || len(res.Errors) != 1 || res.Errors[0].Status() != 412 ||
		!strings.EqualFold(res.Errors[0].RegistrationID, fresh.RegistrationID) {
		t.Errorf("bulk updateIfMatchETag = %+v, %v; want only %s refused with 412", res, err, fresh.RegistrationID)
	}
	if res, err := c.Bulk(ctx, enroll.ModeDelete, es[5:]); err != nil || !res.IsSuccessful {
		t.Errorf("bulk delete = %+v, %v", res, err)
	}
	n := 0
	for _, err := range c.Enrollments(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 5 {
		t.Errorf("%d enrollments after deleting 5 of 10, want 5", n)
	}
}

// Query pages follow the continuation token without losing or repeating
// anything, even with enrollments added between pages.
func TestClientQueryContinuation(t *testing.T) {
	ctx := context.Background()
	_, c := newEmulator(t, emulator.Options{})
	es := manyTPM(25)
	for i := 0; i < len(es); i += 10 {
		if _, err := c.Bulk(ctx, enroll.ModeCreate, es[i:min(i+10, len(es))]); err != nil {
			t.Fatal(err)
		}
	}
	var sizes []int
	seen := map[string]bool{}
	cont := ""
	for {
		p, err := c.Query(ctx, "SELECT * FROM enrollments", 10, cont)
		if err != nil {
			t.Fatalf("query page %d: %v", len(sizes)+1, err)
		}
		sizes = append(sizes, len(p.Items))
		for _, e := range p.Items {
			if seen[e.RegistrationID] {
				t.Errorf("%s on two pages", e.RegistrationID)
			}
			seen[e.RegistrationID] = true
		}
		if len(sizes) == 1 {
			late := tpm("late-arrival", 999)
			if _, err := c.CreateOrUpdate(ctx, &late, ""); err != nil {
				t.Fatal(err)
			}
		}
		if p.Continuation == "" {
			break
		}
		cont = p.Continuation
	}
	if fmt.Sprint(sizes) != "[10 10 6]" || len(seen) != 26 {
		t.Errorf("pages of %v with %d distinct, want [10 10 6] with 26", sizes, len(seen))
	}
	if _, err := c.Query(ctx, "SELECT * FROM enrollments", 10, "garbage-token"); !errors.Is(err, enroll.ErrBadRequest) {
		t.Errorf("query with a bad continuation = %v, want ErrBadRequest", err)
	}
	// DPS does not interpret the query: whatever it says, every
	// enrollment is answered.
	for _, q := range []string{"*", "select *", "SELECT * FROM enrollments WHERE registrationId = 'q-001'"} {
		p, err := c.Query(ctx, q, 100, "")
		if err != nil || len(p.Items) != 26 {
			t.Errorf("Query(%q) = %d items, %v; want all 26", q, len(p.Items), err)
		}
	}
}

func TestClientGroups(t *testing.T) {
	ctx := context.Background()
	_, c := newEmulator(t, emulator.Options{})
	sym := &enroll.EnrollmentGroup{EnrollmentGroupID: "line-1-sym", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey}}
	got, err := c.CreateOrUpdateGroup(ctx, sym, "")
	if err != nil || got.Attestation.SymmetricKey == nil || got.Attestation.SymmetricKey.PrimaryKey == "" {
		t.Fatalf("create symmetric-key group = %+v, %v; want keys made by the service", got, err)
	}
	caPEM := testCA(t)
	x := &enroll.EnrollmentGroup{EnrollmentGroupID: "line-1-x509", Attestation: enroll.Attestation{Type: enroll.AttestationX509,
		X509: &enroll.X509Attestation{SigningCertificates: &enroll.X509Certificates{Primary: &enroll.X509Certificate{Certificate: caPEM}}}}}
	gx, err := c.CreateOrUpdateGroup(ctx, x, "")
	if err != nil {
		t.Fatalf("create X.509 group: %v", err)
	}
	if info := gx.Attestation.X509.SigningCertificates.Primary.Info; info == nil || !strings.Contains(info.SubjectName, "Line CA") {
		t.Errorf("X.509 group certificate info = %+v, want the subject", info)
	}
	if _, err := c.CreateOrUpdateGroup(ctx, x, `"stale"`); !errors.Is(err, enroll.ErrPrecondition) {
		t.Errorf("group update with a stale etag = %v, want ErrPrecondition", err)
	}
	read, err := c.GetGroup(ctx, "LINE-1-X509")
	if err != nil || read.ETag != gx.ETag {
		t.Errorf("GetGroup = %+v, %v", read, err)
	}
	var ids []string
	for g, err := range c.Groups(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, g.EnrollmentGroupID)
	}
	if fmt.Sprint(ids) != "[line-1-sym line-1-x509]" {
		t.Errorf("Groups = %v", ids)
	}
	if err := c.DeleteGroup(ctx, "line-1-sym", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetGroup(ctx, "line-1-sym"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("GetGroup after delete = %v, want ErrNotFound", err)
	}
}

// Bad credentials and bad requests come back as typed errors that say
// what is wrong.
func TestClientRefusedByService(t *testing.T) {
	ctx := context.Background()
	srv, c := newEmulator(t, emulator.Options{})
	cs, _ := enroll.ParseConnectionString(srv.ConnectionString)

	forged := cs
	forged.Key = []byte("forged key")
	fc, _ := enroll.NewClient(enroll.Config{ConnectionString: forged, CAFile: srv.CAFile})
	_, err := fc.Get(ctx, "board-1")
	if !errors.Is(err, enroll.ErrUnauthorized) || !strings.Contains(err.Error(), "signature") {
		t.Errorf("forged key: %v, want ErrUnauthorized about the signature", err)
	}

	// A service clock two hours ahead sees the client's one-hour token as
	// expired.
	late, _ := newEmulator(t, emulator.Options{Now: func() time.Time { return time.Now().Add(2 * time.Hour) }})
	lc := newClient(t, late, enroll.Config{})
	if _, err := lc.Get(ctx, "board-1"); !errors.Is(err, enroll.ErrUnauthorized) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v, want ErrUnauthorized saying expired", err)
	}

	// The service refuses what the client would not send, too.
	wrongHost := cs
	wrongHost.HostName = "other.example.net"
	wc, _ := enroll.NewClient(enroll.Config{ConnectionString: wrongHost, CAFile: srv.CAFile, Endpoint: srv.URL})
	if _, err := wc.Get(ctx, "board-1"); !errors.Is(err, enroll.ErrUnauthorized) {
		t.Errorf("token for another host: %v, want ErrUnauthorized", err)
	}

	old := newClient(t, srv, enroll.Config{APIVersion: "2016-01-01"})
	if _, err := old.Get(ctx, "board-1"); !errors.Is(err, enroll.ErrBadRequest) || !strings.Contains(err.Error(), "2021-10-01") {
		t.Errorf("unknown api-version: %v, want ErrBadRequest listing the versions served", err)
	}

	big := tpm("board-big", 1)
	big.InitialTwin = &enroll.InitialTwin{Tags: map[string]any{"blob": strings.Repeat("x", enroll.MaxMessage)}}
	if _, err := c.CreateOrUpdate(ctx, &big, ""); !errors.Is(err, enroll.ErrInvalid) || !strings.Contains(err.Error(), "at most") {
		t.Errorf("oversize enrollment: %v, want ErrInvalid naming the limit", err)
	}
}

// testCA returns a self-signed CA certificate in PEM.
func testCA(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Line CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}
