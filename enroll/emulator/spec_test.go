package emulator

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"zerotouch/enroll"
)

// specRun sends service API requests under one api-version and checks
// every answer against that version's service.json.
type specRun struct {
	t    *testing.T
	env  *testEnv
	doc  *specDoc
	ver  string
	seen map[string][]int // operationId: the statuses answered
	n    int              // answers checked
}

func (s *specRun) do(method, path string, body any, h header) response {
	s.t.Helper()
	r := s.env.do(method, path+"?api-version="+s.ver, body, h)
	s.n++
	for _, e := range s.doc.checkAnswer(method, path, r.status, r.body) {
		s.t.Errorf("api-version %s: %s %s: %d: %s", s.ver, method, path, r.status, e)
	}
	if r.status >= 400 {
		r.errorBody(s.t) // x-ms-error-code, trackingId, timestampUtc, message
	}
	if _, op := s.doc.operation(method, path); op != nil {
		s.seen[op.OperationID] = append(s.seen[op.OperationID], r.status)
	}
	return r
}

// want is do that fails the test unless the answer has status.
func (s *specRun) want(status int, method, path string, body any, h header) response {
	s.t.Helper()
	r := s.do(method, path, body, h)
	if r.status != status {
		s.t.Fatalf("api-version %s: %s %s: status %d (%s), want %d", s.ver, method, path, r.status, r.body, status)
	}
	return r
}

// specRegister registers the symmetric-key device id with key through
// the device API and polls its operation once; it returns the final
// status.
func specRegister(t *testing.T, env *testEnv, id string, key []byte) string {
	t.Helper()
	auth := header{"Authorization": enroll.SASToken(DefaultIDScope+"/registrations/"+id, "registration", key, env.clock.Now().Add(time.Hour))}
	r := env.do("PUT", "/"+DefaultIDScope+"/registrations/"+id+"/register?api-version=2021-06-01", map[string]string{"registrationId": id}, auth)
	var op struct {
		OperationID string `json:"operationId"`
	}
	if r.status != http.StatusAccepted || json.Unmarshal(r.body, &op) != nil {
		t.Fatalf("register %s: %d %s", id, r.status, r.body)
	}
	p := env.do("GET", "/"+DefaultIDScope+"/registrations/"+id+"/operations/"+op.OperationID+"?api-version=2021-06-01", nil, auth)
	var st struct {
		Status string `json:"status"`
	}
	if p.status != http.StatusOK || json.Unmarshal(p.body, &st) != nil {
		t.Fatalf("poll %s: %d %s", id, p.status, p.body)
	}
	return st.Status
}

// derivedKey is a group member's key: HMAC-SHA256(group key, ID).
func derivedKey(groupKey []byte, id string) []byte {
	m := hmac.New(sha256.New, groupKey)
	m.Write([]byte(id))
	return m.Sum(nil)
}

