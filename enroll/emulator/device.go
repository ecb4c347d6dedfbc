package emulator

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"zerotouch/enroll"
	"zerotouch/internal/regid"
)

// deviceOp is an operation of the device API (device.json).
//
// The api-versions answer alike (2019-03-31, 2021-06-01, 2021-10-01:
// the same operations and bodies) except in certificate issuance, which
// 2025-07-01-preview and 2026-04-01 add: the register request's csr,
// answered with the outcome's issuedCertificateChain. Under an older
// api-version a csr is refused (400) and a poll's answer leaves the chain
// out; a status lookup never carries the chain and refuses a csr under
// every api-version (400), as device.json says.
type deviceOp int

const (
	opRegister  deviceOp = iota + 1 // PUT /{idScope}/registrations/{id}/register
	opOperation                     // GET /{idScope}/registrations/{id}/operations/{operationId}
	opStatus                        // POST /{idScope}/registrations/{id}
)

// deviceRoute is a device API request matched to its operation.
type deviceRoute struct {
	op          deviceOp
	scope       string
	regID       string
	operationID string
}

// serviceRoots are the first path segments of the service API, which win
// over the device API's ID scope.
var serviceRoots = []string{"enrollments", "enrollmentgroups", "registrations"}

// matchDevice reports whether escapedPath is one of the device API's,
// /{idScope}/registrations/{registrationId}[/register|/operations/{id}],
// matched case-insensitively with or without a trailing slash. A device
// path with another method is 405 (with Allow); an unknown path under
// /{idScope}/registrations is 404. Paths that are not the device API's
// are left to route.
func matchDevice(method, escapedPath string) (deviceRoute, bool, *apiError) {
	p := strings.TrimSuffix(strings.TrimPrefix(escapedPath, "/"), "/")
	segs := strings.Split(p, "/")
	if len(segs) < 3 || !strings.EqualFold(segs[1], "registrations") {
		return deviceRoute{}, false, nil
	}
	for _, root := range serviceRoots {
		if strings.EqualFold(segs[0], root) {
			return deviceRoute{}, false, nil
		}
	}
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil {
			return deviceRoute{}, false, nil // route answers 400
		}
		segs[i] = u
	}
	notFound := &apiError{status: http.StatusNotFound, code: enroll.CodeNotFound,
		msg: fmt.Sprintf("no such path %q in the DPS device API", escapedPath)}
	dr := deviceRoute{scope: segs[0], regID: segs[2]}
	var allow string
	switch {
	case len(segs) == 3:
		dr.op, allow = opStatus, http.MethodPost
	case len(segs) == 4 && strings.EqualFold(segs[3], "register"):
		dr.op, allow = opRegister, http.MethodPut
	case len(segs) == 5 && strings.EqualFold(segs[3], "operations"):
		dr.op, allow, dr.operationID = opOperation, http.MethodGet, segs[4]
	default:
		return deviceRoute{}, true, notFound
	}
	if dr.scope == "" || dr.regID == "" || (dr.op == opOperation && dr.operationID == "") {
		notFound.msg = fmt.Sprintf("path %q has an empty ID scope, registration ID or operation ID", escapedPath)
		return deviceRoute{}, true, notFound
	}
	if method != allow {
		return deviceRoute{}, true, &apiError{status: http.StatusMethodNotAllowed, code: enroll.CodeMethodNotAllowed,
			msg: fmt.Sprintf("%s is not allowed on %s; allowed: %s", method, escapedPath, allow), allow: allow}
	}
	return dr, true, nil
}

// deviceRegistration is the body of a register request, and of a status
// lookup (DeviceRegistration in device.json).
type deviceRegistration struct {
	RegistrationID string          `json:"registrationId"`
	TPM            *tpmAttestation `json:"tpm,omitempty"`
	CSR            *string         `json:"csr,omitempty"` // api-version 2025-07-01-preview on
	Payload        json.RawMessage `json:"payload,omitempty"`

	csr *x509.CertificateRequest // CSR, checked
}

// tpmAttestation is what a TPM device sends: its EK and SRK, base64
// TPM2B_PUBLIC.
type tpmAttestation struct {
	EndorsementKey string `json:"endorsementKey"`
	StorageRootKey string `json:"storageRootKey"`
}

