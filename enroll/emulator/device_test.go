package emulator

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"zerotouch/enroll"
	"zerotouch/enroll/device"
)

const scope = DefaultIDScope

// deviceToken is a device SAS token over sr exactly as given, signed
// with key; skn is left out when keyName is empty.
func deviceToken(sr, keyName string, key []byte, expiry time.Time) string {
	se := strconv.FormatInt(expiry.Unix(), 10)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sr + "\n" + se))
	s := "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(base64.StdEncoding.EncodeToString(m.Sum(nil))) + "&se=" + se
	if keyName != "" {
		s += "&skn=" + keyName
	}
	return s
}

// encodedToken is a device token as the C SDK makes it: sr URL-encoded.
func (env *testEnv) encodedToken(regID string, key []byte) string {
	return deviceToken(url.QueryEscape(scope+"/registrations/"+regID), "registration", key, env.clock.Now().Add(time.Hour))
}

// device sends a device API request: path is under /{scope}/registrations/
// and gets ?api-version=2021-06-01 unless it has a query; auth "" sends
// no Authorization.
func (env *testEnv) device(method, path string, body any, auth string) response {
	env.t.Helper()
	if !strings.Contains(path, "?") {
		path += "?api-version=2021-06-01"
	}
	h := header{"Authorization": auth}
	r := env.do(method, "/"+scope+"/registrations/"+path, body, h)
	return r
}

// registerBody is a register request's body.
func registerBody(regID string) map[string]any { return map[string]any{"registrationId": regID} }

// registerAndPoll registers regID with auth and polls its operation once;
// it returns the final answer.
func (env *testEnv) registerAndPoll(regID string, body any, auth string) operationStatus {
	env.t.Helper()
	r := env.device("PUT", regID+"/register", body, auth)
	var st operationStatus
	if r.status != http.StatusAccepted {
		env.t.Fatalf("register %s: %d %s", regID, r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &st); err != nil || st.Status != statusAssigning || parseOperationID(st.OperationID) != nil {
		env.t.Fatalf("register %s: answer %s (%v)", regID, r.body, err)
	}
	if ra := r.header.Get("Retry-After"); ra == "" {
		env.t.Errorf("register %s: 202 without Retry-After", regID)
	}
	if loc := r.header.Get("Location"); !strings.Contains(loc, "/operations/"+st.OperationID) {
		env.t.Errorf("register %s: Location %q does not point at the operation", regID, loc)
	}
	p := env.device("GET", regID+"/operations/"+st.OperationID, nil, auth)
	var final operationStatus
	if p.status != http.StatusOK || json.Unmarshal(p.body, &final) != nil {
		env.t.Fatalf("poll %s: %d %s", regID, p.status, p.body)
	}
	return final
}

func symEnrollment(id string, key []byte) enroll.Enrollment {
	return enroll.Enrollment{RegistrationID: id, Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey,
		SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(key)}}}
}

func TestDeviceSAS(t *testing.T) {
	env := newTestEnv(t, Options{})
	key := []byte("device key of sas-1")
	env.do("PUT", "/enrollments/sas-1", symEnrollment("sas-1", key), nil)
	groupKey := []byte("group key")
	env.do("PUT", "/enrollmentGroups/sas-group", enroll.EnrollmentGroup{EnrollmentGroupID: "sas-group",
		Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(groupKey)}}}, nil)
	derived := device.DeriveKey(groupKey, "sas-2")
	now := env.clock.Now()
	hour := now.Add(time.Hour)
	raw := scope + "/registrations/sas-1"
	tests := []struct {
		name  string
		regID string
		auth  string
		words string // the 401 says; "" for accepted
	}{
		{"C: sr URL-encoded", "sas-1", deviceToken(url.QueryEscape(raw), "registration", key, hour), ""},
		{"Node: sr not encoded", "sas-1", deviceToken(raw, "registration", key, hour), ""},
		{"Rust: sr lower-cased and encoded", "sas-1", deviceToken(strings.ToLower(url.QueryEscape(raw)), "registration", key, hour), ""},
		{"Python: no skn", "sas-1", deviceToken(url.QueryEscape(raw), "", key, hour), ""},
		{"skn in capitals", "sas-1", deviceToken(raw, "Registration", key, hour), ""},
		{"expired within the skew", "sas-1", deviceToken(raw, "registration", key, now.Add(-4*time.Minute)), ""},
		{"group, derived key, encoded", "sas-2", deviceToken(url.QueryEscape(scope+"/registrations/sas-2"), "registration", derived, hour), ""},
		{"group, derived key, not encoded", "sas-2", deviceToken(scope+"/registrations/sas-2", "registration", derived, hour), ""},
		{"forged", "sas-1", deviceToken(raw, "registration", []byte("forged"), hour), "signature"},
		{"expired", "sas-1", deviceToken(raw, "registration", key, now.Add(-6*time.Minute)), "expired"},
		{"another device's resource", "sas-1", deviceToken(scope+"/registrations/sas-9", "registration", key, hour), "signed for"},
		{"another policy", "sas-1", deviceToken(raw, "provisioningserviceowner", key, hour), "registration"},
		{"malformed", "sas-1", "SharedAccessSignature sr=x", "malformed"},
		{"no token", "sas-1", "", "Authorization header is missing"},
		{"group, the group key itself", "sas-2", deviceToken(scope+"/registrations/sas-2", "registration", groupKey, hour), "any symmetric-key enrollment group"},
		{"group, expired", "sas-2", deviceToken(scope+"/registrations/sas-2", "registration", derived, now.Add(-time.Hour)), "expired"},
	}
	for _, tt := range tests {
		before := env.e.Stats()
		r := env.device("PUT", tt.regID+"/register", registerBody(tt.regID), tt.auth)
		if tt.words == "" {
			if r.status != http.StatusAccepted {
				t.Errorf("%s: %d %s, want 202", tt.name, r.status, r.body)
			}
			continue
		}
		r.wantError(t, tt.name, http.StatusUnauthorized, enroll.CodeUnauthorized, tt.words)
		if after := env.e.Stats(); after.Unauthorized != before.Unauthorized+1 || after.Registrations != before.Registrations {
			t.Errorf("%s: stats went from %+v to %+v; want one more 401 and no registration", tt.name, before, after)
		}
	}
}

