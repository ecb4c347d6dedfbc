package records

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"zerotouch/enroll"
)

// pgArgs numbers a query's parameters as they are added.
type pgArgs []any

func (a *pgArgs) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// Get returns the record of a board by its serial number or its
// registration ID, as Store.Get finds it. ErrNotFound when none matches.
// Safe for concurrent use.
func (s *PGStore) Get(ctx context.Context, key string) (*Record, error) {
	r, err := s.get(ctx, key)
	if err != nil {
		return nil, err
	}
	return &r.Record, nil
}

func (s *PGStore) get(ctx context.Context, key string) (*row, error) {
	key = strings.TrimSpace(key)
	if key == "" {
		return nil, fmt.Errorf("records: no serial number or registration ID given: %w", ErrNotFound)
	}
	for _, where := range []string{`serial = $1`, `registration_id = lower($1)`} {
		r, err := pgScanRecord(s.pool.QueryRow(ctx, `SELECT `+pgRecordColumns+` FROM records WHERE `+where, key))
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("records: get %q: %w", key, err)
		}
	}
	found, err := s.query(ctx, `SELECT `+pgRecordColumns+` FROM records WHERE lower(serial) = lower($1) LIMIT 2`, []any{key})
	if err != nil {
		return nil, fmt.Errorf("records: get %q: %w", key, err)
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("records: %q: %w", key, ErrNotFound)
	}
	return found[0], nil
}

