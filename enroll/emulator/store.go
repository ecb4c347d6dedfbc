package emulator

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// migrations are the store's schema, one step per schema version
// (sqlitedb.Open applies those a file lacks). Both tables keep records in
// insertion order (seq, never reused, so that continuation tokens neither
// skip nor repeat), keyed by the lower-cased ID, with the JSON body as
// answered, its etag and the number of writes since it was created.
func migrations() []string {
	table := func(name string) string {
		return `CREATE TABLE ` + name + ` (
	seq         INTEGER PRIMARY KEY AUTOINCREMENT,
	id          TEXT    NOT NULL UNIQUE,
	body        TEXT    NOT NULL,
	etag        TEXT    NOT NULL,
	writes      INTEGER NOT NULL,
	created_utc TEXT    NOT NULL,
	updated_utc TEXT    NOT NULL
);`
	}
	return []string{
		table(tableEnrollments) + "\n" + table(tableGroups),
		// 2: the device API's registrations, their operations and the
		// TPM challenge keys.
		`CREATE TABLE ` + tableRegistrations + ` (
	seq           INTEGER PRIMARY KEY AUTOINCREMENT,
	id            TEXT    NOT NULL UNIQUE, -- lower-cased registration ID
	group_id      TEXT    NOT NULL,        -- lower-cased enrollment group ID; '' for an individual enrollment
	body          TEXT    NOT NULL,        -- the DeviceRegistrationResult as the device is answered, JSON
	etag          TEXT    NOT NULL,
	registrations INTEGER NOT NULL,        -- register requests carried out
	ready_utc     TEXT    NOT NULL,        -- when the latest registration is assigned
	created_utc   TEXT    NOT NULL,
	updated_utc   TEXT    NOT NULL         -- when the latest registration was accepted
);
CREATE INDEX registrations_group ON ` + tableRegistrations + ` (group_id, seq);
CREATE TABLE ` + tableOperations + ` (
	id              TEXT PRIMARY KEY,      -- operation ID as issued
	registration_id TEXT NOT NULL,         -- lower-cased
	body            TEXT NOT NULL,         -- the final RegistrationOperationStatus, JSON
	ready_utc       TEXT NOT NULL,
	created_utc     TEXT NOT NULL
);
CREATE INDEX operations_registration ON ` + tableOperations + ` (registration_id);
CREATE TABLE ` + tableTPMKeys + ` (
	id              TEXT PRIMARY KEY,      -- lower-cased registration ID
	endorsement_key BLOB NOT NULL,         -- the TPM2B_PUBLIC the key was sealed to
	storage_root_key BLOB NOT NULL,
	key             BLOB NOT NULL,         -- the HMAC key sealed in the challenge
	created_utc     TEXT NOT NULL
);`,
	}
}

const (
	tableEnrollments   = "enrollments"
	tableGroups        = "enrollment_groups"
	tableRegistrations = "registrations"
	tableOperations    = "operations"
	tableTPMKeys       = "tpm_keys"
)

// row is one stored enrollment or group.
type row struct {
	seq     int64
	id      string // lower-cased key
	body    []byte
	etag    string
	writes  int
	created time.Time
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func key(id string) string { return strings.ToLower(id) }

// getRow reads the record id from table, or nil if there is none.
func getRow(ctx context.Context, q querier, table, id string) (*row, error) {
	var r row
	var created string
	err := q.QueryRowContext(ctx, `SELECT seq, id, body, etag, writes, created_utc FROM `+table+` WHERE id = ?`, key(id)).
		Scan(&r.seq, &r.id, &r.body, &r.etag, &r.writes, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", table, id, err)
	}
	if r.created, err = time.Parse(time.RFC3339Nano, created); err != nil {
		return nil, fmt.Errorf("read %s %s: created_utc %q: %w", table, id, created, err)
	}
	return &r, nil
}

// putRow creates the record (old == nil) or replaces old in place,
// keeping its place in insertion order.
func putRow(ctx context.Context, tx *sql.Tx, table, id string, old *row, body []byte, etag string, created, updated time.Time) error {
	var err error
	if old == nil {
		_, err = tx.ExecContext(ctx, `INSERT INTO `+table+` (id, body, etag, writes, created_utc, updated_utc) VALUES (?, ?, ?, 1, ?, ?)`,
			key(id), string(body), etag, created.UTC().Format(time.RFC3339Nano), updated.UTC().Format(time.RFC3339Nano))
	} else {
		_, err = tx.ExecContext(ctx, `UPDATE `+table+` SET body = ?, etag = ?, writes = writes + 1, updated_utc = ? WHERE seq = ?`,
			string(body), etag, updated.UTC().Format(time.RFC3339Nano), old.seq)
	}
	if err != nil {
		return fmt.Errorf("write %s %s: %w", table, id, err)
	}
	return nil
}

func deleteRow(ctx context.Context, tx *sql.Tx, table string, old *row) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE seq = ?`, old.seq); err != nil {
		return fmt.Errorf("delete %s %s: %w", table, old.id, err)
	}
	return nil
}

// listRows returns up to limit records of table after seq, in insertion
// order.
func listRows(ctx context.Context, db *sql.DB, table string, after int64, limit int) ([]row, error) {
	rows, err := db.QueryContext(ctx, `SELECT seq, id, body, etag FROM `+table+` WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", table, err)
	}
	defer rows.Close()
	var out []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.seq, &r.id, &r.body, &r.etag); err != nil {
			return nil, fmt.Errorf("query %s: %w", table, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query %s: %w", table, err)
	}
	return out, nil
}

func writeCount(ctx context.Context, db *sql.DB, table, id string) (int, error) {
	r, err := getRow(ctx, db, table, id)
	if err != nil || r == nil {
		return 0, err
	}
	return r.writes, nil
}

// inTx runs f in one write transaction, one at a time, and commits it
// when f returns nil.
func (e *Emulator) inTx(ctx context.Context, f func(tx *sql.Tx) error) error {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer tx.Rollback()
	if err := f(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