// TestSpecConformance runs every operation of the DPS service API, under
// 2021-10-01 and 2026-04-01, through its success answers and its error
// answers, and checks each answer against that version's service.json
// (testdata/spec): the status is one the operation lists (errors fall to
// its default response), and the body has the schema's property names,
// types, formats, enum values and required properties, and nothing the
// schema does not name; credentialPolicyName is answered under
// 2026-04-01 only.
func TestSpecConformance(t *testing.T) {
	for _, ver := range []string{enroll.APIVersion2021, enroll.APIVersion2026} {
		t.Run(ver, func(t *testing.T) {
			env := newTestEnv(t, Options{IoTHubs: []string{"hub-1.azure-devices.net", "hub-2.azure-devices.net"}})
			s := &specRun{t: t, env: env, doc: loadSpec(t, "testdata/spec/service-"+ver+".json"), ver: ver, seen: map[string][]int{}}
			policy := enroll.SupportsCredentialPolicy(ver)
			symKey := []byte("a device key of thirty-two bytes")
			groupKey := []byte("a group key, also thirty-two byt")
			clientPEM, _ := testCert(t, "x509-dev")
			caPEM, _ := testCert(t, "zerotouch test CA")

			// Individual enrollments: each attestation, and what DPS fills.
			sym := map[string]any{"registrationId": "sym-dev", "attestation": map[string]any{"type": "symmetricKey",
				"symmetricKey": map[string]string{"primaryKey": base64.StdEncoding.EncodeToString(symKey)}},
				"deviceId": "sym-dev", "initialTwin": map[string]any{"tags": map[string]any{"line": "A"}, "properties": map[string]any{"desired": map[string]any{"interval": 30}}},
				"optionalDeviceInformation": map[string]any{"model": map[string]string{"name": "v1"}},
				"reprovisionPolicy":         map[string]any{}, "credentialPolicyName": "ops-certs"}
			r := s.want(200, "PUT", "/enrollments/sym-dev", sym, nil)
			var got enroll.Enrollment
			decodeOK(t, "PUT sym-dev", r, &got)
			if rp := got.ReprovisionPolicy; rp == nil || !rp.UpdateHubAssignment || !rp.MigrateDeviceData {
				t.Errorf("reprovisionPolicy {} stored as %+v, want both true (the specification's defaults)", rp)
			}
			if want := map[bool]string{true: "ops-certs"}[policy]; got.CredentialPolicyName != want {
				t.Errorf("credentialPolicyName answered %q, want %q", got.CredentialPolicyName, want)
			}
			s.want(200, "PUT", "/enrollments/x509-dev", map[string]any{"registrationId": "x509-dev", "attestation": map[string]any{"type": "x509",
				"x509": map[string]any{"clientCertificates": map[string]any{"primary": map[string]string{"certificate": clientPEM}}}},
				"allocationPolicy": "static", "iotHubs": []string{"hub-2.azure-devices.net"}}, nil)
			s.want(200, "PUT", "/enrollments/tpm-dev", tpmEnrollment("tpm-dev"), nil)
			s.want(200, "PUT", "/enrollments/none-dev", map[string]any{"registrationId": "none-dev", "attestation": map[string]string{"type": "none"},
				"allocationPolicy": "custom", "customAllocationDefinition": map[string]string{"webhookUrl": "https://alloc.example/api", "apiVersion": "2021-10-01"}}, nil)
			r = s.want(200, "GET", "/enrollments/sym-dev", nil, nil)
			decodeOK(t, "GET sym-dev", r, &got)
			s.want(412, "PUT", "/enrollments/sym-dev", sym, header{"If-Match": `"stale"`})
			s.want(400, "PUT", "/enrollments/sym-dev", `{"registrationId": 7}`, nil)
			s.want(404, "GET", "/enrollments/nobody", nil, nil)
			s.want(401, "GET", "/enrollments/sym-dev", nil, header{"Authorization": "SharedAccessSignature sr=elsewhere&sig=c2ln&se=1"})
			s.want(415, "PUT", "/enrollments/sym-dev", "{}", header{"Content-Type": "text/plain"})
			s.want(200, "POST", "/enrollments/sym-dev/attestationmechanism", nil, nil)
			s.want(404, "POST", "/enrollments/nobody/attestationmechanism", nil, nil)

			// Bulk: one item fails in a 200; a bad mode fails the request.
			r = s.want(200, "POST", "/enrollments", bulkBody(enroll.ModeCreate, tpmEnrollment("bulk-1"), tpmEnrollment("tpm-dev")), nil)
			var br enroll.BulkResult
			decodeOK(t, "bulk", r, &br)
			if br.IsSuccessful || len(br.Errors) != 1 || br.Errors[0].ErrorCode != enroll.CodeConflict {
				t.Errorf("bulk create of a new and an existing enrollment = %+v, want the existing one failed with %d", br, enroll.CodeConflict)
			}
			s.want(200, "POST", "/enrollments", bulkBody(enroll.ModeUpdate, tpmEnrollment("bulk-2")), nil)
			s.want(400, "POST", "/enrollments", map[string]any{"mode": "upsert", "enrollments": []any{tpmEnrollment("bulk-3")}}, nil)

			// Queries, paged.
			r = s.want(200, "POST", "/enrollments/query", enroll.QuerySpecification{Query: "*"}, header{"x-ms-max-item-count": "2"})
			if r.header.Get("x-ms-continuation") == "" || r.header.Get("x-ms-item-type") != "Enrollment" || r.header.Get("x-ms-max-item-count") != "2" {
				t.Errorf("query page headers %v: want x-ms-continuation, x-ms-item-type Enrollment, x-ms-max-item-count 2", r.header)
			}
			r = s.want(200, "POST", "/enrollments/query", enroll.QuerySpecification{Query: "SELECT *"}, nil)
			var list []map[string]any
			decodeOK(t, "query", r, &list)
			if len(list) != 6 {
				t.Errorf("SELECT * answered %d enrollments, want 6", len(list))
			}
			for _, e := range list {
				if _, has := e["credentialPolicyName"]; has != (policy && e["registrationId"] == "sym-dev") {
					t.Errorf("query: %v carries credentialPolicyName: %v", e["registrationId"], has)
				}
			}
			s.want(400, "POST", "/enrollments/query", map[string]any{}, nil)

			// Groups.
			s.want(200, "PUT", "/enrollmentGroups/sym-group", map[string]any{"enrollmentGroupId": "sym-group", "attestation": map[string]any{"type": "symmetricKey",
				"symmetricKey": map[string]string{"primaryKey": base64.StdEncoding.EncodeToString(groupKey)}}, "credentialPolicyName": "ops-certs",
				"reprovisionPolicy": map[string]bool{"updateHubAssignment": false}}, nil)
			s.want(200, "PUT", "/enrollmentGroups/x509-group", map[string]any{"enrollmentGroupId": "x509-group", "attestation": map[string]any{"type": "x509",
				"x509": map[string]any{"signingCertificates": map[string]any{"primary": map[string]string{"certificate": caPEM}}}}}, nil)
			r = s.want(200, "GET", "/enrollmentGroups/sym-group", nil, nil)
			var g enroll.EnrollmentGroup
			decodeOK(t, "GET sym-group", r, &g)
			if rp := g.ReprovisionPolicy; rp == nil || rp.UpdateHubAssignment || !rp.MigrateDeviceData {
				t.Errorf("reprovisionPolicy {updateHubAssignment: false} stored as %+v, want false and the default true", rp)
			}
			if want := map[bool]string{true: "ops-certs"}[policy]; g.CredentialPolicyName != want {
				t.Errorf("group credentialPolicyName answered %q, want %q", g.CredentialPolicyName, want)
			}
			s.want(404, "GET", "/enrollmentGroups/nogroup", nil, nil)
			s.want(412, "PUT", "/enrollmentGroups/sym-group", map[string]any{"enrollmentGroupId": "sym-group", "attestation": map[string]string{"type": "symmetricKey"}}, header{"If-Match": `"stale"`})
			s.want(200, "POST", "/enrollmentGroups/x509-group/attestationmechanism", nil, nil)
			s.want(404, "POST", "/enrollmentGroups/nogroup/attestationmechanism", nil, nil)
			s.want(200, "POST", "/enrollmentGroups", map[string]any{"mode": "create", "enrollmentGroups": []any{
				map[string]any{"enrollmentGroupId": "bulk-group", "attestation": map[string]string{"type": "symmetricKey"}},
				map[string]any{"enrollmentGroupId": "x509-group", "attestation": map[string]string{"type": "symmetricKey"}}}}, nil)
			s.want(400, "POST", "/enrollmentGroups", map[string]any{"mode": "create", "enrollmentGroups": []any{}}, nil)
			s.want(200, "POST", "/enrollmentGroups/query", enroll.QuerySpecification{Query: "SELECT * FROM enrollmentGroups"}, nil)
			s.want(400, "POST", "/enrollmentGroups/query", "[]", nil)

			// Registration states: devices register, then the service
			// reads, queries and deletes their states.
			if st := specRegister(t, env, "sym-dev", symKey); st != statusAssigned {
				t.Fatalf("sym-dev registered %s, want assigned", st)
			}
			for _, id := range []string{"member-1", "member-2"} {
				if st := specRegister(t, env, id, derivedKey(groupKey, id)); st != statusAssigned {
					t.Fatalf("%s registered %s, want assigned", id, st)
				}
			}
			s.want(200, "GET", "/enrollments/sym-dev", nil, nil) // now with its registrationState
			r = s.want(200, "GET", "/registrations/member-1", nil, nil)
			var rs enroll.RegistrationState
			decodeOK(t, "GET registration", r, &rs)
			r = s.want(200, "POST", "/registrations/sym-group/query", nil, header{"x-ms-max-item-count": "1"})
			if r.header.Get("x-ms-continuation") == "" {
				t.Errorf("registration query of 2 at 1 a page: no x-ms-continuation")
			}
			s.want(200, "POST", "/registrations/nogroup/query", nil, nil)
			s.want(400, "POST", "/registrations/nogroup/query", nil, header{"x-ms-max-item-count": "none"})
			s.want(404, "GET", "/registrations/nobody", nil, nil)
			s.want(412, "DELETE", "/registrations/member-1", nil, header{"If-Match": "c3RhbGU="})
			s.want(204, "DELETE", "/registrations/member-1", nil, header{"If-Match": rs.ETag})
			s.want(404, "DELETE", "/registrations/member-1", nil, nil)
			s.want(404, "GET", "/registrations/-member", nil, nil) // read: CheckExisting
			s.want(400, "GET", "/registrations/a%20member", nil, nil)

			// Deletes, with and without etags.
			s.want(412, "DELETE", "/enrollments/sym-dev", nil, header{"If-Match": `"stale"`})
			s.want(204, "DELETE", "/enrollments/sym-dev", nil, header{"If-Match": got.ETag})
			s.want(404, "DELETE", "/enrollments/sym-dev", nil, nil)
			s.want(412, "DELETE", "/enrollmentGroups/sym-group", nil, header{"If-Match": `"stale"`})
			s.want(204, "DELETE", "/enrollmentGroups/sym-group", nil, nil)
			s.want(404, "DELETE", "/enrollmentGroups/sym-group", nil, nil)

			// Every operation of the specification answered, with success
			// and with an error.
			for _, ops := range s.doc.Paths {
				for _, op := range ops {
					st := s.seen[op.OperationID]
					if !slices.ContainsFunc(st, func(c int) bool { return c < 300 }) || !slices.ContainsFunc(st, func(c int) bool { return c >= 400 }) {
						t.Errorf("%s answered %v: want a success and an error checked", op.OperationID, st)
					}
				}
			}
			t.Logf("%d answers of %d operations checked against %s %s", s.n, len(s.seen), s.doc.Info.Title, ver)
		})
	}
}