func TestDeviceRequests(t *testing.T) {
	env := newTestEnv(t, Options{})
	key := []byte("key")
	env.do("PUT", "/enrollments/req-1", symEnrollment("req-1", key), nil)
	auth := env.encodedToken("req-1", key)
	final := env.registerAndPoll("req-1", registerBody("req-1"), auth)
	opPath := "req-1/operations/" + final.OperationID

	tests := []struct {
		name         string
		method, path string
		body         any
		auth         string
		status, code int
		msg          string
	}{
		{"another ID scope", "PUT", "/0ne00AAAAAA/registrations/req-1/register", registerBody("req-1"), auth, 404, enroll.CodeNotFound, "ID scope"},
		{"unknown device path", "GET", "/" + scope + "/registrations/req-1/twin", nil, auth, 404, enroll.CodeNotFound, "device API"},
		{"empty registration ID", "PUT", "/" + scope + "/registrations//register", registerBody("req-1"), auth, 404, enroll.CodeNotFound, "empty"},
		{"GET register", "GET", "req-1/register", nil, auth, 405, enroll.CodeMethodNotAllowed, "PUT"},
		{"PUT operation", "PUT", opPath, nil, auth, 405, enroll.CodeMethodNotAllowed, "GET"},
		{"no api-version", "PUT", "req-1/register?x=1", registerBody("req-1"), auth, 400, enroll.CodeAPIVersion, "2019-03-31"},
		{"bad registration ID", "PUT", "bad%20id/register", registerBody("bad id"), auth, 400, enroll.CodeRegistrationID, "character"},
		{"bad operation ID", "GET", "req-1/operations/not-an-op", nil, auth, 400, enroll.CodeBadRequest, "operation ID"},
		{"unknown operation", "GET", "req-1/operations/" + newOperationID(), nil, auth, 404, enroll.CodeNotFound, "operation"},
		{"empty body", "PUT", "req-1/register", nil, auth, 400, enroll.CodeBadBody, "empty"},
		{"not JSON", "PUT", "req-1/register", `{"registrationId":`, auth, 400, enroll.CodeBadBody, "not valid"},
		{"array", "PUT", "req-1/register", `["req-1"]`, auth, 400, enroll.CodeBadBody, "JSON object"},
		{"other registrationId", "PUT", "req-1/register", registerBody("req-2"), auth, 400, enroll.CodeRegistrationID, "req-2"},
		{"EK not base64", "PUT", "req-1/register", `{"registrationId":"req-1","tpm":{"endorsementKey":"!!"}}`, auth, 400, enroll.CodeBadBody, "endorsementKey"},
		{"EK missing", "PUT", "req-1/register", `{"registrationId":"req-1","tpm":{"storageRootKey":"AAAA"}}`, auth, 400, enroll.CodeBadBody, "endorsementKey"},
		{"text body", "PUT", "req-1/register", "registrationId=req-1", auth, 415, enroll.CodeUnsupportedType, "application/json"},
		{"unknown device", "PUT", "nobody/register", registerBody("nobody"), "", 404, enroll.CodeNotFound, "not enrolled"},
		{"status of an unknown device", "POST", "nobody", nil, "", 404, enroll.CodeNotFound, "not enrolled"},
		{"other registrationId in a status lookup", "POST", "req-1", registerBody("req-2"), auth, 400, enroll.CodeRegistrationID, "req-2"},
		{"csr in a status lookup", "POST", "req-1?api-version=2026-04-01", `{"registrationId":"req-1","csr":"MIIB"}`, auth, 400, enroll.CodeBadBody, "status lookup"},
		{"csr under 2021-10-01", "PUT", "req-1/register?api-version=2021-10-01", `{"registrationId":"req-1","csr":"MIIB"}`, auth, 400, enroll.CodeBadBody, "api-version 2021-10-01"},
		{"csr under 2021-06-01", "PUT", "req-1/register", `{"registrationId":"req-1","csr":"MIIB"}`, auth, 400, enroll.CodeBadBody, "api-version 2021-06-01"},
	}
	for _, tt := range tests {
		var r response
		if strings.HasPrefix(tt.path, "/") {
			p := tt.path
			if !strings.Contains(p, "?") {
				p += "?api-version=2021-06-01"
			}
			r = env.do(tt.method, p, tt.body, header{"Authorization": tt.auth})
		} else {
			h := header{"Authorization": tt.auth}
			if tt.name == "text body" {
				h["Content-Type"] = "text/plain"
			}
			p := tt.path
			if !strings.Contains(p, "?") {
				p += "?api-version=2021-06-01"
			}
			r = env.do(tt.method, "/"+scope+"/registrations/"+p, tt.body, h)
		}
		r.wantError(t, tt.name, tt.status, tt.code, tt.msg)
		if tt.status == 405 && r.header.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", tt.name)
		}
	}

	// Every api-version the device SDKs send is served.
	for _, v := range []string{"2019-03-31", "2021-06-01", "2021-10-01"} {
		if r := env.device("POST", "req-1?api-version="+v, nil, auth); r.status != http.StatusOK {
			t.Errorf("status lookup with api-version %s: %d %s", v, r.status, r.body)
		}
	}
	// The status lookup answers the DeviceRegistrationResult.
	var res registrationResult
	decodeOK(t, "status lookup", env.device("POST", "req-1", `{}`, auth), &res)
	if res.Status != statusAssigned || res.AssignedHub != DefaultIoTHub || res.ETag != final.RegistrationState.ETag {
		t.Errorf("status lookup = %+v, want the registration %+v", res, final.RegistrationState)
	}
	// Paths are matched case-insensitively and with a trailing slash; the
	// ID scope too.
	if r := env.do("POST", "/"+strings.ToLower(scope)+"/REGISTRATIONS/req-1/?api-version=2021-06-01", nil, header{"Authorization": auth}); r.status != http.StatusOK {
		t.Errorf("status lookup on a lower-case scope with a trailing slash: %d %s", r.status, r.body)
	}
	// An older operation is gone once the device registers again.
	env.registerAndPoll("req-1", registerBody("REQ-1"), auth)
	env.device("GET", opPath, nil, auth).wantError(t, "superseded operation", 404, enroll.CodeNotFound, "operation")
	// A register request needs no registrationId (device.json requires
	// none): the path names the device.
	if got := env.registerAndPoll("req-1", `{}`, auth); got.Status != statusAssigned {
		t.Errorf("register with {}: %+v, want assigned", got)
	}
}