// decodeRegistration reads the body of a register request (op
// opRegister) or of a status lookup: a JSON object (a lookup's may be
// empty) whose registrationId, when present, is the path's (compared
// case-insensitively; device.json requires none), whose TPM keys, if
// any, are base64, and whose csr, if any, comes in a register request of
// an api-version that has it and is one package ca would sign. A csr
// elsewhere is 400, as device.json says of the status lookup.
func decodeRegistration(b []byte, regID string, op deviceOp, apiVersion string) (*deviceRegistration, *apiError) {
	var reg deviceRegistration
	if op != opRegister && len(bytes.TrimSpace(b)) == 0 {
		return &reg, nil
	}
	if a := decode(b, &reg); a != nil {
		return nil, a
	}
	if reg.RegistrationID != "" && !strings.EqualFold(reg.RegistrationID, regID) {
		return nil, badRequest(enroll.CodeRegistrationID, "registrationId %q in the body is not %q, the ID in the path", reg.RegistrationID, regID)
	}
	if t := reg.TPM; t != nil {
		if t.EndorsementKey == "" {
			return nil, badRequest(enroll.CodeBadBody, "tpm.endorsementKey is missing")
		}
		for _, f := range []struct{ name, v string }{{"endorsementKey", t.EndorsementKey}, {"storageRootKey", t.StorageRootKey}} {
			if _, err := base64.StdEncoding.DecodeString(f.v); err != nil {
				return nil, badRequest(enroll.CodeBadBody, "tpm.%s is not base64", f.name)
			}
		}
	}
	if reg.CSR != nil {
		switch {
		case op != opRegister:
			return nil, badRequest(enroll.CodeBadBody, "csr is not allowed in a registration status lookup: send it in the register request (PUT .../register, api-version %s)", csrAPIVersion)
		case !enroll.SupportsCredentialPolicy(apiVersion):
			return nil, badRequest(enroll.CodeBadBody, "csr is not part of api-version %s: send api-version %s to have a certificate issued", apiVersion, csrAPIVersion)
		}
		csr, a := parseDeviceCSR(*reg.CSR, regID)
		if a != nil {
			return nil, a
		}
		reg.csr = csr
	}
	return &reg, nil
}

// prepareDevice checks a device API request up to the point where it is
// carried out: api-version (400), ID scope (404), IDs (400), attestation
// from the path, headers and client certificate (401, 404), and only
// then the body (400, 408, 413, 415), the TPM keys it carries (401, or
// the TPM challenge, a 401) and quota (429). A request whose credentials
// fail is answered before its body is read; the only body read before
// any credential is a TPM device's first register request, which brings
// the keys its challenge is sealed to. It returns what carries the
// request out.
func (e *Emulator) prepareDevice(w http.ResponseWriter, r *http.Request, dr deviceRoute) (func(http.ResponseWriter) *apiError, *apiError) {
	if a := checkAPIVersion(r); a != nil {
		return nil, a
	}
	if !strings.EqualFold(dr.scope, e.idScope) {
		return nil, &apiError{status: http.StatusNotFound, code: enroll.CodeNotFound,
			msg: fmt.Sprintf("ID scope %q is not this service's", dr.scope)}
	}
	if a := checkNewID(regid.Registration, dr.regID); a != nil {
		return nil, a
	}
	if dr.op == opOperation {
		if err := parseOperationID(dr.operationID); err != nil {
			return nil, badRequest(enroll.CodeBadRequest, "operation ID %q: %v", dr.operationID, err)
		}
	}
	att, a := e.attest(r.Context(), r, dr.regID, dr.op)
	if a != nil {
		return nil, e.countRefusal(a)
	}
	b, a := e.readBody(w, r, dr.op != opRegister)
	if a != nil {
		return nil, a
	}
	var reg *deviceRegistration
	if dr.op != opOperation {
		if reg, a = decodeRegistration(b, dr.regID, dr.op, r.URL.Query().Get("api-version")); a != nil {
			return nil, a
		}
	}
	var tpmReg *deviceRegistration
	if dr.op == opRegister {
		tpmReg = reg
	}
	if att, a = e.attestBody(r.Context(), dr.regID, att, tpmReg); a != nil {
		return nil, e.countRefusal(a)
	}
	var policyName string
	if reg != nil && reg.csr != nil {
		if policyName, a = att.credentialPolicy(dr.regID); a != nil {
			return nil, a
		}
	}

	now := e.now()
	e.mu.Lock()
	var ok bool
	var wait time.Duration
	var what string
	if dr.op == opOperation {
		ok, wait = e.takePoll(dr.regID, now)
		what = fmt.Sprintf("polling too often: at most %d polls per %v per device", e.pollQuota, pollWindow)
	} else {
		ok, wait = e.regBucket.take(now)
		what = "the device registrations quota is used up"
	}
	e.mu.Unlock()
	if !ok {
		e.throttled.Add(1)
		secs := max(1, int(math.Ceil(wait.Seconds())))
		return nil, &apiError{status: http.StatusTooManyRequests, code: enroll.CodeThrottled,
			msg: fmt.Sprintf("throttled: %s; retry after %d s", what, secs), retryAfter: secs}
	}
	switch dr.op {
	case opRegister:
		return func(w http.ResponseWriter) *apiError { return e.register(w, r, dr, att, reg.csr, policyName) }, nil
	case opOperation:
		e.polls.Add(1)
		return func(w http.ResponseWriter) *apiError { return e.poll(w, r, dr) }, nil
	}
	return func(w http.ResponseWriter) *apiError { return e.lookup(w, r, dr) }, nil
}