// query reads the records q selects.
func (s *PGStore) query(ctx context.Context, q string, args []any) ([]*row, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*row
	for rows.Next() {
		r, err := pgScanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// likeEscape quotes q for LIKE: its %, _ and \ are taken as they are.
func likeEscape(q string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(q)
}

// searchPGCond is the condition of a search q (Filter's rules): a
// serial number's prefix (short) or substring, in any case, or a
// registration ID's prefix.
func searchPGCond(q string, a *pgArgs) string {
	e, le := likeEscape(q), likeEscape(strings.ToLower(q))
	regID := `registration_id LIKE ` + a.add(le+"%")
	if utf8.RuneCountInString(q) < trigram {
		return `(lower(serial) LIKE ` + a.add(le+"%") + ` OR ` + regID + `)`
	}
	return `(serial ILIKE ` + a.add("%"+e+"%") + ` OR ` + regID + `)`
}

// pgWhere returns f's conditions (Filter's rules, search included).
func (f *Filter) pgWhere(a *pgArgs) (string, error) {
	var conds []string
	if f.Search != "" {
		conds = append(conds, searchPGCond(f.Search, a))
	}
	switch f.Result {
	case "":
	case ResultPassed, ResultFailed, ResultInProgress:
		conds = append(conds, `result = `+a.add(f.Result))
	default:
		return "", fmt.Errorf("records: filter: %w: result %q: want %s, %s or %s", ErrInvalid, f.Result, ResultPassed, ResultFailed, ResultInProgress)
	}
	switch f.UploadState {
	case "":
	case enroll.StatePending, enroll.StateInFlight, enroll.StateUploaded, enroll.StateFailed, enroll.StateConflict:
		conds = append(conds, `upload_state = `+a.add(string(f.UploadState)))
	default:
		return "", fmt.Errorf("records: filter: %w: upload state %q: want %s, %s, %s, %s or %s", ErrInvalid, f.UploadState,
			enroll.StatePending, enroll.StateInFlight, enroll.StateUploaded, enroll.StateFailed, enroll.StateConflict)
	}
	if f.Limit < 0 {
		return "", fmt.Errorf("records: filter: %w: limit %d", ErrInvalid, f.Limit)
	}
	return strings.Join(conds, " AND "), nil
}

// List returns the records f selects, most recently saved first (by
// UpdatedAt, then ID), as Store.List. Safe for concurrent use.
func (s *PGStore) List(ctx context.Context, f Filter) ([]Record, error) {
	out, err := s.page(ctx, f, nil, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("records: list: %w", err)
	}
	return out, nil
}

// Page returns up to size records that f selects, starting at cursor, as
// Store.Page. Safe for concurrent use.
func (s *PGStore) Page(ctx context.Context, f Filter, cursor string, size int) (Page, error) {
	if size < 1 {
		return Page{}, fmt.Errorf("records: page: %w: size %d", ErrInvalid, size)
	}
	var after *pageKey
	if cursor != "" {
		k, err := parseCursor(cursor)
		if err != nil {
			return Page{}, fmt.Errorf("records: page: %w", err)
		}
		after = &k
	}
	rs, err := s.page(ctx, f, after, size+1)
	if err != nil {
		return Page{}, fmt.Errorf("records: page: %w", err)
	}
	var p Page
	if len(rs) > size {
		rs = rs[:size]
		last := rs[size-1]
		p.Next = pageKey{updated: formatTime(last.UpdatedAt), id: last.ID}.cursor()
	}
	p.Records = rs
	return p, nil
}

// page returns up to limit (0: all) records f selects after the place
// after (nil: from the newest), newest first, with Store.page's plan: a
// search that matches few records (under s.denseAt) has its matches
// looked up in the indexes (once: the lookup that counts them finds
// them) and sorted; one that matches many is first
// tried on the newest scanWindow records, and looked up as a sparse one
// when they do not hold the page (its matches are many but old). The
// planner alone, not knowing where the matches lie, would walk the newest
// records first either way, testing a million of them for a search whose
// matches are all old.
func (s *PGStore) page(ctx context.Context, f Filter, after *pageKey, limit int) ([]Record, error) {
	var a pgArgs
	search := f
	search.Search = ""
	where, err := search.pgWhere(&a) // checks f but its search
	if err != nil {
		return nil, err
	}
	conds := []string{}
	if where != "" {
		conds = append(conds, where)
	}
	if after != nil {
		t, err := parseTime(after.updated)
		if err != nil {
			return nil, err
		}
		conds = append(conds, `(updated_at, id) < (`+a.add(t)+`, `+a.add(after.id)+`)`)
	}
	const order = ` ORDER BY updated_at DESC, id DESC`
	if f.Search == "" {
		q := `SELECT ` + pgRecordColumns + ` FROM records` + pgWhereOf(conds) + order
		if limit > 0 {
			q += ` LIMIT ` + a.add(limit)
		}
		return s.records(ctx, q, a)
	}
	if limit > 0 {
		// Up to s.denseAt matches, in no order: all of a sparse search's.
		var ma pgArgs
		c := searchPGCond(f.Search, &ma)
		rows, err := s.pool.Query(ctx, `SELECT id FROM records WHERE `+c+` LIMIT `+ma.add(s.denseAt), ma...)
		if err != nil {
			return nil, fmt.Errorf("look up the matches of %q: %w", f.Search, err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return nil, fmt.Errorf("look up the matches of %q: %w", f.Search, err)
		}
		if len(ids) < s.denseAt {
			q := `SELECT ` + pgRecordColumns + ` FROM records` + pgWhereOf(append([]string{`id = ANY(` + a.add(ids) + `)`}, conds...)) +
				` ORDER BY updated_at + interval '0 s' DESC, id + 0 DESC LIMIT ` + a.add(limit)
			return s.records(ctx, q, a)
		}
		wa := slices.Clone(a)
		q := `SELECT ` + pgRecordColumns + ` FROM (SELECT * FROM records` + pgWhereOf(conds) + order + ` LIMIT ` + wa.add(s.scanWindow) +
			`) AS newest WHERE ` + searchPGCond(f.Search, &wa) + order + ` LIMIT ` + wa.add(limit)
		rs, err := s.records(ctx, q, wa)
		if err != nil || len(rs) == limit {
			return rs, err
		}
	}
	// The matches, sorted: ordering by expressions keeps the planner from
	// walking the (updated_at, id) index instead of looking them up.
	q := `SELECT ` + pgRecordColumns + ` FROM records` + pgWhereOf(append([]string{searchPGCond(f.Search, &a)}, conds...)) +
		` ORDER BY updated_at + interval '0 s' DESC, id + 0 DESC`
	if limit > 0 {
		q += ` LIMIT ` + a.add(limit)
	}
	return s.records(ctx, q, a)
}

func pgWhereOf(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

func (s *PGStore) records(ctx context.Context, q string, args []any) ([]Record, error) {
	rs, err := s.query(ctx, q, args)
	if err != nil {
		return nil, err
	}
	out := make([]Record, len(rs))
	for i, r := range rs {
		out[i] = r.Record
	}
	return out, nil
}

// Audit returns the audit trail of a board, oldest first, as Store.Audit.
// ErrNotFound when there is neither a record nor a row. Safe for
// concurrent use.
func (s *PGStore) Audit(ctx context.Context, key string) ([]AuditEntry, error) {
	var q string
	var args []any
	r, err := s.get(ctx, key)
	switch {
	case err == nil:
		q, args = `WHERE record_id = $1 OR serial = $2`, []any{r.ID, r.Serial}
	case errors.Is(err, ErrNotFound):
		q, args = `WHERE serial = $1`, []any{strings.TrimSpace(key)}
	default:
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT id, time, serial, event, detail, operator FROM audit `+q+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("records: audit of %q: %w", key, err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var a AuditEntry
		var t time.Time
		if err := rows.Scan(&a.ID, &t, &a.Serial, &a.Event, &a.Detail, &a.Operator); err != nil {
			return nil, fmt.Errorf("records: audit of %q: %w", key, err)
		}
		a.Time = t.UTC()
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

// Counts returns how many enrollments are in each upload state, a pending
// one of a board that has not passed counted as StateHeld, as
// Store.Counts. Safe for concurrent use.
func (s *PGStore) Counts(ctx context.Context) (map[enroll.State]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT CASE WHEN upload_state = 'pending' AND result <> 'passed' THEN $1 ELSE upload_state END AS st, count(*)
		FROM records WHERE upload_state <> '' GROUP BY st`, string(StateHeld))
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

// Export writes the enrollments of the records f selects, as
// Store.Export. Safe for concurrent use.
func (s *PGStore) Export(ctx context.Context, w io.Writer, format string, f Filter) (int, error) {
	if format != FormatCSV && format != FormatJSON {
		return 0, fmt.Errorf("records: export: %w: format %q: want %s or %s", ErrInvalid, format, FormatCSV, FormatJSON)
	}
	var a pgArgs
	where, err := f.pgWhere(&a)
	if err != nil {
		return 0, err
	}
	where = strings.TrimPrefix(where+" AND enrollment IS NOT NULL AND result = "+a.add(ResultPassed), " AND ")
	q := `SELECT serial, enrollment FROM records WHERE ` + where + ` ORDER BY id`
	if f.Limit > 0 {
		q += ` LIMIT ` + a.add(f.Limit)
	}
	rows, err := s.pool.Query(ctx, q, a...)
	if err != nil {
		return 0, fmt.Errorf("records: export: %w", err)
	}
	defer rows.Close()
	return writeExport(rows, w, format)
}