func TestDeviceAnswers(t *testing.T) {
	env := newTestEnv(t, Options{AssignDelay: 3 * time.Second, IoTHubs: []string{"hub-1.azure-devices.net"}})
	key := []byte("answers key")
	en := symEnrollment("ans-1", key)
	en.DeviceID = "Device-One"
	env.do("PUT", "/enrollments/ans-1", en, nil)
	auth := env.encodedToken("ans-1", key)
	r := env.device("PUT", "ans-1/register", registerBody("ans-1"), auth)
	var acc operationStatus
	decodeOK(t, "register", response{status: 200, body: r.body}, &acc)
	if r.status != http.StatusAccepted || r.header.Get("Retry-After") != "3" {
		t.Fatalf("register: %d, Retry-After %q; want 202 and 3", r.status, r.header.Get("Retry-After"))
	}
	// Assigning until AssignDelay has passed, with the time left.
	env.clock.Advance(1500 * time.Millisecond)
	p := env.device("GET", "ans-1/operations/"+acc.OperationID, nil, auth)
	if p.status != http.StatusAccepted || p.header.Get("Retry-After") != "2" || !strings.Contains(string(p.body), `"status":"assigning"`) {
		t.Errorf("poll before the assignment: %d %s, Retry-After %q; want 202 assigning, 2", p.status, p.body, p.header.Get("Retry-After"))
	}
	var st enroll.RegistrationState
	decodeOK(t, "registration while assigning", env.do("GET", "/registrations/ans-1", nil, nil), &st)
	if st.Status != statusAssigning || st.AssignedHub != "" {
		t.Errorf("registration while assigning: %+v", st)
	}
	env.clock.Advance(1500 * time.Millisecond)
	p = env.device("GET", "ans-1/operations/"+acc.OperationID, nil, auth)
	var final map[string]any
	decodeOK(t, "poll", p, &final)
	created := env.clock.Now().Add(-3 * time.Second).UTC().Format(time.RFC3339Nano)
	want := map[string]any{
		"operationId": acc.OperationID,
		"status":      "assigned",
		"registrationState": map[string]any{
			"registrationId":         "ans-1",
			"createdDateTimeUtc":     created,
			"assignedHub":            "hub-1.azure-devices.net",
			"deviceId":               "Device-One",
			"status":                 "assigned",
			"substatus":              "initialAssignment",
			"lastUpdatedDateTimeUtc": env.clock.Now().UTC().Format(time.RFC3339Nano),
			"etag":                   final["registrationState"].(map[string]any)["etag"],
		},
	}
	if d := cmp.Diff(want, final); d != "" {
		t.Errorf("final answer (-want +got):\n%s", d)
	}
	etag := final["registrationState"].(map[string]any)["etag"].(string)
	if b, err := base64.StdEncoding.DecodeString(etag); err != nil || !strings.HasPrefix(string(b), `"`) {
		t.Errorf("etag %q is not base64 of a quoted ID, as DPS's", etag)
	}

	// The service API's view, and the enrollment's.
	decodeOK(t, "registration", env.do("GET", "/registrations/ANS-1", nil, nil), &st)
	if st.Status != statusAssigned || st.DeviceID != "Device-One" || st.ETag != etag {
		t.Errorf("registration state %+v", st)
	}
	var got enroll.Enrollment
	decodeOK(t, "enrollment", env.do("GET", "/enrollments/ans-1", nil, nil), &got)
	if d := cmp.Diff(&st, got.RegistrationState); d != "" {
		t.Errorf("enrollment's registrationState (-registration +enrollment):\n%s", d)
	}
	var page []enroll.Enrollment
	decodeOK(t, "query", env.do("POST", "/enrollments/query", enroll.QuerySpecification{Query: "SELECT * FROM enrollments"}, nil), &page)
	if len(page) != 1 || page[0].RegistrationState != nil {
		t.Errorf("query: %+v; DPS's enrollment queries carry no registrationState", page)
	}
	// An update of the enrollment keeps its writes apart from the
	// registration.
	if n := env.writes("ans-1"); n != 1 {
		t.Errorf("Writes(ans-1) = %d after registering, want 1", n)
	}
	// DELETE honours If-Match.
	env.do("DELETE", "/registrations/ans-1", nil, header{"If-Match": `"stale"`}).wantError(t, "DELETE stale etag", 412, enroll.CodePrecondition)
	if r := env.do("DELETE", "/registrations/ans-1", nil, header{"If-Match": etag}); r.status != http.StatusNoContent {
		t.Errorf("DELETE with the etag: %d %s", r.status, r.body)
	}
}

