package emulator

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"zerotouch/enroll"
	"zerotouch/internal/regid"
)

// Registration statuses and substatuses (device.json
// DeviceRegistrationResult.status and .substatus).
const (
	statusAssigning  = "assigning"
	statusAssigned   = "assigned"
	statusFailed     = "failed"
	statusDisabled   = "disabled"
	statusUnassigned = "unassigned"

	substatusInitial      = "initialAssignment"
	substatusReprovision  = "reprovisionedToInitialAssignment"
	substatusDataMigrated = "deviceDataMigrated"
	substatusDataReset    = "deviceDataReset"
)

// registrationResult is the device API's DeviceRegistrationResult: what
// a device is told about its registration. The service API answers the
// same record without the attestation parts (enroll.RegistrationState).
type registrationResult struct {
	RegistrationID         string              `json:"registrationId"`
	CreatedDateTimeUTC     *time.Time          `json:"createdDateTimeUtc,omitempty"`
	AssignedHub            string              `json:"assignedHub,omitempty"`
	DeviceID               string              `json:"deviceId,omitempty"`
	Status                 string              `json:"status"`
	Substatus              string              `json:"substatus,omitempty"`
	ErrorCode              int                 `json:"errorCode,omitempty"`
	ErrorMessage           string              `json:"errorMessage,omitempty"`
	LastUpdatedDateTimeUTC *time.Time          `json:"lastUpdatedDateTimeUtc,omitempty"`
	ETag                   string              `json:"etag,omitempty"`
	Payload                json.RawMessage     `json:"payload,omitempty"`
	TPM                    *tpmResult          `json:"tpm,omitempty"`
	X509                   *x509Result         `json:"x509,omitempty"`
	SymmetricKey           *symmetricKeyResult `json:"symmetricKey,omitempty"`
}

// tpmResult carries the activation blob of the device's key.
type tpmResult struct {
	AuthenticationKey string `json:"authenticationKey"`
}

// x509Result names the group and the certificate the chain verified to.
type x509Result struct {
	CertificateInfo        *enroll.X509Info `json:"certificateInfo,omitempty"`
	EnrollmentGroupID      string           `json:"enrollmentGroupId,omitempty"`
	SigningCertificateInfo *enroll.X509Info `json:"signingCertificateInfo,omitempty"`
}

// symmetricKeyResult names the group whose key the device's is derived
// from.
type symmetricKeyResult struct {
	EnrollmentGroupID string `json:"enrollmentGroupId,omitempty"`
}

// operationStatus is the device API's RegistrationOperationStatus.
type operationStatus struct {
	OperationID       string              `json:"operationId"`
	Status            string              `json:"status"`
	RegistrationState *registrationResult `json:"registrationState,omitempty"`
}

// regRow is one stored registration.
type regRow struct {
	seq     int64
	id      string // lower-cased key
	groupID string // lower-cased; "" for an individual enrollment
	body    []byte // registrationResult
	etag    string
	count   int
	ready   time.Time
	created time.Time
	updated time.Time
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTimes(what string, out []*time.Time, in ...string) error {
	for i, s := range in {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fmt.Errorf("%s: time %q: %w", what, s, err)
		}
		*out[i] = t
	}
	return nil
}

type rowScanner interface{ Scan(dest ...any) error }

func scanRegistration(s rowScanner) (*regRow, error) {
	var r regRow
	var ready, created, updated string
	if err := s.Scan(&r.seq, &r.id, &r.groupID, &r.body, &r.etag, &r.count, &ready, &created, &updated); err != nil {
		return nil, err
	}
	if err := parseTimes("registration "+r.id, []*time.Time{&r.ready, &r.created, &r.updated}, ready, created, updated); err != nil {
		return nil, err
	}
	return &r, nil
}

const regColumns = `seq, id, group_id, body, etag, registrations, ready_utc, created_utc, updated_utc`

