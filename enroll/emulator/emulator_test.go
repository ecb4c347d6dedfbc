package emulator

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"zerotouch/enroll"
)

func TestNewOptions(t *testing.T) {
	db := filepath.Join(t.TempDir(), "e.db")
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no DB", Options{PrimaryKey: testKey}, "DB"},
		{"no key", Options{DB: db}, "PrimaryKey"},
		{"negative quota", Options{DB: db, PrimaryKey: testKey, Quota: -1}, "Quota"},
		{"negative burst", Options{DB: db, PrimaryKey: testKey, Burst: -1}, "Burst"},
		{"negative body limit", Options{DB: db, PrimaryKey: testKey, MaxBody: -1}, "MaxBody"},
		{"error rate over 1", Options{DB: db, PrimaryKey: testKey, Faults: Faults{ErrorRate: 1.5}}, "ErrorRate"},
		{"negative drop rate", Options{DB: db, PrimaryKey: testKey, Faults: Faults{DropRate: -0.1}}, "DropRate"},
		{"negative latency", Options{DB: db, PrimaryKey: testKey, Faults: Faults{Latency: -time.Second}}, "Latency"},
	}
	for _, tt := range tests {
		e, err := New(context.Background(), tt.opts)
		if err == nil {
			e.Close()
			t.Errorf("New(%s) succeeded, want an error naming %s", tt.name, tt.want)
			continue
		}
		if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%s) = %v, want ErrOptions naming %s", tt.name, err, tt.want)
		}
	}
	// A folder is not an SQLite file.
	if e, err := New(context.Background(), Options{DB: t.TempDir(), PrimaryKey: testKey}); err == nil {
		e.Close()
		t.Errorf("New on a folder succeeded")
	}
}

func TestEnrollmentCRUD(t *testing.T) {
	env := newTestEnv(t, Options{})
	in := tpmEnrollment("Board-0001")
	in.DeviceID = "dev-1"
	in.ETag = "ignored"

	r := env.do("PUT", "/enrollments/Board-0001", in, nil)
	var got enroll.Enrollment
	decodeOK(t, "PUT new", r, &got)
	if got.RegistrationID != "Board-0001" || got.DeviceID != "dev-1" {
		t.Errorf("PUT answered registrationId %q deviceId %q, want the case sent", got.RegistrationID, got.DeviceID)
	}
	if got.ETag == "" || got.ETag == "ignored" {
		t.Errorf("etag %q: want one the service made", got.ETag)
	}
	now := env.clock.Now()
	if got.CreatedDateTimeUTC == nil || !got.CreatedDateTimeUTC.Equal(now) || got.LastUpdatedDateTimeUTC == nil || !got.LastUpdatedDateTimeUTC.Equal(now) {
		t.Errorf("timestamps %v %v, want both %v", got.CreatedDateTimeUTC, got.LastUpdatedDateTimeUTC, now)
	}
	wantDefaults := enroll.Enrollment{
		ProvisioningStatus: "enabled",
		Capabilities:       &enroll.Capabilities{IoTEdge: false},
		ReprovisionPolicy:  &enroll.ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: true},
		AllocationPolicy:   "hashed",
	}
	gotDefaults := enroll.Enrollment{ProvisioningStatus: got.ProvisioningStatus, Capabilities: got.Capabilities, ReprovisionPolicy: got.ReprovisionPolicy, AllocationPolicy: got.AllocationPolicy}
	if d := cmp.Diff(wantDefaults, gotDefaults); d != "" {
		t.Errorf("defaults (-want +got):\n%s", d)
	}
	if !strings.Contains(string(r.body), `"iotEdge":false`) {
		t.Errorf("answer %s lacks capabilities.iotEdge", r.body)
	}
	if n := env.writes("board-0001"); n != 1 {
		t.Errorf("Writes after create = %d, want 1", n)
	}

	// GET is case-insensitive and answers what PUT did.
	r = env.do("GET", "/enrollments/BOARD-0001", nil, nil)
	var fetched enroll.Enrollment
	decodeOK(t, "GET", r, &fetched)
	if d := cmp.Diff(got, fetched); d != "" {
		t.Errorf("GET differs from PUT's answer (-put +get):\n%s", d)
	}

	// An update keeps createdDateTimeUtc and changes the etag.
	env.clock.Advance(time.Minute)
	in.DeviceID = "dev-2"
	var updated enroll.Enrollment
	decodeOK(t, "PUT update", env.do("PUT", "/enrollments/board-0001", in, nil), &updated)
	if !updated.CreatedDateTimeUTC.Equal(*got.CreatedDateTimeUTC) || !updated.LastUpdatedDateTimeUTC.Equal(env.clock.Now()) {
		t.Errorf("after update created %v updated %v; want created kept %v, updated %v", updated.CreatedDateTimeUTC, updated.LastUpdatedDateTimeUTC, got.CreatedDateTimeUTC, env.clock.Now())
	}
	if updated.ETag == got.ETag || updated.DeviceID != "dev-2" {
		t.Errorf("after update etag %q (was %q), deviceId %q", updated.ETag, got.ETag, updated.DeviceID)
	}
	if n := env.writes("Board-0001"); n != 2 {
		t.Errorf("Writes after update = %d, want 2", n)
	}

	// If-Match.
	ifMatch := []struct {
		name, id, etag string
		status         int
	}{
		{"stale etag", "board-0001", got.ETag, http.StatusPreconditionFailed},
		{"unquoted current etag", "board-0001", strings.Trim(updated.ETag, `"`), http.StatusOK},
		{"star on an absent enrollment", "absent-1", "*", http.StatusPreconditionFailed},
		{"etag on an absent enrollment", "absent-2", updated.ETag, http.StatusPreconditionFailed},
	}
	for _, tt := range ifMatch {
		body := tpmEnrollment(tt.id)
		r := env.do("PUT", "/enrollments/"+tt.id, body, header{"If-Match": tt.etag})
		if tt.status == http.StatusOK {
			decodeOK(t, "PUT If-Match "+tt.name, r, &updated)
			continue
		}
		r.wantError(t, "PUT If-Match "+tt.name, tt.status, enroll.CodePrecondition, "If-Match")
	}
	if n := env.writes("board-0001"); n != 3 {
		t.Errorf("Writes after a refused and an accepted If-Match = %d, want 3", n)
	}
	if n := env.writes("absent-1"); n != 0 {
		t.Errorf("a PUT refused with 412 made absent-1 (%d writes)", n)
	}

	// The attestation mechanism.
	var att enroll.Attestation
	decodeOK(t, "attestationmechanism", env.do("POST", "/enrollments/board-0001/attestationmechanism", nil, nil), &att)
	if att.Type != enroll.AttestationTPM || att.TPM == nil || att.TPM.EndorsementKey != tpmEnrollment("board-0001").Attestation.TPM.EndorsementKey {
		t.Errorf("attestation mechanism %+v, want the TPM's", att)
	}
	env.do("POST", "/enrollments/nobody/attestationmechanism", nil, nil).wantError(t, "attestation of an absent enrollment", 404, enroll.CodeNotFound)

	// DELETE honours If-Match.
	env.do("DELETE", "/enrollments/board-0001", nil, header{"If-Match": got.ETag}).wantError(t, "DELETE stale etag", 412, enroll.CodePrecondition)
	if r := env.do("DELETE", "/enrollments/Board-0001", nil, header{"If-Match": updated.ETag}); r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("DELETE: %d %q, want 204 and no body", r.status, r.body)
	}
	env.do("GET", "/enrollments/board-0001", nil, nil).wantError(t, "GET deleted", 404, enroll.CodeNotFound, "not found")
	env.do("DELETE", "/enrollments/board-0001", nil, nil).wantError(t, "DELETE again", 404, enroll.CodeNotFound)
	if n := env.writes("board-0001"); n != 0 {
		t.Errorf("Writes after delete = %d, want 0", n)
	}
}