func TestGroupRegistrationQuery(t *testing.T) {
	env := newTestEnv(t, Options{})
	groupKey := []byte("query group")
	env.do("PUT", "/enrollmentGroups/qg", enroll.EnrollmentGroup{EnrollmentGroupID: "qg",
		Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(groupKey)}}}, nil)
	for _, id := range ids("qg-dev", 5) {
		final := env.registerAndPoll(id, registerBody(id), env.encodedToken(id, device.DeriveKey(groupKey, id)))
		if final.RegistrationState.SymmetricKey == nil || final.RegistrationState.SymmetricKey.EnrollmentGroupID != "qg" {
			t.Errorf("%s: registrationState %+v, want symmetricKey.enrollmentGroupId qg", id, final.RegistrationState)
		}
	}
	got, pages := queryAll(t, env, "/registrations/qg/query", "enrollments", 2, "registrationId", nil)
	if d := cmp.Diff(ids("qg-dev", 5), got); d != "" || pages != 3 {
		t.Errorf("registration query: %d pages (-want +got):\n%s", pages, d)
	}
	env.do("POST", "/registrations/qg/query", nil, header{"x-ms-continuation": formatContinuation(tagEnrollments, 1)}).
		wantError(t, "enrollment token on registrations", 400, enroll.CodeBadQuery, "another kind")
}

// fakeSealer stands in for dpstpm.Challenge: the "blob" is the key
// after a marker and the EK and SRK, so that tests can read the key back
// and see what it was sealed to.
func fakeSealer(rand io.Reader, ek, srk, key []byte) ([]byte, error) {
	if len(ek) == 0 || len(srk) == 0 {
		return nil, errors.New("no EK or SRK")
	}
	if bytes.Equal(srk, []byte("bad srk")) {
		return nil, errors.New("the SRK is not a storage key")
	}
	return append([]byte("sealed:"+base64.StdEncoding.EncodeToString(ek)+":"+base64.StdEncoding.EncodeToString(srk)+":"), key...), nil
}

