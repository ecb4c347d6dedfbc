package records

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"zerotouch/enroll"
)

// Get returns the record of a board by its serial number or its
// registration ID (case-insensitively): an exact serial number first, then
// a registration ID, then a serial number in another case when only one
// record has it. ErrNotFound when none matches. Safe for concurrent use.
func (s *Store) Get(ctx context.Context, key string) (*Record, error) {
	r, err := s.get(ctx, key)
	if err != nil {
		return nil, err
	}
	return &r.Record, nil
}

func (s *Store) get(ctx context.Context, key string) (*row, error) {
	key = strings.TrimSpace(key)
	if key == "" {
		return nil, fmt.Errorf("records: no serial number or registration ID given: %w", ErrNotFound)
	}
	for _, where := range []string{`serial = ?`, `registration_id = lower(?)`} {
		r, err := scanRecord(s.db.QueryRowContext(ctx, `SELECT `+recordColumns+` FROM records WHERE `+where, key))
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("records: get %q: %w", key, err)
		}
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+recordColumns+` FROM records WHERE serial = ? COLLATE NOCASE LIMIT 2`, key)
	if err != nil {
		return nil, fmt.Errorf("records: get %q: %w", key, err)
	}
	defer rows.Close()
	var found []*row
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("records: get %q: %w", key, err)
		}
		found = append(found, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("records: get %q: %w", key, err)
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("records: %q: %w", key, ErrNotFound)
	}
	return found[0], nil
}

// Filter selects records for List and Export. Zero fields select all.
type Filter struct {
	Search      string       // a substring of the serial number or registration ID, in any case
	Result      string       // ResultPassed, ResultFailed or ResultInProgress
	UploadState enroll.State // one upload state
	Limit       int          // at most this many records; 0 for all
}

func (f *Filter) where() (string, []any, error) {
	var conds []string
	var args []any
	if f.Search != "" {
		like := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(f.Search) + "%"
		conds = append(conds, `(serial LIKE ? ESCAPE '\' OR registration_id LIKE ? ESCAPE '\')`)
		args = append(args, like, like)
	}
	switch f.Result {
	case "":
	case ResultPassed, ResultFailed, ResultInProgress:
		conds = append(conds, `result = ?`)
		args = append(args, f.Result)
	default:
		return "", nil, fmt.Errorf("records: filter: %w: result %q: want %s, %s or %s", ErrInvalid, f.Result, ResultPassed, ResultFailed, ResultInProgress)
	}
	switch f.UploadState {
	case "":
	case enroll.StatePending, enroll.StateInFlight, enroll.StateUploaded, enroll.StateFailed, enroll.StateConflict:
		conds = append(conds, `upload_state = ?`)
		args = append(args, f.UploadState)
	default:
		return "", nil, fmt.Errorf("records: filter: %w: upload state %q: want %s, %s, %s, %s or %s", ErrInvalid, f.UploadState,
			enroll.StatePending, enroll.StateInFlight, enroll.StateUploaded, enroll.StateFailed, enroll.StateConflict)
	}
	if f.Limit < 0 {
		return "", nil, fmt.Errorf("records: filter: %w: limit %d", ErrInvalid, f.Limit)
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, nil
}

// List returns the records f selects, most recently saved first. A Filter
// with an unknown result or upload state is an error wrapping ErrInvalid.
// Safe for concurrent use.
func (s *Store) List(ctx context.Context, f Filter) ([]Record, error) {
	where, args, err := f.where()
	if err != nil {
		return nil, err
	}
	q := `SELECT ` + recordColumns + ` FROM records` + where + ` ORDER BY updated_at DESC, id DESC`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("records: list: %w", err)
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("records: list: %w", err)
		}
		out = append(out, r.Record)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("records: list: %w", err)
	}
	return out, nil
}

