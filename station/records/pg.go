package records

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"zerotouch/enroll"
)

// PGStore is the records store on PostgreSQL: one database shared by a
// factory's stations and uploaders. It keeps the rules of Store (see Save,
// Begin, Claim, Settle, Recover), factory-wide: one record per serial
// number, a registration ID and an EK recorded once across the database,
// an audit log the database keeps append-only (a trigger refuses UPDATE,
// DELETE and TRUNCATE), the upload queue's states.
//
// What differs from Store, because many processes share it:
//
//   - Two stations saving the same EK (or registration ID) at once meet
//     at the database's unique indexes: the one that commits second is
//     retried and refused with a *CloneError naming the board, station
//     and line that hold it.
//   - Any number of uploaders drain one queue. Claim takes records with
//     FOR UPDATE SKIP LOCKED and marks them in flight, in its
//     transaction, before it returns them; each claim names this store's
//     uploader (claimed_by) and holds a lease (lease_until, by the
//     database's clock) that the store renews while it is open. Recover
//     and Claim take over only claims whose lease has run out: those of
//     an uploader that died or lost the database, never a live one's.
//   - Begin waits for a board's enrollment in flight under a live lease,
//     whichever uploader holds it.
//
// Its methods are safe for concurrent use. Close it once, after every
// other call has returned.
type PGStore struct {
	pool     *pgxpool.Pool
	name     string // the URL for people: no password (there is none)
	readOnly bool
	now      func() time.Time
	owner    string        // this store's uploader, in claimed_by
	lease    time.Duration // of a claim; renewed every third of it
	// A search with denseAt matches or more first tests the newest
	// scanWindow records (denseMatches, scanWindow; see page).
	denseAt, scanWindow int

	renewOnce sync.Once
	closeOnce sync.Once
	stop      chan struct{}
	renewed   sync.WaitGroup
}

var _ enroll.Queue = (*PGStore)(nil)

// defaultConnectTimeout bounds a connection attempt when the URL sets no
// connect_timeout.
const defaultConnectTimeout = 10 * time.Second

// DefaultLease is how long a claim of a PGStore lasts unless renewed (see
// PGStore.SetLease).
const DefaultLease = 30 * time.Second

// ErrNewerSchema means the database was brought to a schema version by a
// newer zerotouch than this one: use a newer zerotouch.
var ErrNewerSchema = errors.New("the records database has a newer schema than this zerotouch knows: use a newer zerotouch")

//go:embed pgmigrations/*.sql
var pgMigrationFiles embed.FS