// getRegistration reads the registration id, or nil if there is none.
func getRegistration(ctx context.Context, q querier, id string) (*regRow, error) {
	r, err := scanRegistration(q.QueryRowContext(ctx, `SELECT `+regColumns+` FROM `+tableRegistrations+` WHERE id = ?`, key(id)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read registration %s: %w", id, err)
	}
	return r, nil
}

// putRegistration creates r (old == nil) or replaces old in place,
// keeping its place in insertion order and adding one to its count.
func putRegistration(ctx context.Context, tx *sql.Tx, old, r *regRow) error {
	var err error
	if old == nil {
		_, err = tx.ExecContext(ctx, `INSERT INTO `+tableRegistrations+` (id, group_id, body, etag, registrations, ready_utc, created_utc, updated_utc) VALUES (?, ?, ?, ?, 1, ?, ?, ?)`,
			key(r.id), key(r.groupID), string(r.body), r.etag, formatTime(r.ready), formatTime(r.created), formatTime(r.updated))
	} else {
		_, err = tx.ExecContext(ctx, `UPDATE `+tableRegistrations+` SET group_id = ?, body = ?, etag = ?, registrations = registrations + 1, ready_utc = ?, updated_utc = ? WHERE seq = ?`,
			key(r.groupID), string(r.body), r.etag, formatTime(r.ready), formatTime(r.updated), old.seq)
	}
	if err != nil {
		return fmt.Errorf("write registration %s: %w", r.id, err)
	}
	return nil
}

// deleteRegistration removes a registration with its operations and its
// TPM key: a device registering again starts from the challenge.
func deleteRegistration(ctx context.Context, tx *sql.Tx, old *regRow) error {
	for _, q := range []struct {
		table, column string
		arg           any
	}{{tableRegistrations, "seq", old.seq}, {tableOperations, "registration_id", old.id}, {tableTPMKeys, "id", old.id}} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+q.table+` WHERE `+q.column+` = ?`, q.arg); err != nil {
			return fmt.Errorf("delete registration %s: %w", old.id, err)
		}
	}
	return nil
}

// listRegistrations returns up to limit registrations of the group
// groupID after seq, in insertion order.
func listRegistrations(ctx context.Context, db *sql.DB, groupID string, after int64, limit int) ([]regRow, error) {
	rows, err := db.QueryContext(ctx, `SELECT `+regColumns+` FROM `+tableRegistrations+` WHERE group_id = ? AND seq > ? ORDER BY seq LIMIT ?`, key(groupID), after, limit)
	if err != nil {
		return nil, fmt.Errorf("query registrations of %s: %w", groupID, err)
	}
	defer rows.Close()
	var out []regRow
	for rows.Next() {
		r, err := scanRegistration(rows)
		if err != nil {
			return nil, fmt.Errorf("query registrations of %s: %w", groupID, err)
		}
		out = append(out, *r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query registrations of %s: %w", groupID, err)
	}
	return out, nil
}

// putOperation stores a registration's new operation, whose answer is
// body from ready on, and forgets its earlier ones.
func putOperation(ctx context.Context, tx *sql.Tx, id, regID string, body []byte, ready, created time.Time) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+tableOperations+` WHERE registration_id = ?`, key(regID)); err != nil {
		return fmt.Errorf("write operation %s: %w", id, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+tableOperations+` (id, registration_id, body, ready_utc, created_utc) VALUES (?, ?, ?, ?, ?)`,
		id, key(regID), string(body), formatTime(ready), formatTime(created)); err != nil {
		return fmt.Errorf("write operation %s: %w", id, err)
	}
	return nil
}

// operation is a stored operation.
type operation struct {
	regID   string // lower-cased
	body    []byte // operationStatus once ready
	ready   time.Time
	created time.Time
}