func unseal(t *testing.T, blobB64 string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(blobB64)
	if err != nil {
		t.Fatalf("blob %q is not base64", blobB64)
	}
	i := len(b) - tpmKeySize
	if !bytes.HasPrefix(b, []byte("sealed:")) || i < 1 || b[i-1] != ':' {
		t.Fatalf("blob %q was not made by fakeSealer with a %d-byte key", b, tpmKeySize)
	}
	return b[i:]
}

func TestTPMFlow(t *testing.T) {
	env := newTestEnv(t, Options{TPMChallenge: fakeSealer})
	ek, srk := []byte("the EK's TPM2B"), []byte("the SRK's TPM2B")
	b64 := base64.StdEncoding.EncodeToString
	env.do("PUT", "/enrollments/tpm-1", enroll.Enrollment{RegistrationID: "tpm-1", Attestation: enroll.Attestation{
		Type: enroll.AttestationTPM, TPM: &enroll.TPMAttestation{EndorsementKey: b64(ek)}}}, nil)
	body := map[string]any{"registrationId": "tpm-1", "tpm": map[string]string{"endorsementKey": b64(ek), "storageRootKey": b64(srk)}}

	// The challenge: 401 with the key sealed to the EK and SRK sent.
	r := env.device("PUT", "tpm-1/register", body, "")
	var ch tpmChallengeBody
	if r.status != http.StatusUnauthorized || json.Unmarshal(r.body, &ch) != nil || ch.KeyName != "registration" || ch.Message == "" {
		t.Fatalf("first PUT: %d %s; want 401 with authenticationKey, keyName registration, message", r.status, r.body)
	}
	blob, _ := base64.StdEncoding.DecodeString(ch.AuthenticationKey)
	if !bytes.HasPrefix(blob, []byte("sealed:"+b64(ek)+":"+b64(srk)+":")) {
		t.Errorf("challenge sealed to %q, want the EK and SRK sent", blob)
	}
	key := unseal(t, ch.AuthenticationKey)

	// The key survives a restart.
	env.ts.Close()
	env.e.Close()
	env = newTestEnv(t, Options{DB: env.dbPath, TPMChallenge: fakeSealer, Now: env.clock.Now})
	auth := env.encodedToken("tpm-1", key)
	final := env.registerAndPoll("tpm-1", body, auth)
	if final.Status != statusAssigned || final.RegistrationState.TPM == nil {
		t.Fatalf("TPM registration: %+v", final)
	}
	// The device key is the challenge's, sealed again: what the device
	// signs with after registering (a status lookup) verifies.
	if deviceKey := unseal(t, final.RegistrationState.TPM.AuthenticationKey); !bytes.Equal(deviceKey, key) {
		t.Errorf("the device key is not the challenge's key")
	}
	if r := env.device("POST", "tpm-1", `{"registrationId":"tpm-1"}`, auth); r.status != http.StatusOK || !strings.Contains(string(r.body), `"assigned"`) {
		t.Errorf("status lookup signed with the device key: %d %s", r.status, r.body)
	}
	// A second PUT without the EK (as some SDKs send) is taken too.
	if r := env.device("PUT", "tpm-1/register", registerBody("tpm-1"), auth); r.status != http.StatusAccepted {
		t.Errorf("PUT with the token and no tpm: %d %s", r.status, r.body)
	}

	tests := []struct {
		name   string
		body   any
		auth   string
		status int
		words  string
	}{
		{"another EK", map[string]any{"registrationId": "tpm-1", "tpm": map[string]string{"endorsementKey": b64([]byte("another EK")), "storageRootKey": b64(srk)}}, "", 401, "endorsement key"},
		{"token signed with another key", body, env.encodedToken("tpm-1", []byte("not the challenge's key")), 401, "challenge"},
		{"no SRK anywhere", map[string]any{"registrationId": "tpm-1", "tpm": map[string]string{"endorsementKey": b64(ek)}}, "", 400, "storageRootKey"},
		{"an SRK that cannot be sealed to", map[string]any{"registrationId": "tpm-1", "tpm": map[string]string{"endorsementKey": b64(ek), "storageRootKey": b64([]byte("bad srk"))}}, "", 400, "seal"},
		{"no EK and no token", registerBody("tpm-1"), "", 401, "TPM device"},
	}
	for _, tt := range tests {
		before := env.e.Stats()
		r := env.device("PUT", "tpm-1/register", tt.body, tt.auth)
		code := enroll.CodeUnauthorized
		if tt.status == 400 {
			code = enroll.CodeBadBody
		}
		r.wantError(t, tt.name, tt.status, code, tt.words)
		if env.e.Stats().Challenges != before.Challenges {
			t.Errorf("%s: a challenge was issued", tt.name)
		}
	}
	// A registration whose challenge was never issued.
	env.do("PUT", "/enrollments/tpm-2", enroll.Enrollment{RegistrationID: "tpm-2", Attestation: enroll.Attestation{
		Type: enroll.AttestationTPM, TPM: &enroll.TPMAttestation{EndorsementKey: b64(ek), StorageRootKey: b64(srk)}}}, nil)
	env.device("PUT", "tpm-2/register", registerBody("tpm-2"), env.encodedToken("tpm-2", key)).wantError(t, "no challenge yet", 401, enroll.CodeUnauthorized, "no TPM challenge")
	// The enrolled SRK serves when the device sends none.
	r = env.device("PUT", "tpm-2/register", map[string]any{"registrationId": "tpm-2", "tpm": map[string]string{"endorsementKey": b64(ek)}}, "")
	if r.status != http.StatusUnauthorized || !strings.Contains(string(r.body), "authenticationKey") {
		t.Errorf("challenge with the enrolled SRK: %d %s", r.status, r.body)
	}
}

