package emulator

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"zerotouch/enroll"
	"zerotouch/internal/regid"
)

// kind describes one of the two kinds of record the service keeps:
// individual enrollments and enrollment groups. The handlers below are
// written once for both.
type kind[T any] struct {
	noun      string // "enrollment", for messages
	table     string
	idField   string     // the ID's JSON name
	listField string     // the bulk body's array
	itemType  string     // x-ms-item-type
	from      string     // the one query served is "select * from " + from
	tag       byte       // continuation token kind
	notFound  int        // errorCode for 404
	ids       regid.Kind // its ID's rule and name in messages
	fields    func(*T) fields
	validate  func(*T) error
	bulkError func(id string, code int, status string) any // an entry of a bulk answer's errors
	// decorate, when set, adds to a record read alone (GET) what the
	// service keeps apart from it.
	decorate func(ctx context.Context, e *Emulator, id string, body []byte) ([]byte, error)
}

// fields points into a record at what the service reads or fills.
type fields struct {
	id                *string
	attestation       *enroll.Attestation
	capabilities      **enroll.Capabilities
	etag              *string
	status            *string
	reprovision       **enroll.ReprovisionPolicy
	allocation        *string
	policy            *string // credentialPolicyName (api-version 2026-04-01)
	created, updated  **time.Time
	registrationState **enroll.RegistrationState // nil for groups
}

var enrollmentKind = &kind[enroll.Enrollment]{
	noun:      "enrollment",
	table:     tableEnrollments,
	idField:   "registrationId",
	listField: "enrollments",
	itemType:  "Enrollment",
	from:      "enrollments",
	tag:       tagEnrollments,
	notFound:  enroll.CodeNotFound,
	ids:       regid.Registration,
	fields: func(v *enroll.Enrollment) fields {
		return fields{&v.RegistrationID, &v.Attestation, &v.Capabilities, &v.ETag, &v.ProvisioningStatus,
			&v.ReprovisionPolicy, &v.AllocationPolicy, &v.CredentialPolicyName, &v.CreatedDateTimeUTC, &v.LastUpdatedDateTimeUTC, &v.RegistrationState}
	},
	validate: func(v *enroll.Enrollment) error { return v.Validate() },
	bulkError: func(id string, code int, status string) any {
		return enroll.BulkError{RegistrationID: id, ErrorCode: code, ErrorStatus: status}
	},
	// An individual enrollment's GET carries the registration state of
	// the device that registered through it.
	decorate: func(ctx context.Context, e *Emulator, id string, body []byte) ([]byte, error) {
		st, err := e.registrationStateOf(ctx, id)
		if err != nil || st == nil {
			return body, err
		}
		var v enroll.Enrollment
		if err := json.Unmarshal(body, &v); err != nil {
			return nil, fmt.Errorf("decode enrollment %s: %w", id, err)
		}
		v.RegistrationState = st
		return json.Marshal(&v)
	},
}

var groupKind = &kind[enroll.EnrollmentGroup]{
	noun:      "enrollment group",
	table:     tableGroups,
	idField:   "enrollmentGroupId",
	listField: "enrollmentGroups",
	itemType:  "EnrollmentGroup",
	from:      "enrollmentgroups",
	tag:       tagGroups,
	notFound:  enroll.CodeGroupNotFound,
	ids:       regid.Group,
	fields: func(v *enroll.EnrollmentGroup) fields {
		return fields{id: &v.EnrollmentGroupID, attestation: &v.Attestation, capabilities: &v.Capabilities, etag: &v.ETag,
			status: &v.ProvisioningStatus, reprovision: &v.ReprovisionPolicy, allocation: &v.AllocationPolicy,
			policy: &v.CredentialPolicyName, created: &v.CreatedDateTimeUTC, updated: &v.LastUpdatedDateTimeUTC}
	},
	validate: func(v *enroll.EnrollmentGroup) error { return v.Validate() },
	bulkError: func(id string, code int, status string) any {
		return struct {
			EnrollmentGroupID string `json:"enrollmentGroupId"`
			ErrorCode         int    `json:"errorCode"`
			ErrorStatus       string `json:"errorStatus"`
		}{id, code, status}
	},
}