// Audit returns the audit trail of a board, oldest first: the rows of its
// record, found as Get finds it, and rows written under its serial number
// (a clone refused under that serial has no record of its own), including
// a clone refused under another serial that presented this board's EK.
// ErrNotFound when there is neither a record nor a row. Safe for
// concurrent use.
func (s *Store) Audit(ctx context.Context, key string) ([]AuditEntry, error) {
	var q string
	var args []any
	r, err := s.get(ctx, key)
	switch {
	case err == nil:
		q, args = `WHERE record_id = ? OR serial = ?`, []any{r.ID, r.Serial}
	case errors.Is(err, ErrNotFound):
		q, args = `WHERE serial = ?`, []any{strings.TrimSpace(key)}
	default:
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, time, serial, event, detail, operator FROM audit `+q+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("records: audit of %q: %w", key, err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var a AuditEntry
		var t string
		if err := rows.Scan(&a.ID, &t, &a.Serial, &a.Event, &a.Detail, &a.Operator); err != nil {
			return nil, fmt.Errorf("records: audit of %q: %w", key, err)
		}
		if a.Time, err = parseTime(t); err != nil {
			return nil, fmt.Errorf("records: audit of %q: row %d: %w", key, a.ID, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("records: audit of %q: %w", key, err)
	}
	if len(out) == 0 && r == nil {
		return nil, fmt.Errorf("records: %q: %w", key, ErrNotFound)
	}
	return out, nil
}

// Counts returns how many enrollments are in each upload state (records
// without an enrollment are not counted). A pending enrollment of a board
// that has not passed is counted as StateHeld, not pending: it waits for
// its board, not for the uploader. Safe for concurrent use.
func (s *Store) Counts(ctx context.Context) (map[enroll.State]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT CASE WHEN upload_state = ? AND result <> ? THEN ? ELSE upload_state END AS st, count(*)
		FROM records WHERE upload_state <> '' GROUP BY st`, enroll.StatePending, ResultPassed, StateHeld)
	if err != nil {
		return nil, fmt.Errorf("records: counts: %w", err)
	}
	defer rows.Close()
	m := map[enroll.State]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("records: counts: %w", err)
		}
		m[enroll.State(st)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("records: counts: %w", err)
	}
	return m, nil
}

// Export formats.
const (
	FormatCSV  = "csv"
	FormatJSON = "json"
)

// Export writes the enrollments of the records f selects (records without
// one, and boards that have not passed, are skipped), in the order the boards were first recorded, as a
// file `zerotouch upload --from` reads (enroll.ReadFile): "json", a JSON
// array of enroll.Enrollment, one per line; or "csv", enroll.WriteCSV's
// columns, which refuses, before writing anything, an enrollment with a
// field a CSV cannot hold. Another format is an error wrapping
// ErrInvalid. Nothing is written when the records cannot be read. The
// caller closes w. Safe for concurrent use.
func (s *Store) Export(ctx context.Context, w io.Writer, format string, f Filter) error {
	if format != FormatCSV && format != FormatJSON {
		return fmt.Errorf("records: export: %w: format %q: want %s or %s", ErrInvalid, format, FormatCSV, FormatJSON)
	}
	where, args, err := f.where()
	if err != nil {
		return err
	}
	// As Claim: a board that has not passed is not enrolled.
	if where == "" {
		where = " WHERE enrollment IS NOT NULL AND result = ?"
	} else {
		where += " AND enrollment IS NOT NULL AND result = ?"
	}
	args = append(args, ResultPassed)
	q := `SELECT serial, enrollment FROM records` + where + ` ORDER BY id`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("records: export: %w", err)
	}
	var es []enroll.Enrollment
	for rows.Next() {
		var serial, body string
		if err := rows.Scan(&serial, &body); err != nil {
			rows.Close()
			return fmt.Errorf("records: export: %w", err)
		}
		var e enroll.Enrollment
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			rows.Close()
			return fmt.Errorf("records: export: board %s: its stored enrollment is damaged: %w", serial, err)
		}
		es = append(es, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("records: export: %w", err)
	}
	if format == FormatCSV {
		if err := enroll.WriteCSV(w, es); err != nil {
			return fmt.Errorf("records: export: %w (export as json instead)", err)
		}
		return nil
	}
	return writeJSON(w, es)
}

// writeJSON writes es as a JSON array, one enrollment a line.
func writeJSON(w io.Writer, es []enroll.Enrollment) error {
	var b strings.Builder
	b.WriteString("[")
	for i := range es {
		if i > 0 {
			b.WriteString(",")
		}
		j, err := json.Marshal(&es[i])
		if err != nil {
			return fmt.Errorf("records: export: enrollment %s: %w", es[i].RegistrationID, err)
		}
		b.WriteString("\n")
		b.Write(j)
	}
	b.WriteString("\n]\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("records: export: %w", err)
	}
	return nil
}