func TestAttestationFilled(t *testing.T) {
	env := newTestEnv(t, Options{})
	certPEM, cert := testCert(t, "x509-board")
	x := enroll.Enrollment{RegistrationID: "x509-board", Attestation: enroll.Attestation{Type: enroll.AttestationX509,
		X509: &enroll.X509Attestation{ClientCertificates: &enroll.X509Certificates{Primary: &enroll.X509Certificate{Certificate: certPEM}}}}}
	var got enroll.Enrollment
	decodeOK(t, "PUT x509", env.do("PUT", "/enrollments/x509-board", x, nil), &got)
	p := got.Attestation.X509.ClientCertificates.Primary
	s1, s256 := sha1.Sum(cert.Raw), sha256.Sum256(cert.Raw)
	want := &enroll.X509Info{
		SubjectName:      "CN=x509-board",
		SHA1Thumbprint:   strings.ToUpper(hex.EncodeToString(s1[:])),
		SHA256Thumbprint: strings.ToUpper(hex.EncodeToString(s256[:])),
		IssuerName:       "CN=x509-board",
		NotBeforeUTC:     cert.NotBefore,
		NotAfterUTC:      cert.NotAfter,
		SerialNumber:     "1234ABCD",
		Version:          3,
	}
	if d := cmp.Diff(want, p.Info); d != "" {
		t.Errorf("certificate info (-want +got):\n%s", d)
	}
	if p.Certificate != certPEM {
		t.Errorf("the certificate was not kept")
	}

	// Symmetric keys are made when missing, kept when given.
	given := base64.StdEncoding.EncodeToString([]byte("a key the line chose"))
	for _, tt := range []struct {
		id      string
		sk      *enroll.SymmetricKeyAttestation
		primary string
	}{
		{"sym-none", nil, ""},
		{"sym-given", &enroll.SymmetricKeyAttestation{PrimaryKey: given}, given},
	} {
		e := enroll.Enrollment{RegistrationID: tt.id, Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey, SymmetricKey: tt.sk}}
		decodeOK(t, "PUT "+tt.id, env.do("PUT", "/enrollments/"+tt.id, e, nil), &got)
		sk := got.Attestation.SymmetricKey
		if sk == nil {
			t.Fatalf("%s: no symmetric keys in the answer", tt.id)
		}
		if tt.primary != "" && sk.PrimaryKey != tt.primary {
			t.Errorf("%s: primary key %q, want the one given", tt.id, sk.PrimaryKey)
		}
		for _, k := range []string{sk.PrimaryKey, sk.SecondaryKey} {
			if k == given {
				continue
			}
			if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) != 64 {
				t.Errorf("%s: made key %q is not 64 bytes of base64 (%v)", tt.id, k, err)
			}
		}
	}
}