// check validates v: 400 with CodeRegistrationID when its ID is at fault,
// CodeBadBody otherwise; the message is Validate's, which says why.
func (k *kind[T]) check(v *T) *apiError {
	err := k.validate(v)
	if err == nil {
		return nil
	}
	code := enroll.CodeBadBody
	if errors.Is(err, regid.ErrInvalid) {
		code = enroll.CodeRegistrationID
	}
	return badRequest(code, "%v", err)
}

// checkNewID checks the ID in the path of a write (PUT) by the rule for
// what is created: regid's Check, no special character at either end.
func checkNewID(ids regid.Kind, id string) *apiError {
	if err := ids.Check(id, regid.MaxLen); err != nil {
		return badRequest(enroll.CodeRegistrationID, "the ID in the path: %v", err)
	}
	return nil
}

// checkPathID checks the ID in the path of a read or a delete by the
// rule for what may already exist: regid's CheckExisting, which leaves
// the ends alone (DPS's concept documentation lets an ID end with a
// dash; records made before the stricter rule may have one).
func checkPathID(ids regid.Kind, id string) *apiError {
	if err := ids.CheckExisting(id); err != nil {
		return badRequest(enroll.CodeRegistrationID, "the ID in the path: %v", err)
	}
	return nil
}

// store fills what the service sets in v (etag, timestamps, defaults,
// certificate info, symmetric keys) and writes it, creating the record
// (old == nil) or replacing old. A request under an api-version that
// knows no credentialPolicyName (ver) neither sets nor clears it: old's
// is kept. It returns the body as stored.
func store[T any](ctx context.Context, tx *sql.Tx, k *kind[T], v *T, old *row, now time.Time, ver string) ([]byte, error) {
	f := k.fields(v)
	created := now.UTC()
	if old != nil {
		created = old.created.UTC()
	}
	if !enroll.SupportsCredentialPolicy(ver) {
		*f.policy = ""
		if old != nil {
			var o T
			if err := json.Unmarshal(old.body, &o); err != nil {
				return nil, fmt.Errorf("decode stored %s %s: %w", k.noun, *f.id, err)
			}
			*f.policy = *k.fields(&o).policy
		}
	}
	updated := now.UTC()
	*f.etag = `"` + newUUID() + `"`
	*f.created, *f.updated = &created, &updated
	if f.registrationState != nil {
		*f.registrationState = nil // read-only: kept apart, with the registration
	}
	if *f.status == "" {
		*f.status = enroll.StatusEnabled
	}
	if *f.capabilities == nil {
		*f.capabilities = &enroll.Capabilities{IoTEdge: false}
	}
	if *f.reprovision == nil {
		*f.reprovision = &enroll.ReprovisionPolicy{UpdateHubAssignment: true, MigrateDeviceData: true}
	}
	if *f.allocation == "" {
		*f.allocation = enroll.AllocationHashed
	}
	if err := fillAttestation(f.attestation); err != nil {
		return nil, fmt.Errorf("%s %s: %w", k.noun, *f.id, err)
	}
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s %s: %w", k.noun, *f.id, err)
	}
	if err := putRow(ctx, tx, k.table, *f.id, old, body, *f.etag, created, updated); err != nil {
		return nil, err
	}
	return body, nil
}

