package records

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"

	"zerotouch/enroll"
)

// Begin records that the station is about to change a board: before its
// first write to the board (firmware, a key, its configuration), so that
// a station that dies mid-run leaves no record saying passed for a board
// it was changing. r names the board (Serial, and Attestation for a board
// new to the records) and where it runs (Model, HW, Firmware, Station,
// Line, Slot, Operator, WorkOrder); other fields are ignored.
//
//   - A board without a record gets one, with result ResultInProgress.
//   - A recorded board's record moves to ResultInProgress, its earlier
//     result kept in PreviousResult, its identity and enrollment kept as
//     they were, for the audit and for a run that fails before it reads
//     them again. Its enrollment is held: Claim does not hand it out
//     until the board passes again.
//   - A record already in progress (a run that never ended: the station
//     stopped) stays so, its PreviousResult kept; the audit row says the
//     earlier run was interrupted.
//
// Only Save ends the run: passed (a verified commit) or failed.
//
// An enrollment of the board that this Store handed to the uploader and
// whose outcome is not settled yet may be on its way to DPS: Begin waits
// for it to settle (or ctx to end) before it marks the board, so that no
// enrollment reaches DPS for a key the board is about to replace.
//
// A record without a serial number or with an unknown attestation is an
// error wrapping ErrInvalid. On success *r is the record as stored.
// Safe for concurrent use.
func (s *Store) Begin(ctx context.Context, r *Record) error {
	if strings.TrimSpace(r.Serial) == "" {
		return fmt.Errorf("records: begin: %w: no serial number", ErrInvalid)
	}
	if !validAttestation(r.Attestation) {
		return fmt.Errorf("records: begin board %q: %w: attestation %q", r.Serial, ErrInvalid, r.Attestation)
	}
	for {
		changed := s.claims.changed()
		var busy bool
		var saved *row
		err := s.write(ctx, "begin board "+r.Serial, func(ctx context.Context, tx *wtx) error {
			busy, saved = false, nil
			old, err := scanRecord(tx.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM records WHERE serial = ?`, r.Serial))
			switch {
			case errors.Is(err, sql.ErrNoRows):
				old = nil
			case err != nil:
				return fmt.Errorf("records: begin board %s: read its record: %w", r.Serial, err)
			}
			if old != nil && old.UploadState == enroll.StateInFlight && s.claims.has(old.ID) {
				busy = true
				return nil
			}
			if err := begin(ctx, tx, formatTime(s.now()), r, old); err != nil {
				return fmt.Errorf("records: begin board %s: %w", r.Serial, err)
			}
			saved, err = scanRecord(tx.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM records WHERE serial = ?`, r.Serial))
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
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("records: begin board %s: its earlier enrollment is still being uploaded: %w", r.Serial, ctx.Err())
		}
	}
}

func begin(ctx context.Context, tx *wtx, now string, r *Record, old *row) error {
	if old == nil {
		q, err := tx.ExecContext(ctx, `INSERT INTO records (serial, model, hw, firmware, attestation, station, line, slot,
			operator, work_order, result, previous_result, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?)`,
			r.Serial, r.Model, r.HW, r.Firmware, r.Attestation, r.Station, r.Line, r.Slot, r.Operator, r.WorkOrder,
			ResultInProgress, now, now)
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		id, err := q.LastInsertId()
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		return audit(ctx, tx, now, id, r.Serial, EventBegun, "new board"+where(r), r.Operator)
	}
	prev, detail := old.Result, "was "+old.Result
	if old.Result == ResultInProgress {
		prev = old.PreviousResult
		detail = "the run before did not finish (the station stopped during it); the board is provisioned again"
	}
	if old.Enrollment != nil {
		detail += fmt.Sprintf("; enrollment %s, held until the board passes again", old.UploadState)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE records SET result = ?, previous_result = ?, station = ?, line = ?, slot = ?,
		operator = ?, work_order = ?, updated_at = ? WHERE id = ?`,
		ResultInProgress, prev, r.Station, r.Line, r.Slot, r.Operator, r.WorkOrder, now, old.ID); err != nil {
		return fmt.Errorf("update: %w", err)
	}
	return audit(ctx, tx, now, old.ID, r.Serial, EventBegun, detail+where(r), r.Operator)
}

// InProgress returns the records left in progress, most recent first:
// boards a station began to change and never finished (it stopped, or
// the power went). Each must be provisioned again before it ships. Safe
// for concurrent use.
func (s *Store) InProgress(ctx context.Context) ([]Record, error) {
	return s.List(ctx, Filter{Result: ResultInProgress})
}

// liveClaims are the records whose enrollments this Store handed to its
// uploader (Claim) and has not yet seen settled or recovered: their
// outcome may still reach DPS. The zero value is empty.
type liveClaims struct {
	mu   sync.Mutex
	ids  map[int64]bool
	wake chan struct{} // closed, and replaced, on every change
}

func (l *liveClaims) wakeLocked() {
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
}

func (l *liveClaims) add(ids ...int64) {
	if len(ids) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ids == nil {
		l.ids = map[int64]bool{}
	}
	for _, id := range ids {
		l.ids[id] = true
	}
	l.wakeLocked()
}

func (l *liveClaims) remove(ids ...int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		delete(l.ids, id)
	}
	l.wakeLocked()
}

func (l *liveClaims) clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids = nil
	l.wakeLocked()
}

func (l *liveClaims) has(id int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ids[id]
}

// changed returns a channel closed at the next change.
func (l *liveClaims) changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wake == nil {
		l.wake = make(chan struct{})
	}
	return l.wake
}
