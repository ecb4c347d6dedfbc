package records

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"zerotouch/enroll"
	"zerotouch/internal/regid"
)

// SaveResult says what Save did.
type SaveResult struct {
	Created bool // the board had no record: one was made
	Updated bool // the board's record was updated
	Queued  bool // its enrollment is now pending upload
}

// Save records a board's outcome, in one transaction with its audit row.
//
//   - A board has one record, found by its serial number: saving the same
//     serial again updates that record (its EK, registration ID and
//     certificate may change with it; the audit row says so).
//   - The same EK (EKPublic equal) under a different serial number is a
//     possible clone, and so is the same registration ID in the tpm mode,
//     where the ID is the EK's hash: Save refuses with a *CloneError that
//     matches ErrClone, writes an EventClone audit row (tied to the
//     record already there) and changes nothing else.
//   - A registration ID held by another serial number in the other modes
//     (the station's ID template made the same ID twice) is refused the
//     same way, with a *CloneError that matches ErrDuplicateID and an
//     EventDuplicateID audit row. A distinct error, because it is a
//     configuration mistake rather than a counterfeit board.
//   - A passed board's enrollment is queued (pending) when it is new or
//     differs from the stored one (compared as JSON without the service's
//     read-only fields: etag, registration state, timestamps, certificate
//     info). An unchanged one keeps its upload state: pending, in flight
//     and uploaded stay so; failed and conflict are queued again, since
//     provisioning the board again is how an operator retries it. A
//     changed one replacing one in flight goes to replace whatever DPS
//     holds (see queue.go: the old one may have reached DPS unsettled).
//   - A passed board with a nil Enrollment (group modes) has nothing to
//     enroll: any stored enrollment is dropped from the record (an upload
//     of it in flight is ignored when it settles).
//   - A failed board queues nothing: r.Enrollment is ignored. Fields it
//     leaves empty (it may have failed before its identity was read) keep
//     their stored values, and so does a stored enrollment from an
//     earlier pass, with its upload state, unless the failed run found a
//     different registration ID: then the board no longer has the
//     identity that enrollment is for, and it is dropped.
//   - A failed board's Cause and FailedStep are stored as given (empty:
//     none), and its audit row carries the message, the step and the
//     cause; a passed board's record keeps neither.
//
// A record that is not valid (no serial, an unknown attestation or
// result, a passed board without a valid registration ID, an enrollment
// that fails enroll.Enrollment.Validate or names another registration ID)
// is refused with an error wrapping ErrInvalid, before anything is
// written. Other errors are the database's, wrapped.
//
// On success Save sets *r to the record as stored (its ID, timestamps,
// lower-case registration ID, upload state and, for a failed board, the
// fields kept). It is safe for concurrent use.
func (s *Store) Save(ctx context.Context, r *Record) (SaveResult, error) {
	var res SaveResult
	body, err := checkRecord(r)
	if err != nil {
		return res, err
	}
	var refused *CloneError
	var saved *row
	err = s.write(ctx, "save board "+r.Serial, func(ctx context.Context, tx *wtx) error {
		now := formatTime(s.now())
		old, err := scanRecord(tx.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM records WHERE serial = ?`, r.Serial))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			old = nil
		case err != nil:
			return fmt.Errorf("records: save board %s: read its record: %w", r.Serial, err)
		}
		queryRow := func(q string, args ...any) scanner { return tx.QueryRowContext(ctx, q, args...) }
		if err := noteFlightLost(old, [5]string{"?", "?", "?", "?", "?"}, queryRow, sql.ErrNoRows); err != nil {
			return fmt.Errorf("records: save board %s: %w", r.Serial, err)
		}
		m := *r
		m.RegistrationID = strings.ToLower(m.RegistrationID)
		if m.Result == ResultFailed && old != nil {
			keepStored(&m, &old.Record)
		}
		refused, err = checkClone(ctx, tx, now, &m)
		if err != nil || refused != nil {
			return err
		}
		res, err = upsert(ctx, tx, now, &m, body, old)
		if err != nil {
			return fmt.Errorf("records: save board %s: %w", r.Serial, err)
		}
		saved, err = scanRecord(tx.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM records WHERE serial = ?`, r.Serial))
		if err != nil {
			return fmt.Errorf("records: save board %s: read it back: %w", r.Serial, err)
		}
		return nil
	})
	if err != nil {
		return SaveResult{}, err
	}
	if refused != nil {
		return SaveResult{}, refused
	}
	*r = saved.Record
	return res, nil
}

