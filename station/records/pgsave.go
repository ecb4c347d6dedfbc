package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"zerotouch/enroll"
)

func decodeEnrollment(id int64, serial, body string, r *Record) error {
	var e enroll.Enrollment
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		return fmt.Errorf("record %d (board %s): its stored enrollment is damaged: %w", id, serial, err)
	}
	r.Enrollment = &e
	return nil
}

// Save records a board's outcome by the rules of Store.Save, factory-wide:
// the EK or registration ID of a board recorded by any station is refused
// (*CloneError, naming the station and line that hold it). Two stations
// saving the same EK at once: the second to commit is refused. Safe for
// concurrent use.
func (s *PGStore) Save(ctx context.Context, r *Record) (SaveResult, error) {
	var res SaveResult
	body, err := checkRecord(r)
	if err != nil {
		return res, err
	}
	var refused *CloneError
	var saved *row
	err = s.tx(ctx, "save board "+r.Serial, true, func(ctx context.Context, tx pgx.Tx) error {
		refused, saved, res = nil, nil, SaveResult{}
		now := s.clock()
		old, err := pgScanRecord(tx.QueryRow(ctx, `SELECT `+pgRecordColumns+` FROM records WHERE serial = $1 FOR UPDATE`, r.Serial))
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			old = nil
		case err != nil:
			return fmt.Errorf("records: save board %s: read its record: %w", r.Serial, err)
		}
		if err := noteFlightLost(old, pgPlaceholders5, pgQueryRow(ctx, tx), pgx.ErrNoRows); err != nil {
			return fmt.Errorf("records: save board %s: %w", r.Serial, err)
		}
		m := *r
		m.RegistrationID = strings.ToLower(m.RegistrationID)
		if m.Result == ResultFailed && old != nil {
			keepStored(&m, &old.Record)
		}
		refused, err = pgCheckClone(ctx, tx, now, &m)
		if err != nil || refused != nil {
			return err
		}
		res, err = pgUpsert(ctx, tx, now, &m, body, old)
		if err != nil {
			return fmt.Errorf("records: save board %s: %w", r.Serial, err)
		}
		saved, err = pgScanRecord(tx.QueryRow(ctx, `SELECT `+pgRecordColumns+` FROM records WHERE serial = $1`, r.Serial))
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

// pgCheckClone is checkClone on PostgreSQL.
func pgCheckClone(ctx context.Context, tx pgx.Tx, now time.Time, r *Record) (*CloneError, error) {
	var otherID int64
	var otherSerial, otherRegID, otherStation, otherLine string
	if len(r.EKPublic) > 0 {
		err := tx.QueryRow(ctx, `SELECT id, serial, coalesce(registration_id, ''), station, line FROM records WHERE ek_public = $1 AND serial <> $2`,
			r.EKPublic, r.Serial).Scan(&otherID, &otherSerial, &otherRegID, &otherStation, &otherLine)
		switch {
		case err == nil:
			ce := &CloneError{Serial: r.Serial, OtherSerial: otherSerial, RegistrationID: otherRegID, SameEK: true,
				OtherStation: otherStation, OtherLine: otherLine}
			detail := fmt.Sprintf("board %s presented the EK of board %s (registration ID %s)%s%s; refused, nothing recorded for it",
				r.Serial, otherSerial, otherRegID, ce.holder(), where(r))
			if err := pgAudit(ctx, tx, now, otherID, r.Serial, EventClone, detail, r.Operator); err != nil {
				return nil, err
			}
			return ce, nil
		case !errors.Is(err, pgx.ErrNoRows):
			return nil, fmt.Errorf("records: save board %s: look up its EK: %w", r.Serial, err)
		}
	}
	if r.RegistrationID == "" {
		return nil, nil
	}
	err := tx.QueryRow(ctx, `SELECT id, serial, station, line FROM records WHERE registration_id = $1 AND serial <> $2`,
		r.RegistrationID, r.Serial).Scan(&otherID, &otherSerial, &otherStation, &otherLine)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("records: save board %s: look up its registration ID: %w", r.Serial, err)
	}
	ce := &CloneError{Serial: r.Serial, OtherSerial: otherSerial, RegistrationID: r.RegistrationID, SameEK: r.Attestation == AttestationTPM,
		OtherStation: otherStation, OtherLine: otherLine}
	event, detail := EventDuplicateID, fmt.Sprintf("board %s was given registration ID %s, already recorded for board %s%s%s; refused, nothing recorded for it",
		r.Serial, r.RegistrationID, otherSerial, ce.holder(), where(r))
	if ce.SameEK {
		event, detail = EventClone, fmt.Sprintf("board %s presented the EK of board %s (registration ID %s, the EK's hash)%s%s; refused, nothing recorded for it",
			r.Serial, otherSerial, r.RegistrationID, ce.holder(), where(r))
	}
	if err := pgAudit(ctx, tx, now, otherID, r.Serial, event, detail, r.Operator); err != nil {
		return nil, err
	}
	return ce, nil
}

func orNil[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}

func bytesOrNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// pgUpsert is upsert on PostgreSQL: the same plan (planSave), written.
func pgUpsert(ctx context.Context, tx pgx.Tx, now time.Time, r *Record, body string, old *row) (SaveResult, error) {
	p := planSave(r, body, old)
	var enr *string
	if p.enr.Valid {
		enr = &p.enr.String
	}
	var cause, failedStep *string // NULL unless failed
	if r.Result == ResultFailed {
		cause, failedStep = orNil(r.Cause), orNil(r.FailedStep)
	}
	var notAfter *time.Time
	if !r.CertNotAfter.IsZero() {
		t := r.CertNotAfter.UTC()
		notAfter = &t
	}
	args := []any{r.Model, r.HW, r.Firmware, r.Attestation, orNil(r.RegistrationID), r.DeviceID, bytesOrNil(r.EKPublic), bytesOrNil(r.EKCertificate),
		r.EKCertStatus, r.EKFingerprint, r.CertificateChain, r.CertSerial, notAfter, bytesOrNil(r.ConfigSHA256), r.ConfigPath,
		r.Station, r.Line, r.Slot, r.Operator, r.WorkOrder, r.Result, r.Message,
		enr, p.state, p.uploadError, p.etag, p.generation, p.res.Queued, now, cause, failedStep}
	newRun := r.Result == ResultPassed
	id := p.id
	if old == nil {
		err := tx.QueryRow(ctx, `INSERT INTO records (model, hw, firmware, attestation, registration_id, device_id, ek_public,
			ek_certificate, ek_cert_status, ek_fingerprint, certificate_chain, cert_serial, cert_not_after, config_sha256, config_path,
			station, line, slot, operator, work_order, result, message,
			enrollment, upload_state, upload_error, etag, generation, queue_seq, updated_at, cause, failed_step, serial, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22,
			$23, $24, $25, $26, $27, CASE WHEN $28 THEN nextval('records_queue_seq') ELSE 0 END, $29, $30, $31, $32, $29)
			RETURNING id`, append(args, r.Serial)...).Scan(&id)
		if err != nil {
			return p.res, fmt.Errorf("insert: %w", err)
		}
	} else {
		_, err := tx.Exec(ctx, `UPDATE records SET model = $1, hw = $2, firmware = $3, attestation = $4, registration_id = $5,
			device_id = $6, ek_public = $7, ek_certificate = $8, ek_cert_status = $9, ek_fingerprint = $10, certificate_chain = $11,
			cert_serial = $12, cert_not_after = $13, config_sha256 = $14, config_path = $15,
			station = $16, line = $17, slot = $18, operator = $19, work_order = $20, result = $21, previous_result = '', message = $22,
			enrollment = $23, upload_state = $24, upload_error = $25, etag = $26, generation = $27,
			queue_seq = CASE WHEN $28 THEN nextval('records_queue_seq') ELSE queue_seq END,
			updated_at = $29, cause = $30, failed_step = $31,
			replaces = CASE WHEN $32 THEN '' WHEN $33 AND replaces = '' THEN '*' ELSE replaces END,
			registration_state = CASE WHEN $34 THEN '' ELSE registration_state END,
			assigned_hub = CASE WHEN $34 THEN '' ELSE assigned_hub END,
			registered_at = CASE WHEN $34 THEN NULL ELSE registered_at END,
			registration_error = CASE WHEN $34 THEN '' ELSE registration_error END,
			issued_chain = CASE WHEN $34 THEN '' ELSE issued_chain END WHERE id = $35`,
			append(args, p.regIDChanged, p.mayBeInDPS, newRun, id)...)
		if err != nil {
			return p.res, fmt.Errorf("update: %w", err)
		}
	}
	event := EventCreated
	if !p.firstRun {
		event = EventUpdated
	}
	notes := p.notes
	if w := where(r); w != "" {
		notes = append(notes, strings.TrimSpace(w))
	}
	if err := pgAudit(ctx, tx, now, id, r.Serial, event, strings.Join(notes, "; "), r.Operator); err != nil {
		return p.res, err
	}
	return p.res, nil
}

// Begin records that the station is about to change a board, by the
// rules of Store.Begin. It waits while the board's enrollment is in
// flight under a live lease, whichever uploader of the factory holds it
// (or until ctx ends). Safe for concurrent use.
func (s *PGStore) Begin(ctx context.Context, r *Record) error {
	if strings.TrimSpace(r.Serial) == "" {
		return fmt.Errorf("records: begin: %w: no serial number", ErrInvalid)
	}
	if !validAttestation(r.Attestation) {
		return fmt.Errorf("records: begin board %q: %w: attestation %q", r.Serial, ErrInvalid, r.Attestation)
	}
	wait := 20 * time.Millisecond
	for {
		var busy bool
		var saved *row
		err := s.tx(ctx, "begin board "+r.Serial, true, func(ctx context.Context, tx pgx.Tx) error {
			busy, saved = false, nil
			old, err := pgScanRecord(tx.QueryRow(ctx, `SELECT `+pgRecordColumns+` FROM records WHERE serial = $1 FOR UPDATE`, r.Serial))
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				old = nil
			case err != nil:
				return fmt.Errorf("records: begin board %s: read its record: %w", r.Serial, err)
			}
			if old != nil && old.UploadState == enroll.StateInFlight {
				if err := tx.QueryRow(ctx, `SELECT lease_until > now() FROM records WHERE id = $1`, old.ID).Scan(&busy); err != nil {
					return fmt.Errorf("records: begin board %s: read its claim: %w", r.Serial, err)
				}
				if busy {
					return nil
				}
			}
			if err := pgBegin(ctx, tx, s.clock(), r, old); err != nil {
				return fmt.Errorf("records: begin board %s: %w", r.Serial, err)
			}
			saved, err = pgScanRecord(tx.QueryRow(ctx, `SELECT `+pgRecordColumns+` FROM records WHERE serial = $1`, r.Serial))
			if err != nil {
				return fmt.Errorf("records: begin board %s: read it back: %w", r.Serial, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if !busy {
			*r = saved.Record
			return nil
		}
		select {
		case <-time.After(wait):
			wait = min(2*wait, time.Second)
		case <-ctx.Done():
			return fmt.Errorf("records: begin board %s: its earlier enrollment is still being uploaded: %w", r.Serial, ctx.Err())
		}
	}
}

func pgBegin(ctx context.Context, tx pgx.Tx, now time.Time, r *Record, old *row) error {
	if old == nil {
		var id int64
		err := tx.QueryRow(ctx, `INSERT INTO records (serial, model, hw, firmware, attestation, station, line, slot,
			operator, work_order, result, previous_result, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '', $12, $12)
			RETURNING id`,
			r.Serial, r.Model, r.HW, r.Firmware, r.Attestation, r.Station, r.Line, r.Slot, r.Operator, r.WorkOrder,
			ResultInProgress, now).Scan(&id)
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		return pgAudit(ctx, tx, now, id, r.Serial, EventBegun, "new board"+where(r), r.Operator)
	}
	prev, detail := old.Result, "was "+old.Result
	if old.Result == ResultInProgress {
		prev = old.PreviousResult
		detail = "the run before did not finish (the station stopped during it); the board is provisioned again"
	}
	if old.Enrollment != nil {
		detail += fmt.Sprintf("; enrollment %s, held until the board passes again", old.UploadState)
	}
	if _, err := tx.Exec(ctx, `UPDATE records SET result = $1, previous_result = $2, station = $3, line = $4, slot = $5,
		operator = $6, work_order = $7, updated_at = $8 WHERE id = $9`,
		ResultInProgress, prev, r.Station, r.Line, r.Slot, r.Operator, r.WorkOrder, now, old.ID); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	return pgAudit(ctx, tx, now, old.ID, r.Serial, EventBegun, detail+where(r), r.Operator)
}

// InProgress returns the records left in progress, most recent first (see
// Store.InProgress). Safe for concurrent use.
func (s *PGStore) InProgress(ctx context.Context) ([]Record, error) {
	return s.List(ctx, Filter{Result: ResultInProgress})
}

// SetRegistration records how the board's registration with DPS went (see
// Store.SetRegistration). ErrNotFound if the board has no record.
func (s *PGStore) SetRegistration(ctx context.Context, serial string, reg Registration, operator string) error {
	if reg.State == "" {
		return fmt.Errorf("records: registration of %s: no state", serial)
	}
	return s.tx(ctx, "record the registration of "+serial, false, func(ctx context.Context, tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `SELECT id FROM records WHERE serial = $1 FOR UPDATE`, serial).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("records: registration of %s: %w", serial, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("records: registration of %s: %w", serial, err)
		}
		var at *time.Time
		if !reg.At.IsZero() {
			t := reg.At.UTC()
			at = &t
		}
		now := s.clock()
		if _, err := tx.Exec(ctx, `UPDATE records SET registration_state = $1, assigned_hub = $2, registered_at = $3,
			registration_error = $4, device_id = CASE WHEN device_id = '' THEN $5 ELSE device_id END, updated_at = $6,
			issued_chain = $8 WHERE id = $7`,
			reg.State, reg.AssignedHub, at, reg.Error, reg.DeviceID, now, id, reg.IssuedChain); err != nil {
			return fmt.Errorf("records: registration of %s: %w", serial, err)
		}
		detail := reg.State
		if reg.AssignedHub != "" {
			detail += " to " + reg.AssignedHub + " as " + reg.DeviceID
		}
		if reg.Error != "" {
			detail += ": " + reg.Error
		}
		return pgAudit(ctx, tx, now, id, serial, EventRegistration, detail, operator)
	})
}

// SetAside appends an EventSetAside audit row for a board the operator
// skipped (see Store.SetAside). ErrNotFound if it has no record.
func (s *PGStore) SetAside(ctx context.Context, serial, slot, operator string) error {
	return s.tx(ctx, "set aside "+serial, false, func(ctx context.Context, tx pgx.Tx) error {
		var id int64
		var result string
		err := tx.QueryRow(ctx, `SELECT id, result FROM records WHERE serial = $1`, serial).Scan(&id, &result)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("records: set aside board %q: %w", serial, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("records: set aside board %s: %w", serial, err)
		}
		detail := "set aside by the operator, result " + result
		if slot != "" {
			detail = "taken off slot " + slot + " and set aside by the operator, result " + result
		}
		return pgAudit(ctx, tx, s.clock(), id, serial, EventSetAside, detail, operator)
	})
}

// pgPlaceholders5 are PostgreSQL's first five placeholders.
var pgPlaceholders5 = [5]string{"$1", "$2", "$3", "$4", "$5"}

// pgQueryRow runs a one-row query in tx, for helpers both adapters share.
func pgQueryRow(ctx context.Context, tx pgx.Tx) func(q string, args ...any) scanner {
	return func(q string, args ...any) scanner { return tx.QueryRow(ctx, q, args...) }
}