// TestSpecValidation: what the specification says of the values an
// enrollment or group takes, and the answer to each: the allocation
// policy's enum (its case included; custom needs its webhook), the
// provisioning status's case, the reprovision policy's defaults,
// attestation type none, and registration IDs of alphanumerics and
// - . _ : with no special character at either end.
func TestSpecValidation(t *testing.T) {
	env := newTestEnv(t, Options{})
	put := func(id string, extra map[string]any) response {
		t.Helper()
		body := map[string]any{"registrationId": id, "attestation": map[string]any{"type": "tpm", "tpm": map[string]string{"endorsementKey": "ZWs="}}}
		for k, v := range extra {
			body[k] = v
		}
		return env.do("PUT", "/enrollments/"+id, body, nil)
	}
	bad := []struct {
		name  string
		id    string
		extra map[string]any
		code  int
		msg   string
	}{
		{"unknown allocation policy", "a1", map[string]any{"allocationPolicy": "bogus"}, enroll.CodeBadBody, `allocationPolicy "bogus"`},
		{"allocation policy in another case", "a2", map[string]any{"allocationPolicy": "Hashed"}, enroll.CodeBadBody, `allocationPolicy "Hashed"`},
		{"custom without its webhook", "a3", map[string]any{"allocationPolicy": "custom"}, enroll.CodeBadBody, "customAllocationDefinition"},
		{"custom without apiVersion", "a4", map[string]any{"allocationPolicy": "custom", "customAllocationDefinition": map[string]string{"webhookUrl": "https://x"}}, enroll.CodeBadBody, "apiVersion"},
		{"provisioning status in another case", "a5", map[string]any{"provisioningStatus": "Enabled"}, enroll.CodeBadBody, `provisioningStatus "Enabled"`},
		{"ID starting with -", "-a6", nil, enroll.CodeRegistrationID, "starts with"},
		{"ID starting with .", ".a7", nil, enroll.CodeRegistrationID, "starts with"},
		{"ID starting with _", "_a8", nil, enroll.CodeRegistrationID, "starts with"},
		{"ID ending with -", "a9-", nil, enroll.CodeRegistrationID, "ends with"},
		{"ID ending with :", "a10:", nil, enroll.CodeRegistrationID, "end with"},
		{"ID with a space", "a 11", nil, enroll.CodeRegistrationID, "character"},
	}
	for _, tt := range bad {
		put(tt.id, tt.extra).wantError(t, tt.name, 400, tt.code, tt.msg)
	}
	good := []struct {
		name  string
		id    string
		extra map[string]any
	}{
		{"special characters inside", "a-b.c_d:e", nil},
		{"each allocation policy", "p1", map[string]any{"allocationPolicy": "geoLatency"}},
		{"custom with its webhook", "p2", map[string]any{"allocationPolicy": "custom", "customAllocationDefinition": map[string]string{"webhookUrl": "https://x", "apiVersion": "2021-10-01"}}},
		{"disabled", "p3", map[string]any{"provisioningStatus": "disabled"}},
		{"attestation none", "p4", map[string]any{"attestation": map[string]string{"type": "none"}}},
	}
	for _, tt := range good {
		if r := put(tt.id, tt.extra); r.status != 200 {
			t.Errorf("%s: PUT %s = %d %s, want 200", tt.name, tt.id, r.status, r.body)
		}
	}
	for body, want := range map[string]enroll.ReprovisionPolicy{
		`{}`:                           {UpdateHubAssignment: true, MigrateDeviceData: true},
		`{"migrateDeviceData": false}`: {UpdateHubAssignment: true, MigrateDeviceData: false},
		`{"updateHubAssignment": false, "migrateDeviceData": false}`: {},
	} {
		var rp json.RawMessage = []byte(body)
		var got enroll.Enrollment
		decodeOK(t, "reprovisionPolicy "+body, put("r1", map[string]any{"reprovisionPolicy": rp}), &got)
		if got.ReprovisionPolicy == nil || *got.ReprovisionPolicy != want {
			t.Errorf("reprovisionPolicy %s stored as %+v, want %+v", body, got.ReprovisionPolicy, want)
		}
	}
	// The same in a bulk operation.
	r := env.do("POST", "/enrollments", `{"mode":"create","enrollments":[{"registrationId":"b1","attestation":{"type":"none"},"reprovisionPolicy":{}},`+
		`{"registrationId":"b2-","attestation":{"type":"none"}},{"registrationId":"b3","attestation":{"type":"none"},"allocationPolicy":"Static"}]}`, nil)
	var br enroll.BulkResult
	decodeOK(t, "bulk", r, &br)
	codes := map[string]int{}
	for _, e := range br.Errors {
		codes[e.RegistrationID] = e.ErrorCode
	}
	if len(br.Errors) != 2 || codes["b2-"] != enroll.CodeRegistrationID || codes["b3"] != enroll.CodeBadBody {
		t.Errorf("bulk errors %+v: want b2- %d and b3 %d", br.Errors, enroll.CodeRegistrationID, enroll.CodeBadBody)
	}
	var b1 enroll.Enrollment
	decodeOK(t, "GET b1", env.do("GET", "/enrollments/b1", nil, nil), &b1)
	if rp := b1.ReprovisionPolicy; rp == nil || !rp.UpdateHubAssignment || !rp.MigrateDeviceData {
		t.Errorf("bulk reprovisionPolicy {} stored as %+v, want both true", rp)
	}
}

