package records

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

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

// Filter selects records for List, Page and Export. Zero fields select
// all.
//
// Search finds boards by what an operator has at hand, the serial number
// on a label or the start of a registration ID, and stays fast at a
// million records:
//
//   - three characters or more: a serial number that contains them, in any
//     case (a trigram index), or a registration ID that begins with them;
//   - one or two characters: a serial number or a registration ID that
//     begins with them, in any case.
//
// "In any case" is certain for the letters A to Z (serial numbers are
// ASCII). A registration ID is not searched for inside: a TPM board's is
// a hash of its EK, looked up by its beginning (or whole, as Get does).
// Characters such as % and _ are taken as they are. Records come newest
// first (List's order) whichever way a search is answered: see page.
type Filter struct {
	Search      string       // see above
	Result      string       // ResultPassed, ResultFailed or ResultInProgress
	UploadState enroll.State // one upload state
	Limit       int          // List and Export: at most this many records; 0 for all. Page ignores it.
}

// trigram is the length of a search the serial numbers' trigram index
// can find inside them; shorter ones match the beginning.
const trigram = 3

// denseMatches is where a search matches so many records that testing
// the newest scanWindow of them is likely to find a page sooner than
// sorting every match.
const denseMatches = 2000

// scanWindow is how many of the newest records a dense search tests
// before it looks its matches up instead: a page of 50 is found there
// when one record in 400 of the newest matches.
const scanWindow = 20000

// conds returns f's conditions on the records table but its search.
func (f *Filter) conds() ([]string, []any, error) {
	var conds []string
	var args []any
	switch f.Result {
	case "":
	case ResultPassed, ResultFailed, ResultInProgress:
		conds = append(conds, `result = ?`)
		args = append(args, f.Result)
	default:
		return nil, nil, fmt.Errorf("records: filter: %w: result %q: want %s, %s or %s", ErrInvalid, f.Result, ResultPassed, ResultFailed, ResultInProgress)
	}
	switch f.UploadState {
	case "":
	case enroll.StatePending, enroll.StateInFlight, enroll.StateUploaded, enroll.StateFailed, enroll.StateConflict:
		conds = append(conds, `upload_state = ?`)
		args = append(args, f.UploadState)
	default:
		return nil, nil, fmt.Errorf("records: filter: %w: upload state %q: want %s, %s, %s, %s or %s", ErrInvalid, f.UploadState,
			enroll.StatePending, enroll.StateInFlight, enroll.StateUploaded, enroll.StateFailed, enroll.StateConflict)
	}
	if f.Limit < 0 {
		return nil, nil, fmt.Errorf("records: filter: %w: limit %d", ErrInvalid, f.Limit)
	}
	return conds, args, nil
}

// where returns f's conditions on the records table, a search's looked
// up in the indexes.
func (f *Filter) where() (string, []any, error) {
	conds, args, err := f.conds()
	if err != nil {
		return "", nil, err
	}
	if f.Search != "" {
		c, a := searchCond(f.Search, false)
		conds, args = append([]string{c}, conds...), append(a, args...)
	}
	return whereOf(conds), args, nil
}

