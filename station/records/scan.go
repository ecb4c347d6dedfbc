package records

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"zerotouch/enroll"
)

// recordColumns are the columns scanRecord reads, in its order.
const recordColumns = `id, serial, model, hw, firmware, attestation, coalesce(registration_id, ''), device_id,
	ek_public, ek_certificate, ek_cert_status, ek_fingerprint, certificate_chain, cert_serial, cert_not_after,
	config_sha256, config_path, station, line, slot, operator, work_order, result, previous_result, message,
	enrollment, upload_state, upload_error, etag, generation, created_at, updated_at,
	registration_state, assigned_hub, registered_at, registration_error, coalesce(cause, ''), coalesce(failed_step, ''),
	issued_chain`

// row is a stored record with the columns Record does not show.
type row struct {
	Record
	enrollment sql.NullString // as stored
	generation int64
	// flightLost: the enrollment is pending because Recover put it back
	// from a flight whose outcome never came; it may be in DPS.
	flightLost bool
}

// lastUploadEventSQL is the latest upload event of record ?1, with the
// events as ?2 to ?5 (Claimed, Settled, Recovered, Stale); the caller
// writes the placeholders in its database's style.
func lastUploadEventSQL(ph [5]string) string {
	return `SELECT event FROM audit WHERE record_id = ` + ph[0] + ` AND event IN (` + ph[1] + `, ` + ph[2] + `, ` + ph[3] + `, ` + ph[4] + `)
		ORDER BY id DESC LIMIT 1`
}

var uploadEvents = []any{EventUploadClaimed, EventUploadSettled, EventUploadRecovered, EventUploadStale}

// noteFlightLost sets old.flightLost when its enrollment is pending because
// Recover put it back (its latest upload event), for either adapter:
// queryRow runs a query in the caller's transaction with placeholders ph,
// and noRows is its driver's "no rows".
func noteFlightLost(old *row, ph [5]string, queryRow func(q string, args ...any) scanner, noRows error) error {
	if old == nil || old.UploadState != enroll.StatePending {
		return nil
	}
	var ev string
	err := queryRow(lastUploadEventSQL(ph), append([]any{old.ID}, uploadEvents...)...).Scan(&ev)
	if err != nil && !errors.Is(err, noRows) {
		return fmt.Errorf("read its upload events: %w", err)
	}
	old.flightLost = ev == EventUploadRecovered
	return nil
}

type scanner interface{ Scan(dest ...any) error }

// scanRecord reads one row of recordColumns.
func scanRecord(sc scanner) (*row, error) {
	var r row
	var notAfter, registeredAt sql.NullString
	var created, updated, state string
	var reg Registration
	err := sc.Scan(&r.ID, &r.Serial, &r.Model, &r.HW, &r.Firmware, &r.Attestation, &r.RegistrationID, &r.DeviceID,
		&r.EKPublic, &r.EKCertificate, &r.EKCertStatus, &r.EKFingerprint, &r.CertificateChain, &r.CertSerial, &notAfter,
		&r.ConfigSHA256, &r.ConfigPath, &r.Station, &r.Line, &r.Slot, &r.Operator, &r.WorkOrder, &r.Result, &r.PreviousResult, &r.Message,
		&r.enrollment, &state, &r.UploadError, &r.ETag, &r.generation, &created, &updated,
		&reg.State, &reg.AssignedHub, &registeredAt, &reg.Error, &r.Cause, &r.FailedStep,
		&reg.IssuedChain)
	if err != nil {
		return nil, err
	}
	r.UploadState = enroll.State(state)
	if r.CreatedAt, err = parseTime(created); err != nil {
		return nil, fmt.Errorf("record %d: %w", r.ID, err)
	}
	if r.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, fmt.Errorf("record %d: %w", r.ID, err)
	}
	if notAfter.Valid {
		if r.CertNotAfter, err = parseTime(notAfter.String); err != nil {
			return nil, fmt.Errorf("record %d: %w", r.ID, err)
		}
	}
	if reg.State != "" {
		if registeredAt.Valid {
			if reg.At, err = parseTime(registeredAt.String); err != nil {
				return nil, fmt.Errorf("record %d: %w", r.ID, err)
			}
		}
		reg.DeviceID = r.DeviceID
		r.Registration = &reg
	}
	if r.enrollment.Valid {
		var e enroll.Enrollment
		if err := json.Unmarshal([]byte(r.enrollment.String), &e); err != nil {
			return nil, fmt.Errorf("record %d (board %s): its stored enrollment is damaged: %w", r.ID, r.Serial, err)
		}
		r.Enrollment = &e
	}
	return &r, nil
}