// fillAttestation adds what DPS adds: each X.509 certificate's info, and
// 64-byte symmetric keys where none were given.
func fillAttestation(a *enroll.Attestation) error {
	switch a.Type {
	case enroll.AttestationX509:
		if a.X509 == nil {
			return nil
		}
		for _, certs := range []*enroll.X509Certificates{a.X509.ClientCertificates, a.X509.SigningCertificates} {
			if certs == nil {
				continue
			}
			for _, c := range []*enroll.X509Certificate{certs.Primary, certs.Secondary} {
				if c == nil || c.Certificate == "" {
					continue
				}
				cert, err := enroll.ParseCertificate(c.Certificate)
				if err != nil {
					return err
				}
				c.Info = certInfo(cert)
			}
		}
	case enroll.AttestationSymmetricKey:
		if a.SymmetricKey == nil {
			a.SymmetricKey = &enroll.SymmetricKeyAttestation{}
		}
		for _, k := range []*string{&a.SymmetricKey.PrimaryKey, &a.SymmetricKey.SecondaryKey} {
			if *k == "" {
				b := make([]byte, 64)
				rand.Read(b)
				*k = base64.StdEncoding.EncodeToString(b)
			}
		}
	}
	return nil
}

func certInfo(c *x509.Certificate) *enroll.X509Info {
	s1, s256 := sha1.Sum(c.Raw), sha256.Sum256(c.Raw)
	return &enroll.X509Info{
		SubjectName:      c.Subject.String(),
		SHA1Thumbprint:   strings.ToUpper(hex.EncodeToString(s1[:])),
		SHA256Thumbprint: strings.ToUpper(hex.EncodeToString(s256[:])),
		IssuerName:       c.Issuer.String(),
		NotBeforeUTC:     c.NotBefore.UTC(),
		NotAfterUTC:      c.NotAfter.UTC(),
		SerialNumber:     fmt.Sprintf("%X", c.SerialNumber),
		Version:          c.Version,
	}
}

// answer is a stored body as a request under api-version ver sees it:
// without credentialPolicyName unless ver knows it.
func (k *kind[T]) answer(body []byte, ver string) ([]byte, error) {
	if enroll.SupportsCredentialPolicy(ver) || !bytes.Contains(body, []byte(`"credentialPolicyName"`)) {
		return body, nil
	}
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("decode stored %s: %w", k.noun, err)
	}
	*k.fields(&v).policy = ""
	return json.Marshal(&v)
}

// apiVersion is the request's api-version, checked by checkAPIVersion.
func apiVersion(r *http.Request) string { return r.URL.Query().Get("api-version") }

// reprovisionDefaults gives a reprovisionPolicy the defaults of the
// specification (ReprovisionPolicy: updateHubAssignment and
// migrateDeviceData, each "default": true) for what raw, the item as
// sent, leaves out: {} is both true, where decoding alone makes both
// false. An absent or null policy is left to store.
func reprovisionDefaults(raw []byte, p **enroll.ReprovisionPolicy) {
	var item struct {
		Policy map[string]json.RawMessage `json:"reprovisionPolicy"`
	}
	if json.Unmarshal(raw, &item) != nil || item.Policy == nil || *p == nil {
		return
	}
	if _, ok := item.Policy["updateHubAssignment"]; !ok {
		(*p).UpdateHubAssignment = true
	}
	if _, ok := item.Policy["migrateDeviceData"]; !ok {
		(*p).MigrateDeviceData = true
	}
}

// etagMatch compares etags, quoted or not (weak or strong).
func etagMatch(a, b string) bool {
	norm := func(s string) string {
		s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
		return strings.TrimSuffix(strings.TrimPrefix(s, `"`), `"`)
	}
	return norm(a) != "" && norm(a) == norm(b)
}

func precondition(format string, args ...any) *apiError {
	return &apiError{status: http.StatusPreconditionFailed, code: enroll.CodePrecondition, msg: fmt.Sprintf(format, args...)}
}

// txError turns a transaction's error into the answer: an *apiError as
// it is, anything else a 500.
func txError(err error, what string) *apiError {
	if err == nil {
		return nil
	}
	var a *apiError
	if errors.As(err, &a) {
		return a
	}
	return internalError(what, err)
}