func TestBadRequests(t *testing.T) {
	env := newTestEnv(t, Options{})
	long := strings.Repeat("a", 65)
	certPEM, _ := testCert(t, long)
	x509Long := enroll.Enrollment{RegistrationID: long, Attestation: enroll.Attestation{Type: enroll.AttestationX509,
		X509: &enroll.X509Attestation{ClientCertificates: &enroll.X509Certificates{Primary: &enroll.X509Certificate{Certificate: certPEM}}}}}
	tests := []struct {
		name         string
		method, path string
		body         any
		h            header
		status, code int
		msg          string
	}{
		{"no api-version", "GET", "/enrollments/a?x=1", nil, nil, 400, enroll.CodeAPIVersion, "2021-10-01"},
		{"unknown api-version", "GET", "/enrollments/a?api-version=2020-01-01", nil, nil, 400, enroll.CodeAPIVersion, "2019-03-31"},
		{"api-version twice", "GET", "/enrollments/a?api-version=2021-10-01&api-version=2019-03-31", nil, nil, 400, enroll.CodeAPIVersion, "once"},
		{"unknown path", "GET", "/devices/a", nil, nil, 404, enroll.CodeNotFound, "no such path"},
		{"empty id", "GET", "/enrollments//", nil, nil, 404, enroll.CodeNotFound, "path"},
		{"wrong method", "POST", "/enrollments/a", tpmEnrollment("a"), nil, 405, enroll.CodeMethodNotAllowed, "PUT"},
		{"PATCH", "PATCH", "/enrollmentGroups/a", nil, nil, 405, enroll.CodeMethodNotAllowed, "PATCH"},
		{"GET bulk", "GET", "/enrollments", nil, nil, 405, enroll.CodeMethodNotAllowed, "POST"},
		{"bad id in path", "GET", "/enrollments/bad%20id", nil, nil, 400, enroll.CodeRegistrationID, "character ' '"},
		{"id ending in a dot", "PUT", "/enrollments/board.", tpmEnrollment("board."), nil, 400, enroll.CodeRegistrationID, "must end"},
		// A read or a delete checks only the length and the characters: a
		// record made under the concept documentation's rule (a dash at
		// the end) can still be looked at and deleted.
		{"read an ID ending in a dash", "GET", "/enrollments/board-", nil, nil, 404, enroll.CodeNotFound, "not found"},
		{"delete an ID starting with a dot", "DELETE", "/enrollments/.board", nil, nil, 404, enroll.CodeNotFound, "not found"},
		{"read a group ID ending in a dash", "GET", "/enrollmentGroups/g-", nil, nil, 404, enroll.CodeGroupNotFound, "not found"},
		{"delete a group ID ending in a colon", "DELETE", "/enrollmentGroups/g:", nil, nil, 404, enroll.CodeGroupNotFound, "not found"},
		{"read a registration ID ending in a dash", "GET", "/registrations/board-", nil, nil, 404, enroll.CodeNotFound, "no device has registered"},
		{"bad group id in path", "GET", "/enrollmentGroups/bad%20id", nil, nil, 400, enroll.CodeRegistrationID, "invalid group ID"},
		{"group id ending in a dash", "PUT", "/enrollmentGroups/g-", enroll.EnrollmentGroup{EnrollmentGroupID: "g-", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey}}, nil, 400, enroll.CodeRegistrationID, "invalid group ID"},
		{"id of 129", "PUT", "/enrollments/" + strings.Repeat("b", 129), tpmEnrollment(strings.Repeat("b", 129)), nil, 400, enroll.CodeRegistrationID, "at most 128"},
		{"x509 id of 65", "PUT", "/enrollments/" + long, x509Long, nil, 400, enroll.CodeRegistrationID, "at most 64"},
		{"body id differs", "PUT", "/enrollments/board-1", tpmEnrollment("board-2"), nil, 400, enroll.CodeRegistrationID, "board-2"},
		{"invalid JSON", "PUT", "/enrollments/a", `{"registrationId":`, nil, 400, enroll.CodeBadBody, "not valid"},
		{"wrong shape", "PUT", "/enrollments/a", `{"registrationId":"a","attestation":"tpm"}`, nil, 400, enroll.CodeBadBody, "attestation"},
		{"array body", "PUT", "/enrollments/a", `[1]`, nil, 400, enroll.CodeBadBody, "not a JSON object"},
		{"empty body", "PUT", "/enrollments/a", nil, nil, 400, enroll.CodeBadBody, "empty"},
		{"no attestation type", "PUT", "/enrollments/a", enroll.Enrollment{RegistrationID: "a"}, nil, 400, enroll.CodeBadBody, "attestation type"},
		{"TPM without EK", "PUT", "/enrollments/a", enroll.Enrollment{RegistrationID: "a", Attestation: enroll.Attestation{Type: "tpm"}}, nil, 400, enroll.CodeBadBody, "endorsementKey"},
		{"bad status", "PUT", "/enrollments/a", func() enroll.Enrollment { e := tpmEnrollment("a"); e.ProvisioningStatus = "on"; return e }(), nil, 400, enroll.CodeBadBody, "provisioningStatus"},
		{"TPM group", "PUT", "/enrollmentGroups/g", enroll.EnrollmentGroup{EnrollmentGroupID: "g", Attestation: enroll.Attestation{Type: "tpm", TPM: &enroll.TPMAttestation{EndorsementKey: "AAAA"}}}, nil, 400, enroll.CodeBadBody, "groups take"},
		{"text body", "PUT", "/enrollments/a", "registrationId=a", header{"Content-Type": "text/plain"}, 415, enroll.CodeUnsupportedType, "application/json"},
		{"body over the limit", "PUT", "/enrollments/a", `{"registrationId":"a","deviceId":"` + strings.Repeat("x", DefaultMaxBody) + `"}`, nil, 413, enroll.CodeTooLarge, "98304"},
		{"registration state", "GET", "/registrations/a", nil, nil, 404, enroll.CodeNotFound, "no device has registered"},
	}
	for _, tt := range tests {
		r := env.do(tt.method, tt.path, tt.body, tt.h)
		r.wantError(t, tt.name, tt.status, tt.code, tt.msg)
		if tt.status == 405 && r.header.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", tt.name)
		}
	}
	// None of them stored anything.
	var page []json.RawMessage
	decodeOK(t, "query", env.do("POST", "/enrollments/query", enroll.QuerySpecification{Query: "SELECT * FROM enrollments"}, nil), &page)
	if len(page) != 0 {
		t.Errorf("refused requests stored %d enrollments", len(page))
	}
	// A body over the limit sent without a Content-Length (chunked) is
	// refused too.
	req, _ := http.NewRequest("PUT", env.ts.URL+"/enrollments/a?api-version=2021-10-01", struct{ io.Reader }{strings.NewReader(strings.Repeat(" ", DefaultMaxBody+1))})
	req.Header.Set("Authorization", env.token())
	resp, err := env.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked body over the limit: status %d, want 413", resp.StatusCode)
	}
}

func TestRoutes(t *testing.T) {
	env := newTestEnv(t, Options{})
	// Paths match case-insensitively, with or without a trailing slash, as
	// the SDKs send them.
	op := bulkBody(enroll.ModeCreate, tpmEnrollment("route-1"))
	for i, p := range []string{"/enrollments/", "/ENROLLMENTS"} {
		op.Enrollments[0] = tpmEnrollment(fmt.Sprintf("route-%d", i))
		var res enroll.BulkResult
		decodeOK(t, "bulk on "+p, env.do("POST", p, op, nil), &res)
		if !res.IsSuccessful {
			t.Errorf("bulk on %s: %+v", p, res)
		}
	}
	for _, p := range []string{"/Enrollments/route-0/", "/enrollments/ROUTE-1"} {
		if r := env.do("GET", p, nil, nil); r.status != 200 {
			t.Errorf("GET %s: %d %s", p, r.status, r.body)
		}
	}
	g := enroll.EnrollmentGroup{EnrollmentGroupID: "grp", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey}}
	if r := env.do("PUT", "/enrollmentgroups/grp/", g, nil); r.status != 200 {
		t.Errorf("PUT /enrollmentgroups/grp/: %d %s", r.status, r.body)
	}
	// An enrollment may be called "query": only POST queries.
	if r := env.do("PUT", "/enrollments/query", tpmEnrollment("query"), nil); r.status != 200 {
		t.Errorf("PUT /enrollments/query: %d %s", r.status, r.body)
	}
	// Every api-version the SDKs send is served.
	for _, v := range SupportedAPIVersions() {
		if r := env.do("GET", "/enrollments/query?api-version="+v, nil, nil); r.status != 200 {
			t.Errorf("api-version %s: %d %s", v, r.status, r.body)
		}
	}
	var regs []json.RawMessage
	r := env.do("POST", "/registrations/grp/query", enroll.QuerySpecification{Query: "SELECT * FROM enrollmentGroups"}, nil)
	decodeOK(t, "registration query", r, &regs)
	if len(regs) != 0 || r.header.Get("x-ms-item-type") != "DeviceRegistration" {
		t.Errorf("registration query: %s, item type %q", r.body, r.header.Get("x-ms-item-type"))
	}
}