func TestDeviceQuota(t *testing.T) {
	env := newTestEnv(t, Options{RegistrationQuota: 60, RegistrationBurst: 2, Quota: 1})
	key := []byte("quota key")
	for _, id := range ids("rq", 3) {
		env.do("PUT", "/enrollments/"+id, symEnrollment(id, key), nil)
		env.clock.Advance(time.Minute) // the service quota is 1 a minute
	}
	put := func(id string) response {
		return env.device("PUT", id+"/register", registerBody(id), env.encodedToken(id, key))
	}
	for _, id := range ids("rq", 2) {
		if r := put(id); r.status != http.StatusAccepted {
			t.Fatalf("register %s within the burst: %d %s", id, r.status, r.body)
		}
	}
	r := put("rq-002")
	r.wantError(t, "over the registration quota", 429, enroll.CodeThrottled, "registrations quota")
	if r.header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q, want 1", r.header.Get("Retry-After"))
	}
	if n, _ := env.e.Registrations(context.Background(), "rq-002"); n != 0 {
		t.Errorf("a throttled register was carried out")
	}
	// The service API's quota is apart: registrations did not use it.
	if r := env.do("GET", "/enrollments/rq-000", nil, nil); r.status != http.StatusOK {
		t.Errorf("service API after device registrations: %d %s", r.status, r.body)
	}
	env.clock.Advance(time.Second)
	if r := put("rq-002"); r.status != http.StatusAccepted {
		t.Errorf("register after a second: %d %s", r.status, r.body)
	}

	// Polls: 5 per 10 s per device, not charged to the registrations.
	var acc operationStatus
	json.Unmarshal(put2(t, env, "rq-000", key).body, &acc)
	poll := func(id, op string) response {
		return env.device("GET", id+"/operations/"+op, nil, env.encodedToken(id, key))
	}
	for i := range DefaultPollQuota {
		if r := poll("rq-000", acc.OperationID); r.status != http.StatusOK {
			t.Fatalf("poll %d: %d %s", i+1, r.status, r.body)
		}
	}
	r = poll("rq-000", acc.OperationID)
	r.wantError(t, "sixth poll in 10 s", 429, enroll.CodeThrottled, "5 polls")
	if r.header.Get("Retry-After") != "2" {
		t.Errorf("poll Retry-After %q, want 2 (one poll every 2 s)", r.header.Get("Retry-After"))
	}
	env.clock.Advance(2 * time.Second)
	if r := poll("rq-000", acc.OperationID); r.status != http.StatusOK {
		t.Errorf("poll after 2 s: %d %s", r.status, r.body)
	}
	st := env.e.Stats()
	if st.Registrations != 4 || st.Polls != DefaultPollQuota+1 || st.Throttled != 2 {
		t.Errorf("stats %+v: want 4 registrations, %d polls, 2 throttled", st, DefaultPollQuota+1)
	}

	// Lifted.
	env.e.SetRegistrationQuota(0, 0)
	for range 5 {
		if r := put("rq-001"); r.status != http.StatusAccepted {
			t.Fatalf("register without a quota: %d %s", r.status, r.body)
		}
	}
}

// put2 registers id once more after the bucket had a minute to refill.
func put2(t *testing.T, env *testEnv, id string, key []byte) response {
	t.Helper()
	env.clock.Advance(time.Minute)
	r := env.device("PUT", id+"/register", registerBody(id), env.encodedToken(id, key))
	if r.status != http.StatusAccepted {
		t.Fatalf("register %s: %d %s", id, r.status, r.body)
	}
	return r
}