// keepStored fills the fields a failed board's record leaves empty from
// its stored record.
func keepStored(r, old *Record) {
	str := func(v *string, o string) {
		if *v == "" {
			*v = o
		}
	}
	byt := func(v *[]byte, o []byte) {
		if len(*v) == 0 {
			*v = o
		}
	}
	str(&r.Model, old.Model)
	str(&r.HW, old.HW)
	str(&r.Firmware, old.Firmware)
	str(&r.RegistrationID, old.RegistrationID)
	str(&r.DeviceID, old.DeviceID)
	byt(&r.EKPublic, old.EKPublic)
	byt(&r.EKCertificate, old.EKCertificate)
	str(&r.EKCertStatus, old.EKCertStatus)
	str(&r.EKFingerprint, old.EKFingerprint)
	str(&r.CertificateChain, old.CertificateChain)
	str(&r.CertSerial, old.CertSerial)
	if r.CertNotAfter.IsZero() {
		r.CertNotAfter = old.CertNotAfter
	}
	if len(r.ConfigSHA256) == 0 {
		r.ConfigSHA256 = old.ConfigSHA256
	}
	str(&r.ConfigPath, old.ConfigPath)
}

// checkRecord validates r and returns the enrollment JSON to store for it
// ("" for none).
func checkRecord(r *Record) (string, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: board %q: %s", ErrInvalid, r.Serial, fmt.Sprintf(format, args...))
	}
	if strings.TrimSpace(r.Serial) == "" {
		return "", fmt.Errorf("%w: no serial number", ErrInvalid)
	}
	if !validAttestation(r.Attestation) {
		return "", bad("attestation %q: want %s, %s, %s, %s or %s", r.Attestation,
			AttestationTPM, AttestationX509TPM, AttestationX509Keygen, AttestationX509StationKey, AttestationSymmetricKey)
	}
	switch r.Result {
	case ResultFailed:
		return "", nil // nothing to enroll; any registration ID is kept as is
	case ResultPassed:
	default:
		return "", bad("result %q: want %s or %s", r.Result, ResultPassed, ResultFailed)
	}
	max := regid.MaxLen
	if isX509(r.Attestation) {
		max = regid.MaxLenX509
	}
	if err := regid.Check(r.RegistrationID, max); err != nil {
		return "", fmt.Errorf("%w: board %q: %w", ErrInvalid, r.Serial, err)
	}
	if r.Enrollment == nil {
		return "", nil
	}
	if !strings.EqualFold(r.Enrollment.RegistrationID, r.RegistrationID) {
		return "", bad("its enrollment is for registration ID %q, the board's is %q", r.Enrollment.RegistrationID, r.RegistrationID)
	}
	if err := r.Enrollment.Validate(); err != nil {
		return "", fmt.Errorf("%w: board %q: %w", ErrInvalid, r.Serial, err)
	}
	body, err := enrollmentJSON(r.Enrollment)
	if err != nil {
		return "", bad("%v", err)
	}
	return body, nil
}

