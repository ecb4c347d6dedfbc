package enroll

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"zerotouch/internal/sqlitedb"
)

// StateFile is a Queue kept in a SQLite file: the upload state of
// enrollments read from a file (zerotouch upload --from). It survives a
// crash at any point: an enrollment is pending, in flight, uploaded,
// failed or in conflict, and a restarted upload carries on. One process
// at a time may hold it open; its methods are safe for concurrent use.
type StateFile struct {
	db   *sql.DB
	lock io.Closer
	path string
}

var _ Queue = (*StateFile)(nil)

// ErrBusy means another upload holds the state file.
var ErrBusy = errors.New("the upload state file is in use by another upload")

var stateMigrations = []string{`
CREATE TABLE enrollments (
	id      TEXT PRIMARY KEY,       -- registration ID, lower case
	seq     INTEGER NOT NULL,       -- order of arrival
	body    TEXT NOT NULL,          -- the enrollment, JSON
	state   TEXT NOT NULL,
	error   TEXT NOT NULL DEFAULT '',
	etag    TEXT NOT NULL DEFAULT '',
	updated TEXT NOT NULL
);
CREATE INDEX enrollments_state ON enrollments (state, seq);
`}

// OpenStateFile opens or creates the state file at path. ErrBusy when
// another upload has it.
func OpenStateFile(ctx context.Context, path string) (*StateFile, error) {
	db, lock, err := sqlitedb.OpenLocked(ctx, path, stateMigrations, sqlitedb.Options{})
	if errors.Is(err, sqlitedb.ErrLocked) {
		return nil, fmt.Errorf("%w: %s", ErrBusy, path)
	}
	if err != nil {
		return nil, fmt.Errorf("upload state: %w", err)
	}
	return &StateFile{db: db, lock: lock, path: path}, nil
}

// Close closes the file and lets another upload open it.
func (s *StateFile) Close() error {
	err := s.db.Close()
	s.lock.Close()
	return err
}

// AddResult says what Add did.
type AddResult struct {
	New       int // not seen before: pending
	Changed   int // seen with other content: replaced, pending
	Retried   int // failed or in conflict before: pending again
	Unchanged int // pending, in flight or uploaded already with this content
}