func TestAuth(t *testing.T) {
	env := newTestEnv(t, Options{SecondaryKey: []byte("the secondary key"), HostNames: []string{"MyDPS.example.net"}})
	now := env.clock.Now()
	hostOnly := strings.Split(env.host, ":")[0]
	other := []byte("a key the emulator does not hold")
	tests := []struct {
		name  string
		auth  string
		ok    bool
		words string // the 401's message says
	}{
		{"package enroll's token", enroll.SASToken(env.host, DefaultKeyName, testKey, now.Add(time.Hour)), true, ""},
		{"Node token, sr not encoded", nodeToken(env.host, DefaultKeyName, testKey, now.Add(time.Hour)), true, ""},
		{"no skn", enroll.SASToken(env.host, "", testKey, now.Add(time.Hour)), true, ""},
		{"secondary key", enroll.SASToken(env.host, DefaultKeyName, []byte("the secondary key"), now.Add(time.Hour)), true, ""},
		{"sr without the port", enroll.SASToken(hostOnly, DefaultKeyName, testKey, now.Add(time.Hour)), true, ""},
		{"sr a configured host name", nodeToken("mydps.example.net", DefaultKeyName, testKey, now.Add(time.Hour)), true, ""},
		{"expired within the skew", enroll.SASToken(env.host, DefaultKeyName, testKey, now.Add(-4*time.Minute)), true, ""},
		{"missing", "", false, "missing"},
		{"bearer", "Bearer eyJ0eXAi", false, "not supported by the emulator"},
		{"malformed", "SharedAccessSignature sr=x", false, "malformed"},
		{"not SAS", "Basic dXNlcjpwdw==", false, "malformed"},
		{"forged", enroll.SASToken(env.host, DefaultKeyName, other, now.Add(time.Hour)), false, "signature"},
		{"expired", enroll.SASToken(env.host, DefaultKeyName, testKey, now.Add(-6*time.Minute)), false, "expired"},
		{"wrong audience", enroll.SASToken("other-dps.azure-devices-provisioning.net", DefaultKeyName, testKey, now.Add(time.Hour)), false, "other-dps"},
		{"wrong policy", enroll.SASToken(env.host, "enrollmentread", testKey, now.Add(time.Hour)), false, "enrollmentread"},
	}
	for _, tt := range tests {
		before := env.e.Stats()
		r := env.do("GET", "/enrollments/nobody", nil, header{"Authorization": tt.auth})
		if tt.ok {
			r.wantError(t, tt.name, 404, enroll.CodeNotFound)
			continue
		}
		r.wantError(t, tt.name, 401, enroll.CodeUnauthorized, tt.words)
		after := env.e.Stats()
		if after.Unauthorized != before.Unauthorized+1 || after.Operations != before.Operations {
			t.Errorf("%s: stats went from %+v to %+v; want one more 401 and no operation", tt.name, before, after)
		}
	}
}

func TestBulk(t *testing.T) {
	env := newTestEnv(t, Options{})
	post := func(what string, op any) (enroll.BulkResult, string) {
		t.Helper()
		r := env.do("POST", "/enrollments", op, nil)
		var res enroll.BulkResult
		decodeOK(t, what, r, &res)
		return res, string(r.body)
	}
	// A bulk request is one operation.
	before := env.e.Stats().Operations
	res, raw := post("create 3", bulkBody(enroll.ModeCreate, tpmEnrollment("bulk-1"), tpmEnrollment("bulk-2"), tpmEnrollment("bulk-3")))
	if !res.IsSuccessful || len(res.Errors) != 0 || !strings.Contains(raw, `"errors":[]`) {
		t.Fatalf("create 3: %s", raw)
	}
	if ops := env.e.Stats().Operations - before; ops != 1 {
		t.Errorf("a bulk request cost %d operations, want 1", ops)
	}

	type outcome struct {
		ID   string
		Code int
	}
	failures := func(res enroll.BulkResult) []outcome {
		var out []outcome
		for _, e := range res.Errors {
			if e.ErrorStatus == "" {
				t.Errorf("error entry %+v has no errorStatus", e)
			}
			out = append(out, outcome{e.RegistrationID, e.ErrorCode})
		}
		return out
	}
	bad := tpmEnrollment("bad id")
	var current enroll.Enrollment
	decodeOK(t, "GET bulk-2", env.do("GET", "/enrollments/bulk-2", nil, nil), &current)
	withETag := func(id, etag string) enroll.Enrollment { e := tpmEnrollment(id); e.ETag = etag; return e }

	tests := []struct {
		name   string
		op     any
		failed []outcome
		writes map[string]int // after the request
	}{
		{"create: existing, new, invalid, duplicate",
			bulkBody(enroll.ModeCreate, tpmEnrollment("bulk-1"), tpmEnrollment("bulk-4"), bad, tpmEnrollment("BULK-4")),
			[]outcome{{"bulk-1", enroll.CodeConflict}, {"bad id", enroll.CodeRegistrationID}, {"BULK-4", enroll.CodeBadBody}},
			map[string]int{"bulk-1": 1, "bulk-4": 1}},
		{"create: an item of the wrong shape",
			map[string]any{"mode": "create", "enrollments": []any{map[string]any{"registrationId": "shape-1", "attestation": 7}, tpmEnrollment("bulk-5")}},
			[]outcome{{"shape-1", enroll.CodeBadBody}},
			map[string]int{"shape-1": 0, "bulk-5": 1}},
		{"update creates and replaces",
			bulkBody(enroll.ModeUpdate, tpmEnrollment("bulk-1"), tpmEnrollment("bulk-6")),
			nil, map[string]int{"bulk-1": 2, "bulk-6": 1}},
		{"updateIfMatchETag",
			bulkBody(enroll.ModeUpdateIfMatchETag, withETag("bulk-2", current.ETag), withETag("bulk-3", `"stale"`), tpmEnrollment("bulk-4"), withETag("bulk-7", "*")),
			[]outcome{{"bulk-3", enroll.CodePrecondition}, {"bulk-4", enroll.CodePrecondition}, {"bulk-7", enroll.CodePrecondition}},
			map[string]int{"bulk-2": 2, "bulk-3": 1, "bulk-4": 1, "bulk-7": 0}},
		{"delete",
			bulkBody(enroll.ModeDelete, enroll.Enrollment{RegistrationID: "bulk-3"}, enroll.Enrollment{RegistrationID: "absent"}, withETag("bulk-4", `"stale"`)),
			[]outcome{{"absent", enroll.CodeNotFound}, {"bulk-4", enroll.CodePrecondition}},
			map[string]int{"bulk-3": 0, "bulk-4": 1}},
	}
	for _, tt := range tests {
		res, raw := post(tt.name, tt.op)
		if res.IsSuccessful != (len(tt.failed) == 0) {
			t.Errorf("%s: isSuccessful %v: %s", tt.name, res.IsSuccessful, raw)
		}
		if d := cmp.Diff(tt.failed, failures(res)); d != "" {
			t.Errorf("%s: failed items (-want +got):\n%s", tt.name, d)
		}
		for id, n := range tt.writes {
			if got := env.writes(id); got != n {
				t.Errorf("%s: Writes(%s) = %d, want %d", tt.name, id, got, n)
			}
		}
	}

	// Refused as a whole: nothing is done.
	eleven := bulkBody(enroll.ModeCreate)
	for _, id := range ids("eleven", enroll.MaxBulk+1) {
		eleven.Enrollments = append(eleven.Enrollments, tpmEnrollment(id))
	}
	whole := []struct {
		name string
		op   any
		code int
		msg  string
	}{
		{"11 items", eleven, enroll.CodeBulkTooMany, "at most 10"},
		{"unknown mode", bulkBody("upsert", tpmEnrollment("eleven-000")), enroll.CodeBadBody, "upsert"},
		{"no items", bulkBody(enroll.ModeCreate), enroll.CodeBadBody, "empty"},
		{"groups sent to enrollments", map[string]any{"mode": "create", "enrollmentGroups": []any{map[string]any{"enrollmentGroupId": "g"}}}, enroll.CodeBadBody, "enrollments"},
		{"not JSON", "mode=create", enroll.CodeBadBody, "not a JSON object"},
	}
	for _, tt := range whole {
		env.do("POST", "/enrollments", tt.op, nil).wantError(t, tt.name, 400, tt.code, tt.msg)
	}
	if n := env.writes("eleven-000"); n != 0 {
		t.Errorf("a refused bulk request stored eleven-000")
	}
}