// TestCredentialPolicyVersions: credentialPolicyName is stored and
// answered under api-version 2026-04-01; under 2021-10-01 it is neither
// answered nor set, and a write under it leaves the stored one as it was.
func TestCredentialPolicyVersions(t *testing.T) {
	env := newTestEnv(t, Options{})
	at := func(ver string) string { return "?api-version=" + ver }
	e := tpmEnrollment("dev-1")
	e.CredentialPolicyName = "ops-certs"
	var got enroll.Enrollment
	decodeOK(t, "PUT 2026", env.do("PUT", "/enrollments/dev-1"+at(enroll.APIVersion2026), e, nil), &got)
	if got.CredentialPolicyName != "ops-certs" {
		t.Fatalf("PUT under 2026-04-01 answered credentialPolicyName %q, want ops-certs", got.CredentialPolicyName)
	}
	r := env.do("GET", "/enrollments/dev-1"+at(enroll.APIVersion2021), nil, nil)
	if r.status != 200 || strings.Contains(string(r.body), "credentialPolicyName") {
		t.Errorf("GET under 2021-10-01 = %d %s, want no credentialPolicyName", r.status, r.body)
	}
	e.CredentialPolicyName = "other"
	e.DeviceID = "dev-1b"
	r = env.do("PUT", "/enrollments/dev-1"+at(enroll.APIVersion2021), e, nil)
	if r.status != 200 || strings.Contains(string(r.body), "credentialPolicyName") {
		t.Errorf("PUT under 2021-10-01 = %d %s, want no credentialPolicyName", r.status, r.body)
	}
	got = enroll.Enrollment{}
	decodeOK(t, "GET 2026", env.do("GET", "/enrollments/dev-1"+at(enroll.APIVersion2026), nil, nil), &got)
	if got.CredentialPolicyName != "ops-certs" || got.DeviceID != "dev-1b" {
		t.Errorf("after a PUT under 2021-10-01: credentialPolicyName %q, deviceId %q; want ops-certs kept and dev-1b", got.CredentialPolicyName, got.DeviceID)
	}
	e.CredentialPolicyName = ""
	got = enroll.Enrollment{}
	decodeOK(t, "PUT 2026 clear", env.do("PUT", "/enrollments/dev-1"+at(enroll.APIVersion2026), e, nil), &got)
	if got.CredentialPolicyName != "" {
		t.Errorf("PUT under 2026-04-01 without credentialPolicyName kept %q, want it cleared", got.CredentialPolicyName)
	}
}