// enrollmentJSON encodes e without the fields the service sets.
func enrollmentJSON(e *enroll.Enrollment) (string, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("encode enrollment: %w", err)
	}
	var c enroll.Enrollment // a deep copy, to clear fields in
	if err := json.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("encode enrollment: %w", err)
	}
	c.ETag, c.RegistrationState, c.CreatedDateTimeUTC, c.LastUpdatedDateTimeUTC = "", nil, nil, nil
	if x := c.Attestation.X509; x != nil {
		for _, cs := range []*enroll.X509Certificates{x.ClientCertificates, x.SigningCertificates} {
			if cs == nil {
				continue
			}
			for _, c := range []*enroll.X509Certificate{cs.Primary, cs.Secondary} {
				if c != nil {
					c.Info = nil
				}
			}
		}
	}
	b, err = json.Marshal(&c)
	if err != nil {
		return "", fmt.Errorf("encode enrollment: %w", err)
	}
	return string(b), nil
}

// checkClone looks for another serial number holding r's EK or
// registration ID. When it finds one it writes the audit row and returns
// the *CloneError to refuse the save with.
func checkClone(ctx context.Context, tx *wtx, now string, r *Record) (*CloneError, error) {
	var otherID int64
	var otherSerial, otherRegID, otherStation, otherLine string
	if len(r.EKPublic) > 0 {
		err := tx.QueryRowContext(ctx, `SELECT id, serial, coalesce(registration_id, ''), station, line FROM records WHERE ek_public = ? AND serial <> ?`,
			r.EKPublic, r.Serial).Scan(&otherID, &otherSerial, &otherRegID, &otherStation, &otherLine)
		switch {
		case err == nil:
			ce := &CloneError{Serial: r.Serial, OtherSerial: otherSerial, RegistrationID: otherRegID, SameEK: true,
				OtherStation: otherStation, OtherLine: otherLine}
			detail := fmt.Sprintf("board %s presented the EK of board %s (registration ID %s)%s; refused, nothing recorded for it",
				r.Serial, otherSerial, otherRegID, where(r))
			if err := audit(ctx, tx, now, otherID, r.Serial, EventClone, detail, r.Operator); err != nil {
				return nil, err
			}
			return ce, nil
		case !errors.Is(err, sql.ErrNoRows):
			return nil, fmt.Errorf("records: save board %s: look up its EK: %w", r.Serial, err)
		}
	}
	if r.RegistrationID == "" {
		return nil, nil
	}
	err := tx.QueryRowContext(ctx, `SELECT id, serial, station, line FROM records WHERE registration_id = ? AND serial <> ?`,
		r.RegistrationID, r.Serial).Scan(&otherID, &otherSerial, &otherStation, &otherLine)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("records: save board %s: look up its registration ID: %w", r.Serial, err)
	}
	ce := &CloneError{Serial: r.Serial, OtherSerial: otherSerial, RegistrationID: r.RegistrationID, SameEK: r.Attestation == AttestationTPM,
		OtherStation: otherStation, OtherLine: otherLine}
	event, detail := EventDuplicateID, fmt.Sprintf("board %s was given registration ID %s, already recorded for board %s%s; refused, nothing recorded for it",
		r.Serial, r.RegistrationID, otherSerial, where(r))
	if ce.SameEK {
		event, detail = EventClone, fmt.Sprintf("board %s presented the EK of board %s (registration ID %s, the EK's hash)%s; refused, nothing recorded for it",
			r.Serial, otherSerial, r.RegistrationID, where(r))
	}
	if err := audit(ctx, tx, now, otherID, r.Serial, event, detail, r.Operator); err != nil {
		return nil, err
	}
	return ce, nil
}