// queryAll pages through path's query with page size n and returns the
// IDs seen and the number of pages; between pages it calls between.
func queryAll(t *testing.T, env *testEnv, path, from string, n int, idField string, between func(page int)) ([]string, int) {
	t.Helper()
	var seen []string
	token := ""
	for page := 1; ; page++ {
		h := header{"x-ms-max-item-count": fmt.Sprint(n)}
		if token != "" {
			h["x-ms-continuation"] = token
		}
		r := env.do("POST", path, enroll.QuerySpecification{Query: "SELECT * FROM " + from}, h)
		var items []map[string]any
		decodeOK(t, fmt.Sprintf("query page %d", page), r, &items)
		if got := r.header.Get("x-ms-max-item-count"); got != fmt.Sprint(n) {
			t.Errorf("page %d: x-ms-max-item-count %q, want %d", page, got, n)
		}
		for _, it := range items {
			seen = append(seen, it[idField].(string))
		}
		if len(items) > n {
			t.Fatalf("page %d has %d items, more than %d", page, len(items), n)
		}
		vals, more := r.header["X-Ms-Continuation"]
		if !more {
			return seen, page
		}
		if len(vals) != 1 || vals[0] == "" {
			t.Fatalf("page %d: x-ms-continuation %q: want one token, never empty", page, vals)
		}
		token = vals[0]
		if between != nil {
			between(page)
		}
		if page > 100 {
			t.Fatal("query does not end")
		}
	}
}

func TestQueryPaging(t *testing.T) {
	env := newTestEnv(t, Options{})
	all := ids("q", 25)
	for i := 0; i < len(all); i += enroll.MaxBulk {
		op := bulkBody(enroll.ModeCreate)
		for _, id := range all[i:min(i+enroll.MaxBulk, len(all))] {
			op.Enrollments = append(op.Enrollments, tpmEnrollment(id))
		}
		var res enroll.BulkResult
		decodeOK(t, "bulk create", env.do("POST", "/enrollments/", op, nil), &res)
	}
	// The type of the items is given on every page.
	r := env.do("POST", "/enrollments/query", enroll.QuerySpecification{Query: "select *\n  from   Enrollments"}, header{"x-ms-max-item-count": "10"})
	if r.status != 200 || r.header.Get("x-ms-item-type") != "Enrollment" {
		t.Fatalf("query: %d, x-ms-item-type %q: %s", r.status, r.header.Get("x-ms-item-type"), r.body)
	}

	got, pages := queryAll(t, env, "/enrollments/query", "enrollments", 10, "registrationId", nil)
	if d := cmp.Diff(all, got); d != "" || pages != 3 {
		t.Errorf("25 items by 10: %d pages, items (-want +got):\n%s", pages, d)
	}

	// Items added, updated and deleted while paging: none skipped or
	// repeated, new ones at the end.
	got, _ = queryAll(t, env, "/enrollments/query", "enrollments", 10, "registrationId", func(page int) {
		if page == 1 {
			env.do("PUT", "/enrollments/q-000", tpmEnrollment("q-000"), nil) // already seen: not repeated
			env.do("PUT", "/enrollments/late-1", tpmEnrollment("late-1"), nil)
			env.do("DELETE", "/enrollments/q-024", nil, nil)
		}
	})
	want := append(slices.Clone(all[:24]), "late-1")
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("paging while writing (-want +got):\n%s", d)
	}

	// Default page size and the cap.
	r = env.do("POST", "/enrollments/query", enroll.QuerySpecification{Query: "SELECT * FROM enrollments"}, nil)
	if _, more := r.header["X-Ms-Continuation"]; more || r.header.Get("x-ms-max-item-count") != "100" {
		t.Errorf("default page: continuation %v, x-ms-max-item-count %q", more, r.header.Get("x-ms-max-item-count"))
	}
	r = env.do("POST", "/enrollments/query", enroll.QuerySpecification{Query: "SELECT * FROM enrollments"}, header{"x-ms-max-item-count": "5000"})
	if r.header.Get("x-ms-max-item-count") != "1000" {
		t.Errorf("x-ms-max-item-count 5000 answered %q, want 1000", r.header.Get("x-ms-max-item-count"))
	}

	groupToken := formatContinuation('g', 3)
	bad := []struct {
		name string
		q    any
		h    header
		msg  string
	}{
		{"no query", map[string]any{"querry": "SELECT *"}, nil, `no "query"`},
		{"garbage token", enroll.QuerySpecification{Query: "SELECT * FROM enrollments"}, header{"x-ms-continuation": "%%%"}, "continuation"},
		{"a group query's token", enroll.QuerySpecification{Query: "SELECT * FROM enrollments"}, header{"x-ms-continuation": groupToken}, "another kind"},
		{"zero page", enroll.QuerySpecification{Query: "SELECT * FROM enrollments"}, header{"x-ms-max-item-count": "0"}, "positive"},
		{"text page", enroll.QuerySpecification{Query: "SELECT * FROM enrollments"}, header{"x-ms-max-item-count": "ten"}, "positive"},
	}
	for _, tt := range bad {
		env.do("POST", "/enrollments/query", tt.q, tt.h).wantError(t, tt.name, 400, enroll.CodeBadQuery, tt.msg)
	}
}