// TestQueryForms: the emulator answers the query forms DPS clients send
// (the Node SDK's "*", the Azure CLI's "SELECT *", the C# and Java SDKs'
// SELECT * FROM enrollments) in any case, and a WHERE clause or another
// source as DPS does: with every record of the kind.
func TestQueryForms(t *testing.T) {
	env := newTestEnv(t, Options{})
	for _, id := range []string{"q-1", "q-2", "q-3"} {
		if r := env.do("PUT", "/enrollments/"+id, tpmEnrollment(id), nil); r.status != 200 {
			t.Fatalf("PUT %s: %d %s", id, r.status, r.body)
		}
	}
	for _, q := range []string{"*", "SELECT *", "select *", "SELECT * FROM enrollments", "  Select  *  From  ENROLLMENTS ",
		"SELECT * FROM enrollments WHERE registrationId = 'q-2'", "SELECT * FROM devices", ""} {
		var got []enroll.Enrollment
		decodeOK(t, "query "+q, env.do("POST", "/enrollments/query", enroll.QuerySpecification{Query: q}, nil), &got)
		if len(got) != 3 {
			t.Errorf("query %q answered %d enrollments, want all 3", q, len(got))
		}
	}
	env.do("POST", "/enrollments/query", `{"query": 7}`, nil).wantError(t, "a query that is no string", 400, enroll.CodeBadBody, "not valid")
	env.do("POST", "/enrollments/query", `{}`, nil).wantError(t, "no query", 400, enroll.CodeBadQuery, `no "query"`)
}