func whereOf(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// prefixEnd is past every string that begins with a prefix: no UTF-8
// text holds the byte 0xff.
const prefixEnd = "\xff"

// searchCond is the condition of a search q (Filter's rules).
func searchCond(q string, scan bool) (string, []any) {
	lq := strings.ToLower(q)
	regID := `(registration_id >= ? AND registration_id < ?)`
	if utf8.RuneCountInString(q) < trigram {
		return `((serial COLLATE NOCASE >= ? AND serial COLLATE NOCASE < ?) OR ` + regID + `)`,
			[]any{q, q + prefixEnd, lq, lq + prefixEnd}
	}
	if scan {
		like := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(q) + "%"
		return `(serial LIKE ? ESCAPE '\' OR ` + regID + `)`, []any{like, lq, lq + prefixEnd}
	}
	return `(id IN (SELECT rowid FROM records_serial_fts WHERE records_serial_fts MATCH ?) OR ` + regID + `)`,
		[]any{ftsPhrase(q), lq, lq + prefixEnd}
}

// ftsPhrase quotes q as one FTS5 phrase: with the trigram tokenizer, the
// serial numbers that contain q.
func ftsPhrase(q string) string { return `"` + strings.ReplaceAll(q, `"`, `""`) + `"` }

// dense reports whether a search matches at least s.denseAt records,
// counting no further: the serial numbers it matches (in the trigram
// index, or a prefix's range) and the registration IDs it begins.
func (s *Store) dense(ctx context.Context, q string) (bool, error) {
	serials, args := `SELECT 1 FROM records_serial_fts WHERE records_serial_fts MATCH ?`, []any{ftsPhrase(q)}
	if utf8.RuneCountInString(q) < trigram {
		serials, args = `SELECT 1 FROM records WHERE serial COLLATE NOCASE >= ? AND serial COLLATE NOCASE < ?`, []any{q, q + prefixEnd}
	}
	lq := strings.ToLower(q)
	args = append(args, s.denseAt, lq, lq+prefixEnd, s.denseAt)
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM (`+serials+` LIMIT ?)) +
		(SELECT count(*) FROM (SELECT 1 FROM records WHERE registration_id >= ? AND registration_id < ? LIMIT ?))`,
		args...).Scan(&n); err != nil {
		return false, fmt.Errorf("count the matches of %q: %w", q, err)
	}
	return n >= s.denseAt, nil
}

// List returns the records f selects, most recently saved first (by
// UpdatedAt, then ID). A Filter with an unknown result or upload state
// is an error wrapping ErrInvalid. Safe for concurrent use.
func (s *Store) List(ctx context.Context, f Filter) ([]Record, error) {
	out, err := s.page(ctx, f, nil, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("records: list: %w", err)
	}
	return out, nil
}

// Page is one page of records in List's order.
type Page struct {
	Records []Record
	Next    string // cursor for the following page; "" on the last page
}

// Page returns up to size records that f selects, starting at cursor (""
// for the first page), in List's order; f.Limit is ignored. The cursor is
// the Next of the page before, read with the same Filter: it holds the
// place (the last record's UpdatedAt and ID) so that records saved
// meanwhile neither shift the pages nor repeat on them (a record saved
// again moves to the front, and is not seen again further on). A cursor
// that is not one, a size below 1 and a bad Filter are errors wrapping
// ErrInvalid. Safe for concurrent use.
func (s *Store) Page(ctx context.Context, f Filter, cursor string, size int) (Page, error) {
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

// pageKey is a place in List's order: the last record a page showed.
type pageKey struct {
	updated string // as stored
	id      int64
}

// cursorPrefix versions the cursor's form.
const cursorPrefix = "r1."

func (k pageKey) cursor() string {
	return cursorPrefix + base64.RawURLEncoding.EncodeToString([]byte(k.updated+" "+strconv.FormatInt(k.id, 10)))
}

func parseCursor(c string) (pageKey, error) {
	bad := fmt.Errorf("%w: cursor %q is not one Page returned", ErrInvalid, c)
	rest, ok := strings.CutPrefix(c, cursorPrefix)
	if !ok {
		return pageKey{}, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return pageKey{}, bad
	}
	t, id, ok := strings.Cut(string(b), " ")
	if !ok {
		return pageKey{}, bad
	}
	if _, err := parseTime(t); err != nil {
		return pageKey{}, bad
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n < 1 {
		return pageKey{}, bad
	}
	return pageKey{updated: t, id: n}, nil
}

// page returns up to limit (0: all) records f selects after the place
// after (nil: from the newest), newest first.
//
// A search that matches few records (under s.denseAt) is looked up in
// the indexes and its matches sorted. One that matches many is first
// tried on the newest scanWindow records that the rest of f selects,
// testing each: when they hold the page, that is it. When they do not
// (the matches are many but old), the search is looked up as a sparse
// one.
func (s *Store) page(ctx context.Context, f Filter, after *pageKey, limit int) ([]Record, error) {
	conds, args, err := f.conds()
	if err != nil {
		return nil, err
	}
	if after != nil {
		conds = append(conds, `(updated_at, id) < (?, ?)`)
		args = append(args, after.updated, after.id)
	}
	const order = ` ORDER BY updated_at DESC, id DESC`
	if f.Search != "" && limit > 0 {
		dense, err := s.dense(ctx, f.Search)
		if err != nil {
			return nil, err
		}
		if dense {
			// The window is read newest first, as a co-routine, and its
			// first matches taken: no sort of the whole window.
			c, a := searchCond(f.Search, true)
			q := `SELECT ` + recordColumns + ` FROM records WHERE id IN (
				SELECT id FROM (SELECT id, updated_at, serial, registration_id FROM records` + whereOf(conds) + order + ` LIMIT ?)
				WHERE ` + c + ` LIMIT ?)` + order
			qa := append(append(append(slices.Clip(args), s.scanWindow), a...), limit)
			rs, err := s.query(ctx, q, qa)
			if err != nil || len(rs) == limit {
				return rs, err
			}
		}
	}
	q := `SELECT ` + recordColumns + ` FROM records` + whereOf(conds) + order
	if f.Search != "" {
		c, a := searchCond(f.Search, false)
		conds, args = append([]string{c}, conds...), append(a, args...)
		// Look the matches up and sort their keys, then read the page's
		// records (the + keeps SQLite from walking every record in
		// order, testing each for a match).
		q = `SELECT ` + recordColumns + ` FROM records WHERE id IN (SELECT id FROM records` + whereOf(conds) +
			` ORDER BY +updated_at DESC, +id DESC`
		if limit > 0 {
			q += ` LIMIT ?`
			args = append(args, limit)
		}
		return s.query(ctx, q+`)`+order, args)
	}
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	return s.query(ctx, q, args)
}

// query reads the records q selects.
func (s *Store) query(ctx context.Context, q string, args []any) ([]Record, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Record
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r.Record)
	}
	if err := rows.Err(); err != nil {
		return nil, err
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
// ErrInvalid. It returns how many enrollments it wrote. When there are
// none (a group mode's boards enroll through the DPS enrollment group,
// and have none of their own), it writes nothing at all, not even a CSV
// header, and returns 0 and no error: the caller says so rather than
// leave a file that looks like work to upload. Nothing is written when
// the records cannot be read. The caller closes w. Safe for concurrent
// use.
func (s *Store) Export(ctx context.Context, w io.Writer, format string, f Filter) (int, error) {
	if format != FormatCSV && format != FormatJSON {
		return 0, fmt.Errorf("records: export: %w: format %q: want %s or %s", ErrInvalid, format, FormatCSV, FormatJSON)
	}
	where, args, err := f.where()
	if err != nil {
		return 0, err
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
		return 0, fmt.Errorf("records: export: %w", err)
	}
	defer rows.Close()
	return writeExport(rows, w, format)
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

// writeExport writes the enrollments of rows, (serial, enrollment JSON)
// pairs, to w as format, for both adapters' Export: nothing at all when
// there are none.
func writeExport(rows rowScanner, w io.Writer, format string) (int, error) {
	var es []enroll.Enrollment
	for rows.Next() {
		var serial, body string
		if err := rows.Scan(&serial, &body); err != nil {
			return 0, fmt.Errorf("records: export: %w", err)
		}
		var e enroll.Enrollment
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			return 0, fmt.Errorf("records: export: board %s: its stored enrollment is damaged: %w", serial, err)
		}
		es = append(es, e)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("records: export: %w", err)
	}
	if len(es) == 0 {
		return 0, nil
	}
	if format == FormatCSV {
		if err := enroll.WriteCSV(w, es); err != nil {
			return 0, fmt.Errorf("records: export: %w (export as json instead)", err)
		}
		return len(es), nil
	}
	if err := writeJSON(w, es); err != nil {
		return 0, err
	}
	return len(es), nil
}