func TestGroups(t *testing.T) {
	env := newTestEnv(t, Options{})
	certPEM, cert := testCert(t, "Line 7 Intermediate CA")
	groups := []enroll.EnrollmentGroup{
		{EnrollmentGroupID: "Line7-X509", Attestation: enroll.Attestation{Type: enroll.AttestationX509,
			X509: &enroll.X509Attestation{SigningCertificates: &enroll.X509Certificates{Primary: &enroll.X509Certificate{Certificate: certPEM}}}}},
		{EnrollmentGroupID: "line7-ca-ref", Attestation: enroll.Attestation{Type: enroll.AttestationX509,
			X509: &enroll.X509Attestation{CAReferences: &enroll.X509CAReferences{Primary: "line7-ca"}}}},
		{EnrollmentGroupID: "line7-sym", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey}},
	}
	for _, g := range groups {
		var got enroll.EnrollmentGroup
		decodeOK(t, "PUT group "+g.EnrollmentGroupID, env.do("PUT", "/enrollmentGroups/"+g.EnrollmentGroupID, g, nil), &got)
		if got.EnrollmentGroupID != g.EnrollmentGroupID || got.ETag == "" || got.ProvisioningStatus != "enabled" || got.CreatedDateTimeUTC == nil {
			t.Errorf("PUT group %s answered %+v", g.EnrollmentGroupID, got)
		}
	}
	var x enroll.EnrollmentGroup
	decodeOK(t, "GET group", env.do("GET", "/enrollmentGroups/line7-x509", nil, nil), &x)
	if info := x.Attestation.X509.SigningCertificates.Primary.Info; info == nil || info.SubjectName != cert.Subject.String() {
		t.Errorf("signing certificate info %+v", info)
	}
	var sym enroll.EnrollmentGroup
	decodeOK(t, "GET sym group", env.do("GET", "/enrollmentGroups/LINE7-SYM", nil, nil), &sym)
	if sym.Attestation.SymmetricKey == nil || sym.Attestation.SymmetricKey.PrimaryKey == "" {
		t.Errorf("symmetric-key group has no keys: %+v", sym.Attestation)
	}
	var att enroll.Attestation
	decodeOK(t, "group attestation", env.do("POST", "/enrollmentgroups/line7-sym/attestationmechanism", nil, nil), &att)
	if d := cmp.Diff(sym.Attestation, att); d != "" {
		t.Errorf("group attestation mechanism (-GET +POST):\n%s", d)
	}
	env.do("GET", "/enrollmentGroups/none", nil, nil).wantError(t, "GET absent group", 404, enroll.CodeGroupNotFound)
	// Groups and enrollments are apart.
	env.do("GET", "/enrollments/line7-sym", nil, nil).wantError(t, "group read as an enrollment", 404, enroll.CodeNotFound)

	// Bulk of groups: errors keyed by enrollmentGroupId.
	r := env.do("POST", "/enrollmentGroups/", map[string]any{"mode": "create", "enrollmentGroups": []any{
		enroll.EnrollmentGroup{EnrollmentGroupID: "line7-sym", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey}},
		enroll.EnrollmentGroup{EnrollmentGroupID: "line8-sym", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey}},
	}}, nil)
	var res struct {
		IsSuccessful bool
		Errors       []struct {
			EnrollmentGroupID string
			ErrorCode         int
			ErrorStatus       string
		}
	}
	decodeOK(t, "group bulk", r, &res)
	if res.IsSuccessful || len(res.Errors) != 1 || res.Errors[0].EnrollmentGroupID != "line7-sym" || res.Errors[0].ErrorCode != enroll.CodeConflict {
		t.Errorf("group bulk answered %s", r.body)
	}
	if !strings.Contains(string(r.body), `"enrollmentGroupId":"line7-sym"`) {
		t.Errorf("group bulk errors not keyed by enrollmentGroupId: %s", r.body)
	}

	got, pages := queryAll(t, env, "/enrollmentGroups/query", "enrollmentGroups", 2, "enrollmentGroupId", nil)
	if d := cmp.Diff([]string{"Line7-X509", "line7-ca-ref", "line7-sym", "line8-sym"}, got); d != "" || pages != 2 {
		t.Errorf("group query: %d pages (-want +got):\n%s", pages, d)
	}
	r = env.do("POST", "/enrollmentGroups/query", enroll.QuerySpecification{Query: "SELECT * FROM enrollmentGroups"}, nil)
	if r.header.Get("x-ms-item-type") != "EnrollmentGroup" {
		t.Errorf("group query x-ms-item-type %q", r.header.Get("x-ms-item-type"))
	}
	env.do("POST", "/enrollmentGroups/query", enroll.QuerySpecification{Query: "SELECT * FROM enrollmentGroups"},
		header{"x-ms-continuation": formatContinuation('e', 1)}).wantError(t, "enrollment token on groups", 400, enroll.CodeBadQuery, "another kind")

	if r := env.do("DELETE", "/enrollmentGroups/line8-sym", nil, nil); r.status != 204 {
		t.Errorf("DELETE group: %d %s", r.status, r.body)
	}
	env.do("DELETE", "/enrollmentGroups/line8-sym", nil, nil).wantError(t, "DELETE group again", 404, enroll.CodeGroupNotFound)
}