// readBody reads the request body: Content-Type, when given, must be
// application/json (415); at most MaxBody bytes (413, refused from its
// Content-Length before anything is read, or as soon as it passes the
// limit); whole within the read deadline ServeHTTP set (408); empty only
// if allowEmpty (400).
func (e *Emulator) readBody(w http.ResponseWriter, r *http.Request, allowEmpty bool) ([]byte, *apiError) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, &apiError{status: http.StatusUnsupportedMediaType, code: enroll.CodeUnsupportedType,
				msg: fmt.Sprintf("Content-Type %q is not supported: send application/json", ct)}
		}
	}
	tooLarge := &apiError{status: http.StatusRequestEntityTooLarge, code: enroll.CodeTooLarge,
		msg: fmt.Sprintf("the request body is over %d bytes, the service's largest message", e.maxBody)}
	if r.ContentLength > e.maxBody {
		return nil, tooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, e.maxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, &apiError{status: http.StatusRequestTimeout, code: codeRequestTimeout,
			msg: fmt.Sprintf("the request body did not arrive within %v: send it whole, at once", e.readTO)}
	case err != nil:
		return nil, badRequest(enroll.CodeBadBody, "read the request body: %v", err)
	case !allowEmpty && len(bytes.TrimSpace(b)) == 0:
		return nil, badRequest(enroll.CodeBadBody, "the request body is empty: send a JSON object")
	}
	return b, nil
}

// decode reads a JSON object into v.
func decode(b []byte, v any) *apiError {
	if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' {
		return badRequest(enroll.CodeBadBody, "the request body is not a JSON object")
	}
	if err := json.Unmarshal(b, v); err != nil {
		return badRequest(enroll.CodeBadBody, "the request body is not valid: %v", err)
	}
	return nil
}

func putOne[T any](k *kind[T]) handler {
	return func(e *Emulator, w http.ResponseWriter, r *http.Request, id string) *apiError {
		if a := checkNewID(k.ids, id); a != nil {
			return a
		}
		b, a := e.readBody(w, r, false)
		if a != nil {
			return a
		}
		var v T
		if a := decode(b, &v); a != nil {
			return a
		}
		reprovisionDefaults(b, k.fields(&v).reprovision)
		if got := *k.fields(&v).id; !strings.EqualFold(got, id) {
			return badRequest(enroll.CodeRegistrationID, "%s %q in the body is not %q, the ID in the path", k.idField, got, id)
		}
		if a := k.check(&v); a != nil {
			return a
		}
		ifMatch := strings.TrimSpace(r.Header.Get("If-Match"))
		var out []byte
		ctx := r.Context()
		err := e.inTx(ctx, func(tx *sql.Tx) error {
			old, err := getRow(ctx, tx, k.table, id)
			if err != nil {
				return err
			}
			if ifMatch != "" {
				if old == nil {
					return precondition("If-Match %s: %s %q does not exist", ifMatch, k.noun, id)
				}
				if ifMatch != "*" && !etagMatch(ifMatch, old.etag) {
					return precondition("If-Match %s does not match the etag of %s %q, %s", ifMatch, k.noun, id, old.etag)
				}
			}
			out, err = store(ctx, tx, k, &v, old, e.now(), apiVersion(r))
			return err
		})
		if a := txError(err, "write "+k.noun+" "+id); a != nil {
			return a
		}
		out, err = k.answer(out, apiVersion(r))
		if err != nil {
			return internalError("answer "+k.noun+" "+id, err)
		}
		writeRaw(w, http.StatusOK, out)
		return nil
	}
}

// notFoundError is the 404 for a record id that does not exist.
func (k *kind[T]) notFoundError(id string) *apiError {
	return &apiError{status: http.StatusNotFound, code: k.notFound, msg: fmt.Sprintf("%s %q not found", k.noun, id)}
}

// find reads the record id outside a transaction: a 404 if it does not
// exist.
func (k *kind[T]) find(ctx context.Context, e *Emulator, id string) (*row, *apiError) {
	old, err := getRow(ctx, e.db, k.table, id)
	if err != nil {
		return nil, internalError("read "+k.noun+" "+id, err)
	}
	if old == nil {
		return nil, k.notFoundError(id)
	}
	return old, nil
}