// symEnrollmentSpec is an individual symmetric-key enrollment.
func symEnrollmentSpec(id string, key []byte) enroll.Enrollment {
	return enroll.Enrollment{RegistrationID: id, Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey,
		SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(key)}}}
}

// specCSR is a CSR for cn as device.json wants it: base64 DER PKCS#10.
func specCSR(t *testing.T, cn string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// TestDeviceSpecConformance runs the device API's operations, under
// 2021-10-01 and 2026-04-01, through success and error answers, and
// checks each against that version's device.json as
// TestSpecConformance does the service API's: registrations through an
// individual symmetric-key enrollment and through a group, their polls
// and status lookups, a CSR (a chain issued under 2026-04-01, 400 under
// 2021-10-01), and the errors of another ID scope, a wrong key and a
// malformed operation ID. A TPM device's first answer, the 401
// challenge {"message", "authenticationKey", "keyName"}, is DPS's
// documented flow but not in device.json, and is left to the TPM tests.
func TestDeviceSpecConformance(t *testing.T) {
	for _, ver := range []string{enroll.APIVersion2021, enroll.APIVersion2026} {
		t.Run(ver, func(t *testing.T) {
			env := newTestEnv(t, Options{})
			s := &specRun{t: t, env: env, doc: loadSpec(t, "testdata/spec/device-"+ver+".json"), ver: ver, seen: map[string][]int{}}
			key := []byte("a device key of thirty-two bytes")
			groupKey := []byte("a group key, also thirty-two byt")
			if r := env.do("PUT", "/enrollments/dev-1", map[string]any{"registrationId": "dev-1", "attestation": map[string]any{"type": "symmetricKey",
				"symmetricKey": map[string]string{"primaryKey": base64.StdEncoding.EncodeToString(key)}}}, nil); r.status != 200 {
				t.Fatalf("PUT dev-1: %d %s", r.status, r.body)
			}
			if r := env.do("PUT", "/enrollmentGroups/line-1", map[string]any{"enrollmentGroupId": "line-1", "attestation": map[string]any{"type": "symmetricKey",
				"symmetricKey": map[string]string{"primaryKey": base64.StdEncoding.EncodeToString(groupKey)}}}, nil); r.status != 200 {
				t.Fatalf("PUT line-1: %d %s", r.status, r.body)
			}
			auth := func(id string, k []byte) header {
				return header{"Authorization": enroll.SASToken(DefaultIDScope+"/registrations/"+id, "registration", k, env.clock.Now().Add(time.Hour))}
			}
			base := "/" + DefaultIDScope + "/registrations/"
			for _, dev := range []struct {
				id  string
				key []byte
			}{{"dev-1", key}, {"member-1", derivedKey(groupKey, "member-1")}} {
				h := auth(dev.id, dev.key)
				r := s.want(202, "PUT", base+dev.id+"/register", map[string]string{"registrationId": dev.id}, h)
				var op operationStatus
				decodeOK(t, "register", response{status: 200, body: r.body}, &op)
				r = s.want(200, "GET", base+dev.id+"/operations/"+op.OperationID, nil, h)
				decodeOK(t, "poll", r, &op)
				if op.Status != statusAssigned || op.RegistrationState == nil || op.RegistrationState.AssignedHub == "" {
					t.Errorf("%s: poll answered %s, want assigned with a hub", dev.id, r.body)
				}
				s.want(200, "POST", base+dev.id, map[string]string{"registrationId": dev.id}, h)
				s.want(400, "GET", base+dev.id+"/operations/"+strings.Repeat("0", 8), nil, h) // not an operation ID the service issues
			}
			// A CSR: under 2026-04-01 a chain issued under the enrollment's
			// credential policy; under 2021-10-01, which has no csr, 400.
			e := symEnrollmentSpec("dev-csr", key)
			e.CredentialPolicyName = DefaultCredentialPolicy
			if r := env.do("PUT", "/enrollments/dev-csr?api-version="+enroll.APIVersion2026, e, nil); r.status != 200 {
				t.Fatalf("PUT dev-csr: %d %s", r.status, r.body)
			}
			csrBody := map[string]string{"registrationId": "dev-csr", "csr": specCSR(t, "dev-csr")}
			if ver == enroll.APIVersion2026 {
				r := s.want(202, "PUT", base+"dev-csr/register", csrBody, auth("dev-csr", key))
				var op operationStatus
				decodeOK(t, "register with a csr", response{status: 200, body: r.body}, &op)
				r = s.want(200, "GET", base+"dev-csr/operations/"+op.OperationID, nil, auth("dev-csr", key))
				var res struct {
					RegistrationState struct {
						IssuedCertificateChain []string `json:"issuedCertificateChain"`
					} `json:"registrationState"`
				}
				decodeOK(t, "poll with a csr", r, &res)
				if n := len(res.RegistrationState.IssuedCertificateChain); n < 2 {
					t.Errorf("registration with a csr: issuedCertificateChain of %d certificates, want leaf to root", n)
				}
			} else {
				s.want(400, "PUT", base+"dev-csr/register", csrBody, auth("dev-csr", key))
			}
			s.want(401, "PUT", base+"dev-1/register", map[string]string{"registrationId": "dev-1"}, auth("dev-1", groupKey))
			s.want(401, "POST", base+"dev-1", map[string]string{"registrationId": "dev-1"}, auth("dev-1", groupKey))
			s.want(404, "PUT", "/0ne0000OTHER/registrations/dev-1/register", map[string]string{"registrationId": "dev-1"}, auth("dev-1", key)) // another ID scope

			for _, ops := range s.doc.Paths {
				for _, op := range ops {
					st := s.seen[op.OperationID]
					if !slices.ContainsFunc(st, func(c int) bool { return c < 300 }) || !slices.ContainsFunc(st, func(c int) bool { return c >= 400 }) {
						t.Errorf("%s answered %v: want a success and an error checked", op.OperationID, st)
					}
				}
			}
			t.Logf("%d answers of %d operations checked against %s %s", s.n, len(s.seen), s.doc.Info.Title, ver)
		})
	}
}