func TestQuota(t *testing.T) {
	env := newTestEnv(t, Options{Quota: 60, Burst: 2})
	put := func(id string) response { return env.do("PUT", "/enrollments/"+id, tpmEnrollment(id), nil) }
	for _, id := range []string{"quota-1", "quota-2"} {
		if r := put(id); r.status != 200 {
			t.Fatalf("PUT %s within the burst: %d %s", id, r.status, r.body)
		}
	}
	r := put("quota-3")
	r.wantError(t, "over the quota", 429, enroll.CodeThrottled, "quota")
	if ra := r.header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1 (a token a second)", ra)
	}
	if n := env.writes("quota-3"); n != 0 {
		t.Errorf("a throttled PUT stored quota-3")
	}
	// Throttled requests cost nothing; unauthenticated ones are 401, not 429.
	put("quota-3").wantError(t, "still over", 429, enroll.CodeThrottled)
	env.do("GET", "/enrollments/quota-1", nil, header{"Authorization": ""}).wantError(t, "no token while throttled", 401, enroll.CodeUnauthorized)
	env.clock.Advance(time.Second)
	if r := put("quota-3"); r.status != 200 {
		t.Fatalf("PUT after waiting: %d %s", r.status, r.body)
	}
	st := env.e.Stats()
	if st.Operations != 3 || st.Throttled != 2 {
		t.Errorf("stats %+v: want 3 operations and 2 throttled", st)
	}

	// Retry-After says how long until a token is there, in whole seconds.
	env.e.SetQuota(6, 1) // one every 10 s
	put("quota-4")
	r = put("quota-5")
	r.wantError(t, "6 a minute", 429, enroll.CodeThrottled)
	if ra := r.header.Get("Retry-After"); ra != "10" {
		t.Errorf("Retry-After %q, want 10", ra)
	}
	env.clock.Advance(9500 * time.Millisecond)
	if ra := put("quota-5").header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After half a second before the token: %q, want 1", ra)
	}
	env.e.SetQuota(0, 0)
	for i := range 20 {
		if r := env.do("GET", "/enrollments/quota-1", nil, nil); r.status != 200 {
			t.Fatalf("request %d without a quota: %d", i, r.status)
		}
	}
}

func TestBucket(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b := newBucket(120, 0) // 2 a second, bucket of 2
	for i := range 2 {
		if ok, _ := b.take(t0); !ok {
			t.Fatalf("take %d of a full bucket of 2 refused", i+1)
		}
	}
	if ok, wait := b.take(t0); ok || wait != 500*time.Millisecond {
		t.Errorf("empty bucket: ok=%v wait=%v, want refused, 500ms", ok, wait)
	}
	// A clock that goes back neither refills nor breaks the bucket.
	if ok, _ := b.take(t0.Add(-time.Hour)); ok {
		t.Errorf("a clock going back refilled the bucket")
	}
	if ok, _ := b.take(t0.Add(500 * time.Millisecond)); !ok {
		t.Errorf("refused after refilling one token")
	}
	// It never holds more than its burst.
	if ok, _ := b.take(t0.Add(time.Hour)); !ok {
		t.Fatal("refused after an hour")
	}
	b.take(t0.Add(time.Hour))
	if ok, _ := b.take(t0.Add(time.Hour)); ok {
		t.Errorf("the bucket held more than its burst of 2")
	}
	if ok, _ := (&bucket{}).take(t0); !ok {
		t.Errorf("no quota refused")
	}
}

func TestFaults(t *testing.T) {
	env := newTestEnv(t, Options{})
	put := func(id string) (response, error) { return env.send("PUT", "/enrollments/"+id, tpmEnrollment(id), nil) }

	env.e.SetFaults(Faults{ErrorRate: 1})
	for i := range 6 {
		id := fmt.Sprintf("err-%d", i)
		r, err := put(id)
		if err != nil {
			t.Fatalf("ErrorRate 1: %v", err)
		}
		want := map[int]int{500: enroll.CodeInternal, 503: enroll.CodeServerUnavailable}[r.status]
		if want == 0 {
			t.Fatalf("ErrorRate 1 answered %d, want 500 or 503", r.status)
		}
		r.wantError(t, "injected error", r.status, want, "injected")
		if n := env.writes(id); n != 0 {
			t.Errorf("an injected error stored %s", id)
		}
	}

	env.e.SetFaults(Faults{DropRate: 1})
	if r, err := put("drop-1"); err == nil {
		t.Errorf("DropRate 1: answered %d, want the connection cut", r.status)
	}
	if n := env.writes("drop-1"); n != 0 {
		t.Errorf("a dropped request stored drop-1")
	}

	env.e.SetFaults(Faults{DropAfterRate: 1})
	if r, err := put("after-1"); err == nil {
		t.Errorf("DropAfterRate 1: answered %d, want the connection cut", r.status)
	}
	if n := env.writes("after-1"); n != 1 {
		t.Errorf("DropAfterRate 1: Writes(after-1) = %d, want 1: the work is done before the cut", n)
	}
	// A bulk request dropped after is committed as a whole.
	if _, err := env.send("POST", "/enrollments", bulkBody(enroll.ModeCreate, tpmEnrollment("after-2"), tpmEnrollment("after-3")), nil); err == nil {
		t.Errorf("DropAfterRate 1: the bulk request was answered")
	}
	if env.writes("after-2") != 1 || env.writes("after-3") != 1 {
		t.Errorf("a bulk request dropped after was not committed")
	}

	// Items of a bulk request that fail on their own: 200, each listed
	// with a 5xx errorCode, none stored.
	env.e.SetFaults(Faults{ItemErrorRate: 1})
	r, err := env.send("POST", "/enrollments", bulkBody(enroll.ModeCreate, tpmEnrollment("item-1"), tpmEnrollment("item-2")), nil)
	if err != nil || r.status != 200 {
		t.Fatalf("ItemErrorRate 1: %v, status %d", err, r.status)
	}
	var res enroll.BulkResult
	json.Unmarshal(r.body, &res)
	if res.IsSuccessful || len(res.Errors) != 2 || res.Errors[0].Status() != 500 || res.Errors[1].Status() != 500 {
		t.Errorf("ItemErrorRate 1: answer %s, want both items failed with a 5xx errorCode", r.body)
	}
	if env.writes("item-1") != 0 || env.writes("item-2") != 0 {
		t.Errorf("items failed on their own were stored")
	}

	// A latency longer than the client waits: the client gives up, and
	// nothing is done.
	env.e.SetFaults(Faults{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, "DELETE", env.ts.URL+"/enrollments/after-1?api-version=2021-10-01", nil)
	req.Header.Set("Authorization", env.token())
	if resp, err := env.client.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("a request under an hour's latency was answered %d", resp.StatusCode)
	}
	cancel()

	env.e.SetFaults(Faults{})
	if r := env.do("GET", "/enrollments/after-1", nil, nil); r.status != 200 {
		t.Errorf("after the faults are lifted: %d %s", r.status, r.body)
	}
	st := env.e.Stats()
	if st.Errors != 6 || st.Drops != 1 || st.DropsAfter != 2 || st.ItemErrors != 2 {
		t.Errorf("stats %+v: want 6 errors, 1 drop, 2 drops after, 2 item errors", st)
	}
}

