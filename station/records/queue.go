package records

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"zerotouch/enroll"
)

// The upload queue is the records themselves: a record with an
// enrollment has an upload state (enroll.State). Claim, Settle and
// Recover implement enroll.Queue for the station's enroll.Uploader; each
// is one transaction that writes an audit row for every record whose
// upload state it changes.
//
// A board may be saved again while its enrollment is in flight. If the
// enrollment changed, Save queues the new one (pending) and bumps the
// record's generation; the outcome the uploader later reports is for the
// old one and must not settle the new. So Claim copies the record's
// generation into claimed_generation, and:
//
//   - Claim skips a record whose claimed_generation is set (a claim is
//     out on it): two claims of one registration ID are never out at
//     once, so an outcome, which names only the registration ID, always
//     belongs to the one claim out;
//   - Settle applies an outcome only while the record is still in flight
//     with generation equal to claimed_generation; otherwise the outcome
//     was for a replaced enrollment: it is dropped with an
//     EventUploadStale audit row. Either way the claim is cleared, so the
//     new enrollment is claimed next;
//   - Recover, at the start of an upload run, puts in-flight records back
//     to pending and clears every claim.
//
// Once DPS has taken an enrollment of a record (an outcome uploaded, for
// the current enrollment or a replaced one), the record remembers it
// (column replaces: DPS's etag, or "*"), and Claim hands out the record's
// later enrollments with that ETag: the uploader then sends them with bulk
// mode update, which replaces what DPS holds, instead of create, which
// DPS would refuse and the uploader would settle as a conflict. A new
// registration ID starts again with create.
//
// An enrollment in flight may reach DPS without the store learning it:
// the station dies before the outcome is settled (SIGKILL, power), or
// the uploader is stopped mid-request. So Save, replacing an in-flight
// enrollment with a changed one, marks the record replaces "*" too: the
// new one goes with mode update, which creates it or replaces the old
// one, whichever DPS holds. Should the old one's outcome come after all
// and be a conflict (a create DPS refused: it holds an enrollment not
// known to be ours), Settle clears the mark, so the new one is created
// and meets that enrollment as a conflict too, for a person to resolve.
// Recover makes a crashed claim pending again and says so in the audit
// ("upload recovered"); while that is the record's latest upload event,
// Save treats the enrollment as in flight: a changed one replaces
// whatever DPS holds, as above.

// Recover implements enroll.Queue: enrollments an earlier upload left in
// flight go back to pending, and claims still out are cleared. It returns
// how many were in flight. Safe for concurrent use, but an Uploader calls
// it once before its first Claim, with no other Uploader running.
func (s *Store) Recover(ctx context.Context) (int, error) {
	var n int64
	err := s.write(ctx, "recover the upload queue", func(ctx context.Context, tx *wtx) error {
		now := formatTime(s.now())
		if _, err := tx.ExecContext(ctx, `INSERT INTO audit (time, record_id, serial, event, detail, operator)
			SELECT ?, id, serial, ?, 'in flight when an upload stopped: pending again (the uploader reads DPS back before it could enroll twice)', ''
			FROM records WHERE upload_state = ?`, now, EventUploadRecovered, enroll.StateInFlight); err != nil {
			return fmt.Errorf("records: recover the upload queue: %w", err)
		}
		res, err := tx.ExecContext(ctx, `UPDATE records SET upload_state = ? WHERE upload_state = ?`, enroll.StatePending, enroll.StateInFlight)
		if err != nil {
			return fmt.Errorf("records: recover the upload queue: %w", err)
		}
		n, _ = res.RowsAffected()
		if _, err := tx.ExecContext(ctx, `UPDATE records SET claimed_generation = NULL WHERE claimed_generation IS NOT NULL`); err != nil {
			return fmt.Errorf("records: recover the upload queue: %w", err)
		}
		return nil
	})
	if err == nil {
		s.claims.clear()
	}
	return int(n), err
}