func TestDeviceFaults(t *testing.T) {
	env := newTestEnv(t, Options{})
	key := []byte("fault key")
	env.do("PUT", "/enrollments/df-1", symEnrollment("df-1", key), nil)
	put := func() (response, error) {
		return env.send("PUT", "/"+scope+"/registrations/df-1/register?api-version=2021-06-01", registerBody("df-1"), header{"Authorization": env.encodedToken("df-1", key)})
	}
	env.e.SetFaults(Faults{ErrorRate: 1})
	r, err := put()
	if err != nil || (r.status != 500 && r.status != 503) {
		t.Fatalf("ErrorRate 1: %v %d", err, r.status)
	}
	r.errorBody(t)
	env.e.SetFaults(Faults{DropRate: 1})
	if _, err := put(); err == nil {
		t.Errorf("DropRate 1: answered")
	}
	if n, _ := env.e.Registrations(context.Background(), "df-1"); n != 0 {
		t.Errorf("faulted registrations were carried out: %d", n)
	}
	env.e.SetFaults(Faults{DropAfterRate: 1})
	if _, err := put(); err == nil {
		t.Errorf("DropAfterRate 1: answered")
	}
	if n, _ := env.e.Registrations(context.Background(), "df-1"); n != 1 {
		t.Errorf("DropAfterRate 1: %d registrations, want 1 carried out before the cut", n)
	}
	// A 401 is answered before faults are drawn.
	env.e.SetFaults(Faults{ErrorRate: 1})
	env.device("PUT", "df-1/register", registerBody("df-1"), "").wantError(t, "no token under faults", 401, enroll.CodeUnauthorized)
}

func TestAllocate(t *testing.T) {
	e := &Emulator{hubs: []string{"a.azure-devices.net", "b.azure-devices.net", "c.azure-devices.net"}}
	assigned := func(hub string) *registrationResult {
		return &registrationResult{Status: statusAssigned, AssignedHub: hub}
	}
	noUpdate := &enroll.ReprovisionPolicy{UpdateHubAssignment: false}
	reset := &enroll.ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: false}
	hashed := e.hubs[hashIndex("dev-1", 3)]
	tests := []struct {
		name string
		p    policy
		prev *registrationResult
		want allocation
	}{
		{"hashed by default", policy{}, nil, allocation{hub: hashed, deviceID: "dev-1", status: statusAssigned, substatus: substatusInitial}},
		{"hashed, case-insensitive ID", policy{allocation: "Hashed"}, nil, allocation{hub: hashed, deviceID: "dev-1", status: statusAssigned, substatus: substatusInitial}},
		{"enrollment's device ID", policy{deviceID: "boiler"}, nil, allocation{hub: hashed, deviceID: "boiler", status: statusAssigned, substatus: substatusInitial}},
		{"restricted to one", policy{iotHubs: []string{"C.azure-devices.net"}}, nil, allocation{hub: "c.azure-devices.net", deviceID: "dev-1", status: statusAssigned, substatus: substatusInitial}},
		{"geoLatency", policy{allocation: "geoLatency", iotHubs: []string{"c.azure-devices.net", "b.azure-devices.net"}}, nil, allocation{hub: "b.azure-devices.net", deviceID: "dev-1", status: statusAssigned, substatus: substatusInitial}},
		{"static", policy{allocation: "static", iotHubs: []string{"b.azure-devices.net"}}, nil, allocation{hub: "b.azure-devices.net", deviceID: "dev-1", status: statusAssigned, substatus: substatusInitial}},
		{"static by iotHubHostName", policy{allocation: "static", iotHubHostName: "c.azure-devices.net"}, nil, allocation{hub: "c.azure-devices.net", deviceID: "dev-1", status: statusAssigned, substatus: substatusInitial}},
		{"static unlinked", policy{allocation: "static", iotHubHostName: "z.azure-devices.net"}, nil, allocation{status: statusFailed, errorCode: codeNoHub}},
		{"static among three", policy{allocation: "static"}, nil, allocation{status: statusFailed, errorCode: codeNoHub}},
		{"custom", policy{allocation: "custom"}, nil, allocation{status: statusFailed, errorCode: enroll.CodeBadRequest}},
		{"disabled", policy{status: "disabled"}, assigned("a.azure-devices.net"), allocation{status: statusDisabled}},
		{"same hub again", policy{iotHubs: []string{"b.azure-devices.net"}}, assigned("b.azure-devices.net"), allocation{hub: "b.azure-devices.net", deviceID: "dev-1", status: statusAssigned, substatus: substatusReprovision}},
		{"moved, data migrated", policy{iotHubs: []string{"b.azure-devices.net"}}, assigned("a.azure-devices.net"), allocation{hub: "b.azure-devices.net", deviceID: "dev-1", status: statusAssigned, substatus: substatusDataMigrated}},
		{"moved, data reset", policy{iotHubs: []string{"b.azure-devices.net"}, reprovision: reset}, assigned("a.azure-devices.net"), allocation{hub: "b.azure-devices.net", deviceID: "dev-1", status: statusAssigned, substatus: substatusDataReset}},
		{"kept by policy", policy{iotHubs: []string{"b.azure-devices.net"}, reprovision: noUpdate}, assigned("a.azure-devices.net"), allocation{hub: "a.azure-devices.net", deviceID: "dev-1", status: statusAssigned, substatus: substatusReprovision}},
		{"after a failure", policy{}, &registrationResult{Status: statusFailed}, allocation{hub: hashed, deviceID: "dev-1", status: statusAssigned, substatus: substatusInitial}},
	}
	for _, tt := range tests {
		got := e.allocate(tt.p, "dev-1", tt.prev)
		got.errorMessage = ""
		if got != tt.want {
			t.Errorf("allocate(%s) = %+v, want %+v", tt.name, got, tt.want)
		}
	}
	// The hash spreads: over 300 IDs each hub gets a fair share.
	count := map[int]int{}
	for i := range 300 {
		count[hashIndex(fmt.Sprintf("Board-%04d", i), 3)]++
	}
	for i := range 3 {
		if count[i] < 70 || count[i] > 130 {
			t.Errorf("hub %d got %d of 300 devices", i, count[i])
		}
	}
}