// countRefusal counts an attestation's answer a: a TPM challenge or a
// 401.
func (e *Emulator) countRefusal(a *apiError) *apiError {
	switch {
	case a.challenge:
		e.challenges.Add(1)
	case a.status == http.StatusUnauthorized:
		e.unauthorized.Add(1)
	}
	return a
}

// pollWindow is the span of the per-device poll limit ("Device polling
// operation: 5/10 sec/device", DPS quotas and limits).
const pollWindow = 10 * time.Second

// maxPollBuckets is how many devices' poll buckets are kept before the
// idle ones are dropped.
const maxPollBuckets = 4096

// takePoll charges one poll of registration regID at now. Guarded by
// e.mu.
func (e *Emulator) takePoll(regID string, now time.Time) (bool, time.Duration) {
	if e.pollQuota <= 0 {
		return true, 0
	}
	k := key(regID)
	b := e.pollBuckets[k]
	if b == nil {
		if len(e.pollBuckets) >= maxPollBuckets {
			for id, old := range e.pollBuckets {
				if now.Sub(old.last) >= pollWindow {
					delete(e.pollBuckets, id)
				}
			}
		}
		nb := newBucket(e.pollQuota*int(time.Minute/pollWindow), e.pollQuota)
		b = &nb
		e.pollBuckets[k] = b
	}
	return b.take(now)
}

// retryAfter is the Retry-After, in whole seconds and at least 1, for an
// assignment d away.
func retryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// register carries out an attested register request: the assignment is
// decided and stored now, the registration and its operation with it,
// and is answered from AssignDelay on; until then the operation is
// assigning. The answer is 202 with the operation ID, Retry-After and a
// Location to poll. A csr (nil when none was sent) is signed under the
// credential policy policyName; the chain is part of the operation's
// outcome when the device is assigned, and of nothing else: device.json
// leaves it out of the status lookup, and the service API has no place
// for it.
func (e *Emulator) register(w http.ResponseWriter, r *http.Request, dr deviceRoute, att *attestation, csr *x509.CertificateRequest, policyName string) *apiError {
	ctx := r.Context()
	now := e.now()
	ready := now.Add(e.assignDelay)
	opID := newOperationID()
	p := att.policy()

	// The device key a TPM device imports at the end, sealed to its EK
	// and SRK: the key of its challenge, which the device proved it
	// holds, so that the tokens it signs after registering (a status
	// lookup's) verify as its registration's did. Sealed before the
	// transaction, as it takes a while.
	var tpmBlob string
	if att.tpm != nil && p.status != "disabled" {
		if e.tpmChallenge == nil {
			return internalError("seal the TPM device key", errNoTPMChallenge)
		}
		blob, err := e.tpmChallenge(rand.Reader, att.tpm.ek, att.tpm.srk, att.tpm.key)
		if err != nil {
			return internalError("seal the TPM device key", err)
		}
		tpmBlob = base64.StdEncoding.EncodeToString(blob)
	}
	var issued []string
	if csr != nil && p.status != "disabled" {
		chain, err := e.issue(ctx, policyName, csr, dr.regID)
		if err != nil {
			return internalError("issue the certificate of "+dr.regID, err)
		}
		for _, c := range chain {
			issued = append(issued, base64.StdEncoding.EncodeToString(c.Raw))
		}
	}

	err := e.inTx(ctx, func(tx *sql.Tx) error {
		old, err := getRegistration(ctx, tx, dr.regID)
		if err != nil {
			return err
		}
		var prev *registrationResult
		created := now.UTC()
		if old != nil {
			if prev, err = old.result(now); err != nil {
				return err
			}
			created = old.created.UTC()
		}
		al := e.allocate(p, dr.regID, prev)
		readyUTC := ready.UTC()
		res := registrationResult{
			RegistrationID:         dr.regID,
			CreatedDateTimeUTC:     &created,
			AssignedHub:            al.hub,
			DeviceID:               al.deviceID,
			Status:                 al.status,
			Substatus:              al.substatus,
			ErrorCode:              al.errorCode,
			ErrorMessage:           al.errorMessage,
			LastUpdatedDateTimeUTC: &readyUTC,
			ETag:                   newRegistrationETag(),
		}
		att.fill(&res, tpmBlob)
		body, err := json.Marshal(&res)
		if err != nil {
			return fmt.Errorf("encode registration %s: %w", dr.regID, err)
		}
		row := &regRow{id: dr.regID, groupID: att.groupID(), body: body, etag: res.ETag, ready: ready, created: created, updated: now}
		if err := putRegistration(ctx, tx, old, row); err != nil {
			return err
		}
		outcome := issuedResult{registrationResult: &res}
		if res.Status == statusAssigned {
			outcome.IssuedCertificateChain = issued
		}
		opBody, err := json.Marshal(issuedOperation{OperationID: opID, Status: res.Status, RegistrationState: &outcome})
		if err != nil {
			return fmt.Errorf("encode operation %s: %w", opID, err)
		}
		return putOperation(ctx, tx, opID, dr.regID, opBody, ready, now)
	})
	if a := txError(err, "register "+dr.regID); a != nil {
		return a
	}
	e.registrations.Add(1)
	h := w.Header()
	h.Set("Retry-After", strconv.Itoa(retryAfter(e.assignDelay)))
	h.Set("Location", operationURL(r, dr.scope, dr.regID, opID))
	return writeJSON(w, http.StatusAccepted, operationStatus{OperationID: opID, Status: statusAssigning})
}