func TestFaultShares(t *testing.T) {
	// The same seed makes the same choices; the shares come out near the
	// rates asked for.
	draw := func(seed int64) []fault {
		e := &Emulator{}
		e.setFaults(Faults{ErrorRate: 0.2, DropRate: 0.1, DropAfterRate: 0.1, Seed: seed})
		out := make([]fault, 2000)
		for i := range out {
			out[i], _ = e.decide()
		}
		return out
	}
	a, b := draw(42), draw(42)
	if !slices.Equal(a, b) {
		t.Errorf("the same seed made different choices")
	}
	count := map[fault]int{}
	for _, f := range a {
		count[f]++
	}
	for f, want := range map[fault]int{faultNone: 1200, faultError: 400, faultDrop: 200, faultDropAfter: 200} {
		if got := count[f]; got < want*7/10 || got > want*13/10 {
			t.Errorf("fault %d chosen %d times of 2000, want about %d", f, got, want)
		}
	}
}

func TestPersistence(t *testing.T) {
	env := newTestEnv(t, Options{})
	for _, id := range ids("keep", 3) {
		env.do("PUT", "/enrollments/"+id, tpmEnrollment(id), nil)
	}
	env.do("PUT", "/enrollments/keep-001", tpmEnrollment("keep-001"), nil)
	var before enroll.Enrollment
	decodeOK(t, "GET", env.do("GET", "/enrollments/keep-001", nil, nil), &before)
	r := env.do("POST", "/enrollments/query", enroll.QuerySpecification{Query: "SELECT * FROM enrollments"}, header{"x-ms-max-item-count": "1"})
	token := r.header.Get("x-ms-continuation")
	env.ts.Close()
	if err := env.e.Close(); err != nil {
		t.Fatal(err)
	}

	again := newTestEnv(t, Options{DB: env.dbPath})
	var after enroll.Enrollment
	decodeOK(t, "GET after restart", again.do("GET", "/enrollments/KEEP-001", nil, nil), &after)
	if d := cmp.Diff(before, after); d != "" {
		t.Errorf("enrollment after restart (-before +after):\n%s", d)
	}
	if n := again.writes("keep-001"); n != 2 {
		t.Errorf("Writes after restart = %d, want 2", n)
	}
	// A continuation token outlives the restart.
	var rest []enroll.Enrollment
	decodeOK(t, "query after restart", again.do("POST", "/enrollments/query", enroll.QuerySpecification{Query: "SELECT * FROM enrollments"}, header{"x-ms-continuation": token}), &rest)
	if len(rest) != 2 || rest[0].RegistrationID != "keep-001" || rest[1].RegistrationID != "keep-002" {
		t.Errorf("query resumed after restart: %+v", rest)
	}
}

func TestConcurrentWrites(t *testing.T) {
	env := newTestEnv(t, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for w := range 8 {
		wg.Go(func() {
			for i := range 5 {
				id := fmt.Sprintf("conc-%d-%d", w, i)
				r, err := env.send("PUT", "/enrollments/"+id, tpmEnrollment(id), nil)
				if err == nil && r.status != 200 {
					err = fmt.Errorf("PUT %s: %d %s", id, r.status, r.body)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, _ := queryAll(t, env, "/enrollments/query", "enrollments", 7, "registrationId", nil)
	if len(got) != 40 {
		t.Errorf("%d enrollments after 40 concurrent PUTs", len(got))
	}
}

func TestContinuation(t *testing.T) {
	for _, tt := range []struct {
		tag byte
		seq int64
	}{{'e', 1}, {'g', 42}, {'e', 1<<63 - 1}} {
		tag, seq, err := parseContinuation(formatContinuation(tt.tag, tt.seq))
		if err != nil || tag != tt.tag || seq != tt.seq {
			t.Errorf("parseContinuation(formatContinuation(%c, %d)) = %c, %d, %v", tt.tag, tt.seq, tag, seq, err)
		}
	}
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, bad := range []string{"", "%%", enc("zt1:e:"), enc("zt1:e:0"), enc("zt1:e:-3"), enc("zt1:e:+3"), enc("zt1:e:03"), enc("zt1:x:3"), enc("zt2:e:3"), enc("zt1:e:99999999999999999999"), enc("zt1:e3")} {
		if _, _, err := parseContinuation(bad); !errors.Is(err, errContinuation) {
			t.Errorf("parseContinuation(%q) = %v, want errContinuation", bad, err)
		}
	}
}

func FuzzParseContinuation(f *testing.F) {
	f.Add(formatContinuation('e', 1))
	f.Add(formatContinuation('g', 1<<62))
	f.Add("")
	f.Add("emt0MTplOjA")
	f.Add("not base64!")
	f.Fuzz(func(t *testing.T, s string) {
		tag, seq, err := parseContinuation(s)
		if err != nil {
			if !errors.Is(err, errContinuation) {
				t.Fatalf("parseContinuation(%q) = %v, not errContinuation", s, err)
			}
			return
		}
		if seq <= 0 || (tag != tagEnrollments && tag != tagGroups && tag != tagRegistrations) {
			t.Fatalf("parseContinuation(%q) = %c, %d: out of range", s, tag, seq)
		}
		tag2, seq2, err := parseContinuation(formatContinuation(tag, seq))
		if err != nil || tag2 != tag || seq2 != seq {
			t.Fatalf("round trip of %c, %d = %c, %d, %v", tag, seq, tag2, seq2, err)
		}
	})
}