func getOne[T any](k *kind[T]) handler {
	return func(e *Emulator, w http.ResponseWriter, r *http.Request, id string) *apiError {
		if a := checkPathID(k.ids, id); a != nil {
			return a
		}
		old, a := k.find(r.Context(), e, id)
		if a != nil {
			return a
		}
		body, err := k.answer(old.body, apiVersion(r))
		if err != nil {
			return internalError("read "+k.noun+" "+id, err)
		}
		if k.decorate != nil {
			b, err := k.decorate(r.Context(), e, id, body)
			if err != nil {
				return internalError("read "+k.noun+" "+id, err)
			}
			body = b
		}
		writeRaw(w, http.StatusOK, body)
		return nil
	}
}

// deleteOne deletes a record: 204, or 404 when it does not exist (If-Match
// or not), or 412 when If-Match is given, is not "*" and is not its etag.
func deleteOne[T any](k *kind[T]) handler {
	return func(e *Emulator, w http.ResponseWriter, r *http.Request, id string) *apiError {
		if a := checkPathID(k.ids, id); a != nil {
			return a
		}
		ifMatch := strings.TrimSpace(r.Header.Get("If-Match"))
		ctx := r.Context()
		err := e.inTx(ctx, func(tx *sql.Tx) error {
			old, err := getRow(ctx, tx, k.table, id)
			if err != nil {
				return err
			}
			if old == nil {
				return k.notFoundError(id)
			}
			if ifMatch != "" && ifMatch != "*" && !etagMatch(ifMatch, old.etag) {
				return precondition("If-Match %s does not match the etag of %s %q, %s", ifMatch, k.noun, id, old.etag)
			}
			return deleteRow(ctx, tx, k.table, old)
		})
		if a := txError(err, "delete "+k.noun+" "+id); a != nil {
			return a
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func attestationMechanism[T any](k *kind[T]) handler {
	return func(e *Emulator, w http.ResponseWriter, r *http.Request, id string) *apiError {
		if a := checkPathID(k.ids, id); a != nil {
			return a
		}
		if _, a := e.readBody(w, r, true); a != nil {
			return a
		}
		old, a := k.find(r.Context(), e, id)
		if a != nil {
			return a
		}
		var v T
		if err := json.Unmarshal(old.body, &v); err != nil {
			return internalError("decode stored "+k.noun+" "+id, err)
		}
		return writeJSON(w, http.StatusOK, k.fields(&v).attestation)
	}
}

// bulkItem is one item of a bulk operation and its outcome.
type bulkItem[T any] struct {
	v      *T
	id     string
	code   int // 0: carried out
	status string
}

// bulk runs a bulk operation: 400 for the request as a whole (mode, no
// items, more than enroll.MaxBulk), otherwise 200 with each failed item in
// errors. All items that succeed are written in one transaction.
func bulk[T any](k *kind[T]) handler {
	return func(e *Emulator, w http.ResponseWriter, r *http.Request, _ string) *apiError {
		b, a := e.readBody(w, r, false)
		if a != nil {
			return a
		}
		var op struct {
			Mode             string            `json:"mode"`
			Enrollments      []json.RawMessage `json:"enrollments"`
			EnrollmentGroups []json.RawMessage `json:"enrollmentGroups"`
		}
		if a := decode(b, &op); a != nil {
			return a
		}
		raws, other, otherField := op.Enrollments, op.EnrollmentGroups, "enrollmentGroups"
		if k.listField == "enrollmentGroups" {
			raws, other, otherField = op.EnrollmentGroups, op.Enrollments, "enrollments"
		}
		mode := ""
		for _, m := range []string{enroll.ModeCreate, enroll.ModeUpdate, enroll.ModeUpdateIfMatchETag, enroll.ModeDelete} {
			if strings.EqualFold(op.Mode, m) {
				mode = m
			}
		}
		switch {
		case mode == "":
			return badRequest(enroll.CodeBadBody, "mode %q: want create, update, updateIfMatchETag or delete", op.Mode)
		case len(raws) == 0 && len(other) > 0:
			return badRequest(enroll.CodeBadBody, "this bulk operation takes %s; %s go to the other endpoint", k.listField, otherField)
		case len(raws) == 0:
			return badRequest(enroll.CodeBadBody, "%s is empty: a bulk operation takes 1 to %d", k.listField, enroll.MaxBulk)
		case len(raws) > enroll.MaxBulk:
			return badRequest(enroll.CodeBulkTooMany, "%d %s: a bulk operation takes at most %d", len(raws), k.listField, enroll.MaxBulk)
		}

		items := make([]bulkItem[T], len(raws))
		seen := map[string]int{}
		for i, raw := range raws {
			it := &items[i]
			var v T
			if err := json.Unmarshal(raw, &v); err != nil {
				var p map[string]any
				json.Unmarshal(raw, &p)
				it.id, _ = p[k.idField].(string)
				it.code, it.status = enroll.CodeBadBody, fmt.Sprintf("item %d is not valid: %v", i+1, err)
				continue
			}
			reprovisionDefaults(raw, k.fields(&v).reprovision)
			it.v, it.id = &v, *k.fields(&v).id
			if mode == enroll.ModeDelete {
				if err := k.ids.CheckExisting(it.id); err != nil {
					it.code, it.status = enroll.CodeRegistrationID, fmt.Sprintf("%s: %v", k.idField, err)
					continue
				}
			} else if a := k.check(&v); a != nil {
				it.code, it.status = a.code, a.msg
				continue
			}
			if j, dup := seen[key(it.id)]; dup {
				it.code, it.status = enroll.CodeBadBody, fmt.Sprintf("%s %q is also item %d of this request", k.idField, it.id, j+1)
				continue
			}
			seen[key(it.id)] = i
		}

		for i := range items {
			if it := &items[i]; it.code == 0 && e.itemFault() {
				e.itemErrors.Add(1)
				it.code, it.status = enroll.CodeInternal, "internal error: send this item again"
			}
		}

		ctx := r.Context()
		now := e.now()
		err := e.inTx(ctx, func(tx *sql.Tx) error {
			for i := range items {
				it := &items[i]
				if it.code != 0 {
					continue
				}
				old, err := getRow(ctx, tx, k.table, it.id)
				if err != nil {
					return err
				}
				etag := *k.fields(it.v).etag
				switch {
				case mode == enroll.ModeCreate && old != nil:
					it.code, it.status = enroll.CodeConflict, k.noun+" already exists"
				case mode == enroll.ModeUpdateIfMatchETag && etag == "":
					it.code, it.status = enroll.CodePrecondition, "etag is required in updateIfMatchETag mode"
				case mode == enroll.ModeUpdateIfMatchETag && old == nil:
					it.code, it.status = enroll.CodePrecondition, k.noun+" does not exist, so its etag cannot match"
				case mode == enroll.ModeUpdateIfMatchETag && etag != "*" && !etagMatch(etag, old.etag):
					it.code, it.status = enroll.CodePrecondition, fmt.Sprintf("etag %s does not match the %s's etag %s", etag, k.noun, old.etag)
				case mode == enroll.ModeDelete && old == nil:
					it.code, it.status = k.notFound, k.noun+" not found"
				case mode == enroll.ModeDelete && etag != "" && etag != "*" && !etagMatch(etag, old.etag):
					it.code, it.status = enroll.CodePrecondition, fmt.Sprintf("etag %s does not match the %s's etag %s", etag, k.noun, old.etag)
				case mode == enroll.ModeDelete:
					if err := deleteRow(ctx, tx, k.table, old); err != nil {
						return err
					}
				default:
					if _, err := store(ctx, tx, k, it.v, old, now, apiVersion(r)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if a := txError(err, "bulk "+mode+" of "+k.listField); a != nil {
			return a
		}
		res := struct {
			IsSuccessful bool  `json:"isSuccessful"`
			Errors       []any `json:"errors"`
		}{IsSuccessful: true, Errors: []any{}}
		for _, it := range items {
			if it.code != 0 {
				res.IsSuccessful = false
				res.Errors = append(res.Errors, k.bulkError(it.id, it.code, it.status))
			}
		}
		return writeJSON(w, http.StatusOK, res)
	}
}

// queryWords reduces a query to its words, lower-cased, with "*" a word
// of its own: for the log.
func queryWords(q string) []string {
	return strings.Fields(strings.ReplaceAll(strings.ToLower(q), "*", " * "))
}

// query answers an enrollment (or group) query a page at a time, in
// insertion order: items added while paging come after the others, so
// none is skipped or repeated. The body must be a QuerySpecification
// with its required query, a string; DPS does not interpret it (see the
// package comment), and neither does the emulator: every record of the
// kind is answered, whatever the query selects or filters.
func query[T any](k *kind[T]) handler {
	return func(e *Emulator, w http.ResponseWriter, r *http.Request, _ string) *apiError {
		b, a := e.readBody(w, r, false)
		if a != nil {
			return a
		}
		var q struct {
			Query *string `json:"query"`
		}
		if a := decode(b, &q); a != nil {
			return a
		}
		if q.Query == nil {
			return badRequest(enroll.CodeBadQuery, `the query specification has no "query": send {"query": "SELECT * FROM %s"}`, k.listField)
		}
		if ws := queryWords(*q.Query); !slices.Equal(ws, []string{"*"}) && !slices.Equal(ws, []string{"select", "*"}) &&
			!slices.Equal(ws, []string{"select", "*", "from", k.from}) {
			e.log.LogAttrs(r.Context(), slog.LevelDebug, "DPS emulator query answered with every record, as DPS answers it: its selection and filter are not applied",
				slog.String(keyPath, r.URL.Path), slog.String("query", *q.Query))
		}
		n := DefaultPageSize
		if h := strings.TrimSpace(r.Header.Get("x-ms-max-item-count")); h != "" {
			v, err := strconv.Atoi(h)
			if err != nil || v < 1 {
				return badRequest(enroll.CodeBadQuery, "x-ms-max-item-count %q: want a positive number (at most %d are answered)", h, MaxPageSize)
			}
			n = min(v, MaxPageSize)
		}
		var after int64
		if tok := r.Header.Get("x-ms-continuation"); tok != "" {
			tag, seq, err := parseContinuation(tok)
			if err == nil && tag != k.tag {
				err = fmt.Errorf("%w: it continues another kind of query", errContinuation)
			}
			if err != nil {
				return badRequest(enroll.CodeBadQuery, "x-ms-continuation: %v", err)
			}
			after = seq
		}
		rows, err := listRows(r.Context(), e.db, k.table, after, n+1)
		if err != nil {
			return internalError("query "+k.listField, err)
		}
		more := len(rows) > n
		if more {
			rows = rows[:n]
		}
		var out bytes.Buffer
		out.WriteByte('[')
		ver := apiVersion(r)
		for i, row := range rows {
			if i > 0 {
				out.WriteByte(',')
			}
			body, err := k.answer(row.body, ver)
			if err != nil {
				return internalError("query "+k.listField, err)
			}
			out.Write(body)
		}
		out.WriteByte(']')
		h := w.Header()
		h.Set("x-ms-item-type", k.itemType)
		h.Set("x-ms-max-item-count", strconv.Itoa(n))
		if more {
			h.Set("x-ms-continuation", formatContinuation(k.tag, rows[len(rows)-1].seq))
		}
		writeRaw(w, http.StatusOK, out.Bytes())
		return nil
	}
}