// operationURL is where the operation opID is polled, on the host the
// request came to.
func operationURL(r *http.Request, scope, regID, opID string) string {
	u := url.URL{Scheme: "https", Host: r.Host, Path: "/" + scope + "/registrations/" + regID + "/operations/" + opID}
	if r.TLS == nil {
		u.Scheme = "http"
	}
	u.RawQuery = url.Values{"api-version": {r.URL.Query().Get("api-version")}}.Encode()
	return u.String()
}

// poll answers an operation: 202 assigning (with Retry-After) until it
// is ready, then 200 with the registration's outcome; 404 for an
// operation that is not this registration's latest.
func (e *Emulator) poll(w http.ResponseWriter, r *http.Request, dr deviceRoute) *apiError {
	op, err := getOperation(r.Context(), e.db, dr.operationID)
	if err != nil {
		return internalError("read operation "+dr.operationID, err)
	}
	if op == nil || op.regID != key(dr.regID) {
		return &apiError{status: http.StatusNotFound, code: enroll.CodeNotFound,
			msg: fmt.Sprintf("operation %q of registration %q not found: register again", dr.operationID, dr.regID)}
	}
	if now := e.now(); now.Before(op.ready) {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter(op.ready.Sub(now))))
		return writeJSON(w, http.StatusAccepted, operationStatus{OperationID: dr.operationID, Status: statusAssigning})
	}
	body := op.body
	if !enroll.SupportsCredentialPolicy(r.URL.Query().Get("api-version")) {
		b, err := withoutIssuedChain(body)
		if err != nil {
			return internalError("read operation "+dr.operationID, err)
		}
		body = b
	}
	writeRaw(w, http.StatusOK, body)
	return nil
}

// issuedOperation is an operation's outcome as stored and answered: the
// RegistrationOperationStatus whose DeviceRegistrationResult carries the
// issued chain when there is one.
type issuedOperation struct {
	OperationID       string        `json:"operationId"`
	Status            string        `json:"status"`
	RegistrationState *issuedResult `json:"registrationState,omitempty"`
}

// issuedResult is a DeviceRegistrationResult with issuedCertificateChain
// (base64 DER: the device certificate, the issuing CA, the root).
type issuedResult struct {
	*registrationResult
	IssuedCertificateChain []string `json:"issuedCertificateChain,omitempty"`
}

// withoutIssuedChain removes registrationState.issuedCertificateChain
// from a stored operation, for an api-version that does not have it.
func withoutIssuedChain(body []byte) ([]byte, error) {
	var op map[string]json.RawMessage
	if err := json.Unmarshal(body, &op); err != nil {
		return nil, err
	}
	rs, ok := op["registrationState"]
	if !ok {
		return body, nil
	}
	var state map[string]json.RawMessage
	if err := json.Unmarshal(rs, &state); err != nil {
		return nil, err
	}
	if _, ok := state["issuedCertificateChain"]; !ok {
		return body, nil
	}
	delete(state, "issuedCertificateChain")
	b, err := json.Marshal(state)
	if err != nil {
		return nil, err
	}
	op["registrationState"] = b
	return json.Marshal(op)
}

// lookup answers the device's status lookup: its DeviceRegistrationResult
// as it stands, or 404 when it has not registered.
func (e *Emulator) lookup(w http.ResponseWriter, r *http.Request, dr deviceRoute) *apiError {
	row, err := getRegistration(r.Context(), e.db, dr.regID)
	if err != nil {
		return internalError("read registration "+dr.regID, err)
	}
	if row == nil {
		return registrationNotFound(dr.regID)
	}
	res, err := row.result(e.now())
	if err != nil {
		return internalError("read registration "+dr.regID, err)
	}
	return writeJSON(w, http.StatusOK, res)
}