// getOperation reads the operation id, or nil if there is none.
func getOperation(ctx context.Context, q querier, id string) (*operation, error) {
	var op operation
	var ready, created string
	err := q.QueryRowContext(ctx, `SELECT registration_id, body, ready_utc, created_utc FROM `+tableOperations+` WHERE id = ?`, id).
		Scan(&op.regID, &op.body, &ready, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err == nil {
		err = parseTimes("operation "+id, []*time.Time{&op.ready, &op.created}, ready, created)
	}
	if err != nil {
		return nil, fmt.Errorf("read operation %s: %w", id, err)
	}
	return &op, nil
}

// tpmKey is the HMAC key a TPM challenge carried, and what it was sealed
// to.
type tpmKey struct {
	ek, srk, key []byte
}

func putTPMKey(ctx context.Context, tx *sql.Tx, regID string, k tpmKey, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO `+tableTPMKeys+` (id, endorsement_key, storage_root_key, key, created_utc) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET endorsement_key = excluded.endorsement_key, storage_root_key = excluded.storage_root_key, key = excluded.key, created_utc = excluded.created_utc`,
		key(regID), k.ek, k.srk, k.key, formatTime(now))
	if err != nil {
		return fmt.Errorf("write the TPM key of %s: %w", regID, err)
	}
	return nil
}

// getTPMKey reads the key of registration regID's latest challenge, or
// nil if none was issued.
func getTPMKey(ctx context.Context, q querier, regID string) (*tpmKey, error) {
	var k tpmKey
	err := q.QueryRowContext(ctx, `SELECT endorsement_key, storage_root_key, key FROM `+tableTPMKeys+` WHERE id = ?`, key(regID)).Scan(&k.ek, &k.srk, &k.key)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the TPM key of %s: %w", regID, err)
	}
	return &k, nil
}

// result decodes the stored DeviceRegistrationResult as it stands at now:
// before the registration is ready it is assigning, and tells nothing of
// the assignment yet.
func (r *regRow) result(now time.Time) (*registrationResult, error) {
	var res registrationResult
	if err := json.Unmarshal(r.body, &res); err != nil {
		return nil, fmt.Errorf("decode registration %s: %w", r.id, err)
	}
	if now.Before(r.ready) {
		updated := r.updated.UTC()
		res = registrationResult{RegistrationID: res.RegistrationID, CreatedDateTimeUTC: res.CreatedDateTimeUTC,
			Status: statusAssigning, LastUpdatedDateTimeUTC: &updated, ETag: res.ETag}
	}
	return &res, nil
}

// state is the service API's view of a registration
// (DeviceRegistrationState) at now.
func (r *regRow) state(now time.Time) (*enroll.RegistrationState, error) {
	res, err := r.result(now)
	if err != nil {
		return nil, err
	}
	return &enroll.RegistrationState{
		RegistrationID:         res.RegistrationID,
		CreatedDateTimeUTC:     res.CreatedDateTimeUTC,
		AssignedHub:            res.AssignedHub,
		DeviceID:               res.DeviceID,
		Status:                 res.Status,
		Substatus:              res.Substatus,
		ErrorCode:              res.ErrorCode,
		ErrorMessage:           res.ErrorMessage,
		LastUpdatedDateTimeUTC: res.LastUpdatedDateTimeUTC,
		ETag:                   res.ETag,
		Payload:                res.Payload,
	}, nil
}

// newRegistrationETag makes an etag in the form DPS's registration
// states carry: base64 of a quoted UUID.
func newRegistrationETag() string {
	return base64.StdEncoding.EncodeToString([]byte(`"` + newUUID() + `"`))
}

func registrationNotFound(id string) *apiError {
	return &apiError{status: http.StatusNotFound, code: enroll.CodeNotFound,
		msg: fmt.Sprintf("registration %q not found: no device has registered with this ID (or its registration was deleted)", id)}
}

// getRegistrationState answers GET /registrations/{id}: the
// DeviceRegistrationState.
func getRegistrationState(e *Emulator, w http.ResponseWriter, r *http.Request, id string) *apiError {
	if a := checkPathID(regid.Registration, id); a != nil {
		return a
	}
	row, err := getRegistration(r.Context(), e.db, id)
	if err != nil {
		return internalError("read registration "+id, err)
	}
	if row == nil {
		return registrationNotFound(id)
	}
	st, err := row.state(e.now())
	if err != nil {
		return internalError("read registration "+id, err)
	}
	return writeJSON(w, http.StatusOK, st)
}

// deleteRegistrationState answers DELETE /registrations/{id}: 204, 404
// when there is none, 412 when If-Match is given, is not "*" and is not
// its etag.
func deleteRegistrationState(e *Emulator, w http.ResponseWriter, r *http.Request, id string) *apiError {
	if a := checkPathID(regid.Registration, id); a != nil {
		return a
	}
	ifMatch := strings.TrimSpace(r.Header.Get("If-Match"))
	ctx := r.Context()
	err := e.inTx(ctx, func(tx *sql.Tx) error {
		old, err := getRegistration(ctx, tx, id)
		if err != nil {
			return err
		}
		if old == nil {
			return registrationNotFound(id)
		}
		if ifMatch != "" && ifMatch != "*" && !etagMatch(ifMatch, old.etag) && !etagMatch(ifMatch, decodedETag(old.etag)) {
			return precondition("If-Match %s does not match the etag of registration %q, %s", ifMatch, id, old.etag)
		}
		return deleteRegistration(ctx, tx, old)
	})
	if a := txError(err, "delete registration "+id); a != nil {
		return a
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// decodedETag is a registration etag without its base64 armour, which
// some clients send back instead.
func decodedETag(etag string) string {
	b, err := base64.StdEncoding.DecodeString(etag)
	if err != nil {
		return ""
	}
	return string(b)
}

// registrationQuery answers POST /registrations/{groupId}/query: the
// registration states of the devices that registered through the group,
// a page at a time in the order they first registered, as the
// enrollment queries page.
func registrationQuery(e *Emulator, w http.ResponseWriter, r *http.Request, id string) *apiError {
	if a := checkPathID(regid.Group, id); a != nil {
		return a
	}
	if _, aerr := e.readBody(w, r, true); aerr != nil {
		return aerr
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
		if err == nil && tag != tagRegistrations {
			err = fmt.Errorf("%w: it continues another kind of query", errContinuation)
		}
		if err != nil {
			return badRequest(enroll.CodeBadQuery, "x-ms-continuation: %v", err)
		}
		after = seq
	}
	rows, err := listRegistrations(r.Context(), e.db, id, after, n+1)
	if err != nil {
		return internalError("query the registrations of "+id, err)
	}
	more := len(rows) > n
	if more {
		rows = rows[:n]
	}
	now := e.now()
	var out bytes.Buffer
	out.WriteByte('[')
	for i := range rows {
		st, err := rows[i].state(now)
		if err != nil {
			return internalError("query the registrations of "+id, err)
		}
		b, err := json.Marshal(st)
		if err != nil {
			return internalError("encode the registrations of "+id, err)
		}
		if i > 0 {
			out.WriteByte(',')
		}
		out.Write(b)
	}
	out.WriteByte(']')
	h := w.Header()
	h.Set("x-ms-item-type", "DeviceRegistration")
	h.Set("x-ms-max-item-count", strconv.Itoa(n))
	if more {
		h.Set("x-ms-continuation", formatContinuation(tagRegistrations, rows[len(rows)-1].seq))
	}
	writeRaw(w, http.StatusOK, out.Bytes())
	return nil
}

// registrationStateOf is the registration state an individual
// enrollment's GET carries: that of the device that registered through
// it, if any. DPS's enrollment queries leave it out, and so does the
// emulator.
func (e *Emulator) registrationStateOf(ctx context.Context, id string) (*enroll.RegistrationState, error) {
	row, err := getRegistration(ctx, e.db, id)
	if err != nil || row == nil || row.groupID != "" {
		return nil, err
	}
	return row.state(e.now())
}