func pgMigrations() ([]string, error) {
	ents, err := fs.ReadDir(pgMigrationFiles, "pgmigrations")
	if err != nil {
		return nil, err
	}
	ms := make([]string, 0, len(ents))
	for _, e := range ents {
		b, err := pgMigrationFiles.ReadFile("pgmigrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, string(b))
	}
	return ms, nil
}

// IsPostgresURL reports whether target names a PostgreSQL database
// (postgres:// or postgresql://) rather than a SQLite file.
func IsPostgresURL(target string) bool {
	l := strings.ToLower(target)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

// parsePGURL checks a records URL and returns its pgx configuration and
// how to name it to people. A password in the URL is refused: it would
// be in station.yaml, a flag or a log line.
func parsePGURL(raw string) (*pgxpool.Config, string, error) {
	u, err := url.Parse(raw)
	if err != nil || !IsPostgresURL(raw) {
		return nil, "", fmt.Errorf("records: %w: %q is not a postgres:// URL", ErrInvalid, redactURL(raw))
	}
	_, hasPW := u.User.Password()
	if hasPW || u.Query().Has("password") {
		return nil, "", fmt.Errorf("records: %s: %w: the URL holds a password; leave it out and put it in a password file (PGPASSFILE, or ~/.pgpass) or in PGPASSWORD",
			redactURL(raw), ErrInvalid)
	}
	name := redactURL(raw)
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return nil, "", fmt.Errorf("records: %s: %w", name, err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "zerotouch"
	if cfg.ConnConfig.ConnectTimeout == 0 { // libpq waits forever; a station should not
		cfg.ConnConfig.ConnectTimeout = defaultConnectTimeout
	}
	return cfg, name, nil
}

// redactURL is a URL to show people: its password and query removed
// (a query may name files and keys; the host and database say which).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(an unreadable URL)"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}

// OpenPostgres opens the records database at a postgres:// URL for a
// station or an uploader, bringing its schema up to date (under a lock,
// so stations starting together migrate it once). Credentials and TLS
// follow libpq: the password comes from PGPASSWORD or a password file
// (PGPASSFILE, ~/.pgpass, or passfile= in the URL), never from the URL
// itself (refused, wrapping ErrInvalid); sslmode and sslrootcert as in
// libpq. Errors, each before the first board: a database it cannot reach
// or log in to (wrapped pgx errors), one with a newer schema
// (ErrNewerSchema), one holding other tables named records
// (ErrNotRecords), and a role that may not write the records (ErrReadOnly).
func OpenPostgres(ctx context.Context, rawURL string) (*PGStore, error) {
	return openPostgres(ctx, rawURL, false)
}

// OpenPostgresReadOnly opens the records database at a postgres:// URL for
// reading: its transactions are read-only, it migrates nothing, and a
// schema of another version than this zerotouch's is refused. Writes
// return ErrReadOnly.
func OpenPostgresReadOnly(ctx context.Context, rawURL string) (*PGStore, error) {
	return openPostgres(ctx, rawURL, true)
}

func openPostgres(ctx context.Context, rawURL string, readOnly bool) (*PGStore, error) {
	cfg, name, err := parsePGURL(rawURL)
	if err != nil {
		return nil, err
	}
	if readOnly {
		cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("records: %s: %w", name, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("records: connect to %s: %w", name, err)
	}
	s := &PGStore{pool: pool, name: name, readOnly: readOnly, now: time.Now, owner: newOwner(), lease: DefaultLease,
		denseAt: denseMatches, scanWindow: scanWindow,
		stop: make(chan struct{})}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if !readOnly {
		var user string
		var ok bool
		if err := pool.QueryRow(ctx, rightsSQL).Scan(&user, &ok); err != nil {
			pool.Close()
			return nil, fmt.Errorf("records: %s: check the role's rights: %w", name, err)
		}
		if !ok {
			pool.Close()
			return nil, fmt.Errorf("records: %s: role %s may not write the records (it needs %s): %w", name, user, rightsNeeded, ErrReadOnly)
		}
	}
	return s, nil
}

// newOwner names this store's uploader in claims: host, process and a
// random part.
func newOwner() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
}

// schemaLock is the advisory lock key under which migrations run.
const schemaLock = 0x7a65726f746f7563 // "zerotouc"

// migrate brings the schema up to date, or checks it is, read-only.
func (s *PGStore) migrate(ctx context.Context) error {
	ms, err := pgMigrations()
	if err != nil {
		return fmt.Errorf("records: migrations: %w", err)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("records: %s: %w", s.name, err)
	}
	defer tx.Rollback(context.Background())
	if !s.readOnly {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLock)); err != nil {
			return fmt.Errorf("records: %s: lock the schema: %w", s.name, err)
		}
	}
	var haveVersion, haveRecords bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('zerotouch_schema') IS NOT NULL, to_regclass('records') IS NOT NULL`).Scan(&haveVersion, &haveRecords); err != nil {
		return fmt.Errorf("records: %s: read the schema version: %w", s.name, err)
	}
	v := 0
	if haveVersion {
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM zerotouch_schema`).Scan(&v); err != nil {
			return fmt.Errorf("records: %s: read the schema version: %w", s.name, err)
		}
	} else if haveRecords {
		return fmt.Errorf("records: %s: %w (it has a table named records, and no zerotouch_schema)", s.name, ErrNotRecords)
	}
	switch {
	case v > len(ms):
		return fmt.Errorf("records: %s has schema version %d, this zerotouch knows up to %d: %w", s.name, v, len(ms), ErrNewerSchema)
	case v == len(ms):
		return nil
	case s.readOnly && v == 0:
		return fmt.Errorf("records: %s: %w (no zerotouch schema: let a station open it first)", s.name, ErrNotRecords)
	case s.readOnly:
		return fmt.Errorf("records: %s has schema version %d, this zerotouch reads version %d: let a station open it once to bring it up to date",
			s.name, v, len(ms))
	}
	if !haveVersion {
		if _, err := tx.Exec(ctx, `CREATE TABLE zerotouch_schema (version integer PRIMARY KEY, migrated_at timestamptz NOT NULL DEFAULT now(),
			migrated_by text NOT NULL DEFAULT current_user)`); err != nil {
			return fmt.Errorf("records: %s: create the schema version table: %w", s.name, err)
		}
	}
	for i := v; i < len(ms); i++ {
		if _, err := tx.Exec(ctx, ms[i]); err != nil {
			return fmt.Errorf("records: %s: migrate schema to version %d: %w", s.name, i+1, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO zerotouch_schema (version) VALUES ($1)`, i+1); err != nil {
			return fmt.Errorf("records: %s: set schema version %d: %w", s.name, i+1, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("records: %s: migrate schema: %w", s.name, err)
	}
	return nil
}

// Name is the database's URL as it may be shown: no password, no query.
func (s *PGStore) Name() string { return s.name }

// SetLease sets how long a claim lasts unless renewed (DefaultLease
// unless set): an uploader that dies holds its claims this long at most.
// Call it before the first Claim.
func (s *PGStore) SetLease(d time.Duration) { s.lease = d }

// Close stops renewing this store's leases and closes its connections.
// Its claims still out keep their leases until they run out. Closing
// again does nothing.
func (s *PGStore) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.renewed.Wait()
		s.pool.Close()
	})
	return nil
}

// pgError codes the store retries a transaction on, or translates.
const (
	pgUniqueViolation      = "23505"
	pgSerializationFailure = "40001"
	pgDeadlock             = "40P01"
	pgReadOnlyTransaction  = "25006"
	pgInsufficientRights   = "42501"
)

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// tx runs f in a transaction and commits it. A transaction that meets
// another at a unique index (retryUnique), a serialization failure or a
// deadlock is run again: f must set its results rather than add to them.
func (s *PGStore) tx(ctx context.Context, what string, retryUnique bool, f func(ctx context.Context, tx pgx.Tx) error) error {
	if s.readOnly {
		return fmt.Errorf("records: %s: %w", what, ErrReadOnly)
	}
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return f(ctx, tx) })
		if err == nil {
			return nil
		}
		code := pgCode(err)
		if attempt < 20 && (code == pgSerializationFailure || code == pgDeadlock || retryUnique && code == pgUniqueViolation) {
			continue
		}
		switch code {
		case pgReadOnlyTransaction, pgInsufficientRights:
			return fmt.Errorf("records: %s: %w: %w", what, ErrReadOnly, err)
		}
		if strings.HasPrefix(err.Error(), "records: ") {
			return err
		}
		return fmt.Errorf("records: %s: %w", what, err)
	}
}

// clock is the time the store writes: its clock, to the microsecond
// PostgreSQL keeps.
func (s *PGStore) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

func pgAudit(ctx context.Context, tx pgx.Tx, now time.Time, recordID int64, serial, event, detail, operator string) error {
	var rid *int64
	if recordID != 0 {
		rid = &recordID
	}
	if _, err := tx.Exec(ctx, `INSERT INTO audit (time, record_id, serial, event, detail, operator) VALUES ($1, $2, $3, $4, $5, $6)`,
		now, rid, serial, event, detail, operator); err != nil {
		return fmt.Errorf("write audit row %q for %s: %w", event, serial, err)
	}
	return nil
}

// pgRecordColumns are the columns pgScanRecord reads, in its order.
const pgRecordColumns = `id, serial, model, hw, firmware, attestation, coalesce(registration_id, ''), device_id,
	ek_public, ek_certificate, ek_cert_status, ek_fingerprint, certificate_chain, cert_serial, cert_not_after,
	config_sha256, config_path, station, line, slot, operator, work_order, result, previous_result, message,
	enrollment, upload_state, upload_error, etag, generation, created_at, updated_at,
	registration_state, assigned_hub, registered_at, registration_error, coalesce(cause, ''), coalesce(failed_step, ''),
	issued_chain`

// pgScanRecord reads one row of pgRecordColumns.
func pgScanRecord(sc pgx.Row) (*row, error) {
	var r row
	var notAfter, registeredAt *time.Time
	var state string
	var enr *string
	var cfg []byte
	var reg Registration
	err := sc.Scan(&r.ID, &r.Serial, &r.Model, &r.HW, &r.Firmware, &r.Attestation, &r.RegistrationID, &r.DeviceID,
		&r.EKPublic, &r.EKCertificate, &r.EKCertStatus, &r.EKFingerprint, &r.CertificateChain, &r.CertSerial, &notAfter,
		&cfg, &r.ConfigPath, &r.Station, &r.Line, &r.Slot, &r.Operator, &r.WorkOrder, &r.Result, &r.PreviousResult, &r.Message,
		&enr, &state, &r.UploadError, &r.ETag, &r.generation, &r.CreatedAt, &r.UpdatedAt,
		&reg.State, &reg.AssignedHub, &registeredAt, &reg.Error, &r.Cause, &r.FailedStep,
		&reg.IssuedChain)
	if err != nil {
		return nil, err
	}
	if len(cfg) > 0 {
		r.ConfigSHA256 = cfg
	}
	if len(r.EKPublic) == 0 {
		r.EKPublic = nil
	}
	if len(r.EKCertificate) == 0 {
		r.EKCertificate = nil
	}
	r.UploadState = enroll.State(state)
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	if notAfter != nil {
		r.CertNotAfter = notAfter.UTC()
	}
	if reg.State != "" {
		if registeredAt != nil {
			reg.At = registeredAt.UTC()
		}
		reg.DeviceID = r.DeviceID
		r.Registration = &reg
	}
	if enr != nil {
		r.enrollment.String, r.enrollment.Valid = *enr, true
		if err := decodeEnrollment(r.ID, r.Serial, *enr, &r.Record); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

// rightsSQL says whether the current role may write the records: the
// tables a Save writes, the yield table its trigger keeps included.
const rightsSQL = `SELECT current_user, has_table_privilege('records', 'SELECT, INSERT, UPDATE')
	AND has_table_privilege('audit', 'SELECT, INSERT') AND has_sequence_privilege('records_queue_seq', 'USAGE')
	AND has_table_privilege('daily_yield', 'SELECT, INSERT, UPDATE')`

// rightsNeeded names what rightsSQL checks, for the operator.
const rightsNeeded = "SELECT, INSERT, UPDATE on records and daily_yield, SELECT, INSERT on audit, USAGE on sequence records_queue_seq"