// Add queues enrollments (already validated): new ones and changed ones
// become pending, as do ones that failed or were in conflict (a re-run
// tries them again); those already uploaded with the same content are
// left alone, so running the same file again sends nothing twice. It is
// one transaction.
func (s *StateFile) Add(ctx context.Context, es []Enrollment) (AddResult, error) {
	var r AddResult
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return r, fmt.Errorf("upload state: %w", err)
	}
	defer tx.Rollback()
	var seq int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM enrollments`).Scan(&seq); err != nil {
		return r, fmt.Errorf("upload state: %w", err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for i := range es {
		body, err := json.Marshal(&es[i])
		if err != nil {
			return r, fmt.Errorf("upload state: encode %s: %w", es[i].RegistrationID, err)
		}
		id := strings.ToLower(es[i].RegistrationID)
		var old, state string
		err = tx.QueryRowContext(ctx, `SELECT body, state FROM enrollments WHERE id = ?`, id).Scan(&old, &state)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			seq++
			_, err = tx.ExecContext(ctx, `INSERT INTO enrollments (id, seq, body, state, updated) VALUES (?, ?, ?, ?, ?)`,
				id, seq, string(body), StatePending, now)
			r.New++
		case err != nil:
		case old != string(body):
			_, err = tx.ExecContext(ctx, `UPDATE enrollments SET body = ?, state = ?, error = '', updated = ? WHERE id = ?`,
				string(body), StatePending, now, id)
			r.Changed++
		case State(state) == StateFailed || State(state) == StateConflict:
			_, err = tx.ExecContext(ctx, `UPDATE enrollments SET state = ?, updated = ? WHERE id = ?`, StatePending, now, id)
			r.Retried++
		default:
			r.Unchanged++
		}
		if err != nil {
			return r, fmt.Errorf("upload state: queue %s: %w", es[i].RegistrationID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return r, fmt.Errorf("upload state: %w", err)
	}
	return r, nil
}

// Recover implements Queue.
func (s *StateFile) Recover(ctx context.Context) (int, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE enrollments SET state = ? WHERE state = ?`, StatePending, StateInFlight)
	if err != nil {
		return 0, fmt.Errorf("upload state: recover: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// Claim implements Queue.
func (s *StateFile) Claim(ctx context.Context, n int) ([]Enrollment, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("upload state: claim: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT id, body FROM enrollments WHERE state = ? ORDER BY seq LIMIT ?`, StatePending, n)
	if err != nil {
		return nil, fmt.Errorf("upload state: claim: %w", err)
	}
	var es []Enrollment
	var ids []string
	for rows.Next() {
		var id, body string
		if err := rows.Scan(&id, &body); err != nil {
			rows.Close()
			return nil, fmt.Errorf("upload state: claim: %w", err)
		}
		var e Enrollment
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			rows.Close()
			return nil, fmt.Errorf("upload state: enrollment %s is damaged: %w", id, err)
		}
		es = append(es, e)
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("upload state: claim: %w", err)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `UPDATE enrollments SET state = ?, updated = ? WHERE id = ?`, StateInFlight, now, id); err != nil {
			return nil, fmt.Errorf("upload state: claim: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("upload state: claim: %w", err)
	}
	return es, nil
}

// Settle implements Queue.
func (s *StateFile) Settle(ctx context.Context, outs []Outcome) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("upload state: settle: %w", err)
	}
	defer tx.Rollback()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, o := range outs {
		if _, err := tx.ExecContext(ctx, `UPDATE enrollments SET state = ?, error = ?, etag = ?, updated = ? WHERE id = ?`,
			o.State, o.Error, o.ETag, now, strings.ToLower(o.RegistrationID)); err != nil {
			return fmt.Errorf("upload state: settle %s: %w", o.RegistrationID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("upload state: settle: %w", err)
	}
	return nil
}

// Counts returns how many enrollments are in each state.
func (s *StateFile) Counts(ctx context.Context) (map[State]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT state, count(*) FROM enrollments GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("upload state: %w", err)
	}
	defer rows.Close()
	m := map[State]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("upload state: %w", err)
		}
		m[State(st)] = n
	}
	return m, rows.Err()
}

// Outcomes lists the enrollments in the given states, in order of
// arrival, with their errors.
func (s *StateFile) Outcomes(ctx context.Context, states ...State) ([]Outcome, error) {
	var out []Outcome
	for _, st := range states {
		var err error
		out, err = s.outcomes(ctx, out, `SELECT body, state, error, etag FROM enrollments WHERE state = ? ORDER BY seq`, st)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// OutcomesOf returns the state of each of the given registration IDs
// that the file holds, in no particular order.
func (s *StateFile) OutcomesOf(ctx context.Context, ids []string) ([]Outcome, error) {
	var out []Outcome
	for len(ids) > 0 {
		n := min(len(ids), 500)
		args := make([]any, n)
		for i := range n {
			args[i] = strings.ToLower(ids[i])
		}
		ids = ids[n:]
		var err error
		out, err = s.outcomes(ctx, out, `SELECT body, state, error, etag FROM enrollments WHERE id IN (?`+
			strings.Repeat(",?", n-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// outcomes appends the outcomes a query of body, state, error and etag
// finds.
func (s *StateFile) outcomes(ctx context.Context, out []Outcome, query string, args ...any) ([]Outcome, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("upload state: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var body, state string
		var o Outcome
		if err := rows.Scan(&body, &state, &o.Error, &o.ETag); err != nil {
			return nil, fmt.Errorf("upload state: %w", err)
		}
		var e Enrollment
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			return nil, fmt.Errorf("upload state: a stored enrollment is damaged: %w", err)
		}
		o.RegistrationID, o.State = e.RegistrationID, State(state)
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("upload state: %w", err)
	}
	return out, nil
}