// where names the station and slot a record comes from, for audit rows.
func where(r *Record) string {
	var parts []string
	for _, p := range [][2]string{{"station", r.Station}, {"line", r.Line}, {"slot", r.Slot}, {"work order", r.WorkOrder}} {
		if p[1] != "" {
			parts = append(parts, p[0]+" "+p[1])
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " at " + strings.Join(parts, ", ")
}

// savePlan is what Save writes over a board's stored record (old; nil
// for none): the rules of Save, the same for every adapter.
type savePlan struct {
	res                                SaveResult
	id                                 int64 // old's; 0 for a new record
	enr                                sql.NullString
	state, uploadError, etag           string
	generation                         int64
	regIDChanged, mayBeInDPS, firstRun bool
	notes                              []string // for the audit row, but where
}

// planSave applies Save's rules to r (registration ID in lower case),
// its enrollment's JSON body ("" for none) and its stored record.
func planSave(r *Record, body string, old *row) savePlan {
	var res SaveResult
	var id int64
	var enr sql.NullString
	var state, uploadError, etag string
	var generation int64
	if old != nil {
		id, enr, generation = old.ID, old.enrollment, old.generation
		state, uploadError, etag = string(old.UploadState), old.UploadError, old.ETag
	}
	var notes []string
	queue := func(why string) {
		enr = sql.NullString{String: body, Valid: true}
		state, uploadError, etag = string(enroll.StatePending), "", ""
		generation++
		res.Queued = true
		notes = append(notes, why)
	}
	drop := func(why string) {
		notes = append(notes, "enrollment dropped (was "+state+"): "+why)
		enr = sql.NullString{}
		state, uploadError, etag = "", "", ""
		generation++
	}
	regIDChanged, mayBeInDPS := false, false
	// A board's first run ends here: Begin made its record, in progress
	// and with no result before; for the records it is a new board.
	firstRun := old == nil || old.Result == ResultInProgress && old.PreviousResult == ""
	res.Created, res.Updated = firstRun, !firstRun
	if old != nil {
		if old.RegistrationID != r.RegistrationID && old.RegistrationID != "" && r.RegistrationID != "" {
			regIDChanged = true
			notes = append(notes, fmt.Sprintf("registration ID changed from %s to %s", old.RegistrationID, r.RegistrationID))
		}
		if len(old.EKPublic) > 0 && len(r.EKPublic) > 0 && !bytes.Equal(old.EKPublic, r.EKPublic) {
			notes = append(notes, "EK changed")
		}
	}
	switch {
	case r.Result == ResultFailed:
		failed := "failed: " + r.Message
		if r.FailedStep != "" {
			failed += "; step: " + r.FailedStep
		}
		if r.Cause != "" {
			failed += "; cause: " + r.Cause
		}
		notes = append([]string{failed}, notes...)
		switch {
		case enr.Valid && regIDChanged:
			drop("the board no longer has the identity it is for")
		case enr.Valid:
			notes = append(notes, "enrollment kept as it was ("+state+")")
		}
	case body == "":
		if enr.Valid {
			drop("nothing to enroll")
		} else {
			notes = append(notes, "nothing to enroll")
		}
	case !enr.Valid:
		queue("enrollment queued")
	case enr.String != body:
		// In flight now, or put back to pending by Recover after a flight
		// whose outcome never came: either way DPS may hold the old one.
		wasInFlight := state == string(enroll.StateInFlight) || old != nil && old.flightLost
		queue("enrollment changed" + changedFields(body, enr.String) + ", queued again")
		// The old one is out with the uploader, or was when a station
		// died: DPS may hold it without the store ever learning so. The
		// new one replaces whatever DPS holds rather than meet the old
		// one there as a conflict (see queue.go).
		mayBeInDPS = wasInFlight && !regIDChanged
		if mayBeInDPS {
			notes = append(notes, "the old one was in flight (or its upload cut short): the new one replaces it")
		}
	case state == string(enroll.StateFailed) || state == string(enroll.StateConflict):
		queue("enrollment unchanged, was " + state + " (" + uploadError + "), queued again")
	default:
		notes = append(notes, "enrollment unchanged ("+state+")")
	}
	if r.Result == ResultPassed {
		notes = append([]string{"passed"}, notes...)
	}

	return savePlan{res: res, id: id, enr: enr, state: state, uploadError: uploadError, etag: etag, generation: generation,
		regIDChanged: regIDChanged, mayBeInDPS: mayBeInDPS, firstRun: firstRun, notes: notes}
}

// upsert writes r (registration ID in lower case) as a new record (old
// nil) or over old, queueing its enrollment by the rules of Save, with its
// audit row.
func upsert(ctx context.Context, tx *wtx, now string, r *Record, body string, old *row) (SaveResult, error) {
	p := planSave(r, body, old)
	res, id, enr, state, uploadError, etag, generation := p.res, p.id, p.enr, p.state, p.uploadError, p.etag, p.generation
	regIDChanged, mayBeInDPS, firstRun, notes := p.regIDChanged, p.mayBeInDPS, p.firstRun, p.notes

	var seq any // keeps the place in the queue unless queued now
	if res.Queued {
		var next int64
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(queue_seq), 0) + 1 FROM records`).Scan(&next); err != nil {
			return res, fmt.Errorf("queue: %w", err)
		}
		seq = next
	}
	var rid, notAfter, cause, failedStep any // cause and step: NULL unless failed
	if r.Result == ResultFailed {
		if r.Cause != "" {
			cause = r.Cause
		}
		if r.FailedStep != "" {
			failedStep = r.FailedStep
		}
	}
	if r.RegistrationID != "" {
		rid = r.RegistrationID
	}
	if !r.CertNotAfter.IsZero() {
		notAfter = formatTime(r.CertNotAfter)
	}
	args := []any{r.Model, r.HW, r.Firmware, r.Attestation, rid, r.DeviceID, nilIfEmpty(r.EKPublic), nilIfEmpty(r.EKCertificate),
		r.EKCertStatus, r.EKFingerprint, r.CertificateChain, r.CertSerial, notAfter, nilIfEmpty(r.ConfigSHA256), r.ConfigPath,
		r.Station, r.Line, r.Slot, r.Operator, r.WorkOrder, r.Result, r.Message,
		enr, state, uploadError, etag, generation, seq, now, cause, failedStep}
	// A board passed again is a new run: the registration of an earlier
	// one no longer says anything about it. (A failed run keeps it: the
	// failure may be the registration itself, recorded just before.)
	newRun := r.Result == ResultPassed
	if old == nil {
		q, err := tx.ExecContext(ctx, `INSERT INTO records (model, hw, firmware, attestation, registration_id, device_id, ek_public,
			ek_certificate, ek_cert_status, ek_fingerprint, certificate_chain, cert_serial, cert_not_after, config_sha256, config_path,
			station, line, slot, operator, work_order, result, message,
			enrollment, upload_state, upload_error, etag, generation, queue_seq, updated_at, cause, failed_step, serial, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, coalesce(?, 0), ?, ?, ?, ?, ?)`,
			append(args, r.Serial, now)...)
		if err != nil {
			return res, fmt.Errorf("insert: %w", err)
		}
		if id, err = q.LastInsertId(); err != nil {
			return res, fmt.Errorf("insert: %w", err)
		}
	} else {
		_, err := tx.ExecContext(ctx, `UPDATE records SET model = ?, hw = ?, firmware = ?, attestation = ?, registration_id = ?,
			device_id = ?, ek_public = ?, ek_certificate = ?, ek_cert_status = ?, ek_fingerprint = ?, certificate_chain = ?,
			cert_serial = ?, cert_not_after = ?, config_sha256 = ?, config_path = ?,
			station = ?, line = ?, slot = ?, operator = ?, work_order = ?, result = ?, previous_result = '', message = ?,
			enrollment = ?, upload_state = ?, upload_error = ?, etag = ?, generation = ?, queue_seq = coalesce(?, queue_seq),
			updated_at = ?, cause = ?, failed_step = ?, replaces = CASE WHEN ? THEN '' WHEN ? AND replaces = '' THEN '*' ELSE replaces END,
			registration_state = CASE WHEN ? THEN '' ELSE registration_state END,
			assigned_hub = CASE WHEN ? THEN '' ELSE assigned_hub END,
			registered_at = CASE WHEN ? THEN NULL ELSE registered_at END,
			registration_error = CASE WHEN ? THEN '' ELSE registration_error END,
			issued_chain = CASE WHEN ? THEN '' ELSE issued_chain END WHERE id = ?`,
			append(args, regIDChanged, mayBeInDPS, newRun, newRun, newRun, newRun, newRun, id)...)
		if err != nil {
			return res, fmt.Errorf("update: %w", err)
		}
	}
	event := EventCreated
	if !firstRun {
		event = EventUpdated
	}
	if w := where(r); w != "" {
		notes = append(notes, strings.TrimSpace(w))
	}
	detail := strings.Join(notes, "; ")
	if err := audit(ctx, tx, now, id, r.Serial, event, detail, r.Operator); err != nil {
		return res, err
	}
	return res, nil
}

// changedFields names the fields in which two stored enrollments differ,
// as " (a, b)", or "" when enroll.Differences finds none to name.
func changedFields(now, before string) string {
	var a, b enroll.Enrollment
	if json.Unmarshal([]byte(now), &a) != nil || json.Unmarshal([]byte(before), &b) != nil {
		return ""
	}
	d := enroll.Differences(&a, &b)
	if len(d) == 0 {
		return ""
	}
	return " (" + strings.Join(d, ", ") + ")"
}

func nilIfEmpty(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// SetRegistration records how the board's registration with DPS went, on
// its record (found by serial number), with an audit row. A device ID DPS
// assigned fills the record's when it had none. ErrNotFound if the board
// has no record.
func (s *Store) SetRegistration(ctx context.Context, serial string, reg Registration, operator string) error {
	if reg.State == "" {
		return fmt.Errorf("records: registration of %s: no state", serial)
	}
	return s.write(ctx, "record the registration of "+serial, func(ctx context.Context, tx *wtx) error {
		var id int64
		err := tx.QueryRowContext(ctx, `SELECT id FROM records WHERE serial = ?`, serial).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("records: registration of %s: %w", serial, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("records: registration of %s: %w", serial, err)
		}
		var at any
		if !reg.At.IsZero() {
			at = formatTime(reg.At)
		}
		now := formatTime(s.now())
		if _, err := tx.ExecContext(ctx, `UPDATE records SET registration_state = ?, assigned_hub = ?, registered_at = ?,
			registration_error = ?, device_id = CASE WHEN device_id = '' THEN ? ELSE device_id END, updated_at = ?,
			issued_chain = ? WHERE id = ?`,
			reg.State, reg.AssignedHub, at, reg.Error, reg.DeviceID, now, reg.IssuedChain, id); err != nil {
			return fmt.Errorf("records: registration of %s: %w", serial, err)
		}
		detail := reg.State
		if reg.AssignedHub != "" {
			detail += " to " + reg.AssignedHub + " as " + reg.DeviceID
		}
		if reg.Error != "" {
			detail += ": " + reg.Error
		}
		return audit(ctx, tx, now, id, serial, EventRegistration, detail, operator)
	})
}

// SetAside appends an EventSetAside audit row for a board the operator
// skipped and took off its slot (the window's Skip): the row names the
// slot. The record itself, its result included, is not changed. The board
// is found by its exact serial number; ErrNotFound if it has no record.
// Safe for concurrent use.
func (s *Store) SetAside(ctx context.Context, serial, slot, operator string) error {
	return s.write(ctx, "set aside "+serial, func(ctx context.Context, tx *wtx) error {
		var id int64
		var result string
		err := tx.QueryRowContext(ctx, `SELECT id, result FROM records WHERE serial = ?`, serial).Scan(&id, &result)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("records: set aside board %q: %w", serial, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("records: set aside board %s: %w", serial, err)
		}
		detail := "set aside by the operator, result " + result
		if slot != "" {
			detail = "taken off slot " + slot + " and set aside by the operator, result " + result
		}
		return audit(ctx, tx, formatTime(s.now()), id, serial, EventSetAside, detail, operator)
	})
}