// Claim implements enroll.Queue: it marks up to n pending enrollments in
// flight, oldest queued first, and returns them. Only a board that passed
// is enrolled: the pending enrollment of a board whose run failed or is in
// progress is held (Counts says StateHeld) until it passes again, for the
// board may no longer hold the key it is for. None means nothing is
// pending that can be claimed now. Safe for concurrent use.
func (s *Store) Claim(ctx context.Context, n int) ([]enroll.Enrollment, error) {
	if n <= 0 {
		return nil, nil
	}
	var es []enroll.Enrollment
	var ids []int64
	err := s.write(ctx, "claim enrollments", func(ctx context.Context, tx *wtx) error {
		es, ids = nil, nil // a second run starts afresh
		rows, err := tx.QueryContext(ctx, `SELECT id, serial, enrollment, generation, replaces FROM records
			WHERE upload_state = ? AND claimed_generation IS NULL AND result = ? ORDER BY queue_seq LIMIT ?`, enroll.StatePending, ResultPassed, n)
		if err != nil {
			return fmt.Errorf("records: claim enrollments: %w", err)
		}
		type claim struct {
			id         int64
			serial     string
			generation int64
			replaces   string
		}
		var claims []claim
		for rows.Next() {
			var c claim
			var body string
			if err := rows.Scan(&c.id, &c.serial, &body, &c.generation, &c.replaces); err != nil {
				rows.Close()
				return fmt.Errorf("records: claim enrollments: %w", err)
			}
			var e enroll.Enrollment
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				rows.Close()
				return fmt.Errorf("records: claim enrollments: board %s: its stored enrollment is damaged: %w", c.serial, err)
			}
			e.ETag = c.replaces // non-empty: the uploader replaces DPS's (mode update)
			es = append(es, e)
			claims = append(claims, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("records: claim enrollments: %w", err)
		}
		now := formatTime(s.now())
		for _, c := range claims {
			if _, err := tx.ExecContext(ctx, `UPDATE records SET upload_state = ?, claimed_generation = generation WHERE id = ?`,
				enroll.StateInFlight, c.id); err != nil {
				return fmt.Errorf("records: claim board %s: %w", c.serial, err)
			}
			detail := fmt.Sprintf("enrollment %d in flight, to be created", c.generation)
			if c.replaces != "" {
				detail = fmt.Sprintf("enrollment %d in flight, to replace the one DPS holds", c.generation)
			}
			if err := audit(ctx, tx, now, c.id, c.serial, EventUploadClaimed, detail, ""); err != nil {
				return fmt.Errorf("records: claim board %s: %w", c.serial, err)
			}
			ids = append(ids, c.id)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.claims.add(ids...)
	return es, nil
}

// Settle implements enroll.Queue: it records the outcomes of claimed
// enrollments, each found by its registration ID (case-insensitively).
// An outcome for a registration ID no record holds any more, or for an
// enrollment replaced since it was claimed, is dropped (see above). An
// outcome state other than pending, uploaded, failed or conflict is an
// error wrapping ErrInvalid, and nothing is settled. Safe for concurrent
// use.
func (s *Store) Settle(ctx context.Context, outs []enroll.Outcome) error {
	for _, o := range outs {
		switch o.State {
		case enroll.StatePending, enroll.StateUploaded, enroll.StateFailed, enroll.StateConflict:
		default:
			return fmt.Errorf("records: settle %s: %w: outcome state %q", o.RegistrationID, ErrInvalid, o.State)
		}
	}
	var ids []int64
	err := s.write(ctx, "settle uploads", func(ctx context.Context, tx *wtx) error {
		now := formatTime(s.now())
		ids = ids[:0]
		for _, o := range outs {
			id, err := settle(ctx, tx, now, o)
			if err != nil {
				return fmt.Errorf("records: settle %s: %w", o.RegistrationID, err)
			}
			if id != 0 {
				ids = append(ids, id)
			}
		}
		return nil
	})
	if err == nil {
		s.claims.remove(ids...)
	}
	return err
}

// settle applies o and returns the ID of the record whose claim it
// cleared (0 for none).
func settle(ctx context.Context, tx *wtx, now string, o enroll.Outcome) (int64, error) {
	var id, generation int64
	var serial, state string
	var claimed sql.NullInt64
	err := tx.QueryRowContext(ctx, `SELECT id, serial, upload_state, generation, claimed_generation FROM records WHERE registration_id = ?`,
		strings.ToLower(o.RegistrationID)).Scan(&id, &serial, &state, &generation, &claimed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return 0, nil // the board has another registration ID now
	case err != nil:
		return 0, err
	case !claimed.Valid:
		return 0, nil // no claim out: settled already, or recovered
	}
	replaces := "" // unchanged unless DPS took it
	if o.State == enroll.StateUploaded {
		replaces = cmp.Or(o.ETag, "*")
	}
	if state != string(enroll.StateInFlight) || claimed.Int64 != generation {
		// DPS may have taken the old enrollment: the new one replaces it.
		// A conflict says DPS holds one not known to be ours: the new one
		// is created, to meet it too (see above).
		var err error
		if o.State == enroll.StateConflict {
			_, err = tx.ExecContext(ctx, `UPDATE records SET claimed_generation = NULL, replaces = '' WHERE id = ?`, id)
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE records SET claimed_generation = NULL, replaces = coalesce(nullif(?, ''), replaces) WHERE id = ?`,
				replaces, id)
		}
		if err != nil {
			return 0, err
		}
		detail := fmt.Sprintf("DPS outcome %s for enrollment %d, replaced since it was claimed; enrollment %d is %s",
			describe(o), claimed.Int64, generation, orNone(state))
		return id, audit(ctx, tx, now, id, serial, EventUploadStale, detail, "")
	}
	if _, err := tx.ExecContext(ctx, `UPDATE records SET upload_state = ?, upload_error = ?, etag = ?, claimed_generation = NULL,
		replaces = coalesce(nullif(?, ''), replaces) WHERE id = ?`, o.State, o.Error, o.ETag, replaces, id); err != nil {
		return 0, err
	}
	return id, audit(ctx, tx, now, id, serial, EventUploadSettled, fmt.Sprintf("enrollment %d %s", generation, describe(o)), "")
}

func describe(o enroll.Outcome) string {
	s := string(o.State)
	if o.Error != "" {
		s += ": " + o.Error
	}
	return s
}

func orNone(state string) string {
	if state == "" {
		return "gone (nothing to enroll)"
	}
	return state
}