func TestOperationID(t *testing.T) {
	for range 100 {
		if id := newOperationID(); parseOperationID(id) != nil {
			t.Fatalf("parseOperationID(%q) = %v", id, parseOperationID(id))
		}
	}
	for _, bad := range []string{"", "5", "5.316aac5bdc130deb", "5.316aac5bdc130deb.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550.x",
		"55555.316aac5bdc130deb.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550", "5.316AAC5BDC130DEB.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550",
		"5.316aac5bdc130de.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550", "5.316aac5bdc130deb.b1e02da8c3a04ff2a1217ea7a6b7f550xxxx",
		"x.316aac5bdc130deb.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550", "5.316aac5bdc130deb.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f55g"} {
		if err := parseOperationID(bad); !errors.Is(err, errOperationID) {
			t.Errorf("parseOperationID(%q) = %v, want errOperationID", bad, err)
		}
	}
}

func FuzzParseOperationID(f *testing.F) {
	f.Add(newOperationID())
	f.Add("5.316aac5bdc130deb.b1e02da8-c3a0-4ff2-a121-7ea7a6b7f550")
	f.Add("")
	f.Add("1.0000000000000000.00000000-0000-0000-0000-000000000000-")
	f.Fuzz(func(t *testing.T, s string) {
		err := parseOperationID(s)
		if err != nil {
			if !errors.Is(err, errOperationID) {
				t.Fatalf("parseOperationID(%q) = %v, not errOperationID", s, err)
			}
			return
		}
		// What is accepted is safe in a path and a SQL argument, and in
		// the form issued.
		if len(s) < 1+1+16+1+36 || len(s) > 4+1+16+1+36 || strings.ContainsAny(s, "/?#% \x00") {
			t.Fatalf("parseOperationID(%q) accepted an ID of another form", s)
		}
	})
}

func FuzzParseDeviceSAS(f *testing.F) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	key := []byte("fuzz key")
	f.Add(deviceToken(url.QueryEscape(scope+"/registrations/dev-1"), "registration", key, now.Add(time.Hour)))
	f.Add(deviceToken(scope+"/registrations/dev-1", "", key, now.Add(time.Hour)))
	f.Add("SharedAccessSignature sr=a&sig=b&se=1&skn=x")
	f.Add("SharedAccessSignature sr=%zz&sig=b&se=1")
	f.Add("")
	f.Fuzz(func(t *testing.T, h string) {
		sas, err := parseDeviceSAS(h)
		if err != nil {
			if !errors.Is(err, enroll.ErrSASMalformed) && !errors.Is(err, errDeviceSAS) {
				t.Fatalf("parseDeviceSAS(%q) = %v, want ErrSASMalformed or errDeviceSAS", h, err)
			}
			return
		}
		if sas.RawResource == "" || sas.Signature == "" || sas.Expiry.IsZero() {
			t.Fatalf("parseDeviceSAS(%q) = %+v: a field is missing", h, sas)
		}
		if sas.KeyName != "" && !strings.EqualFold(sas.KeyName, "registration") {
			t.Fatalf("parseDeviceSAS(%q) took policy %q", h, sas.KeyName)
		}
		// A token is accepted only with the key it was signed with.
		err = sas.Verify([][]byte{key}, deviceAudience(scope, "dev-1"), now)
		if err == nil && h != deviceToken(sas.RawResource, sas.KeyName, key, sas.Expiry) {
			// Another spelling of a valid token (field order, encoding
			// of sig) is fine; its signature must still be the HMAC.
			m := hmac.New(sha256.New, key)
			m.Write([]byte(sas.RawResource + "\n" + strconv.FormatInt(sas.Expiry.Unix(), 10)))
			if sas.Signature != base64.StdEncoding.EncodeToString(m.Sum(nil)) {
				t.Fatalf("Verify accepted %q without the key's signature", h)
			}
		}
	})
}
