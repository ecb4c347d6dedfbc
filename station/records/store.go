// Package records is the station's store of provisioned boards: one
// SQLite file (WAL, synchronous=FULL, migrations embedded) holding a
// record per board, the upload queue of the boards' DPS enrollments, and
// an append-only audit log (DESIGN.md, "Records").
//
// A board has one record, found by its serial number: provisioning it
// again updates that record and never makes a second one. The same EK
// arriving under another serial number is a possible clone and is refused
// (ErrClone), as is a registration ID another board already holds
// (ErrDuplicateID). The record's enrollment is queued for upload when it
// is new or changed, and only then, so a board provisioned twice is never
// enrolled twice. Every change writes an audit row in the same
// transaction; triggers make the audit table refuse UPDATE and DELETE.
//
// *Store is the enroll.Queue the station's background enroll.Uploader
// drains. Claim notes which of a record's enrollments (a generation
// number) it handed out, and Settle applies an outcome to that one only:
// a board saved again with a changed enrollment while the old one is in
// flight keeps the new one pending. A changed enrollment of a board whose
// earlier one DPS already took is handed out with an ETag, so that the
// uploader replaces it (bulk mode update) rather than meeting a conflict.
// The comment at the top of queue.go has the details.
//
// One process at a time may open a Store for writing (Open takes a lock
// file beside the database); any number may read it alongside with
// OpenReadOnly.
//
// A factory of stations shares one PostgreSQL database instead: *PGStore
// (pg.go) keeps the same rules across every station and uploader that
// opens it. OpenURL opens either from a path or a postgres:// URL; one
// contract test suite runs against both.
package records

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"zerotouch/enroll"
	"zerotouch/internal/sqlitedb"
)

// Attestation modes of the station, as a Record stores them.
const (
	AttestationTPM          = "tpm"           // the EK of the board's TPM; DPS TPM attestation
	AttestationX509TPM      = "x509-tpm"      // a key in the board's TPM, certificate from the station's CA
	AttestationX509Keygen   = "x509-keygen"   // a key the board makes, certificate from the station's CA
	AttestationSymmetricKey = "symmetric-key" // a device key derived from an enrollment group's key
	// AttestationX509StationKey: a key the station made and wrote to a
	// stock board, certificate from the station's CA; the record keeps
	// the certificate, never the key.
	AttestationX509StationKey = "x509-station-key"
)

// validAttestation reports whether a is one of the Attestation constants.
func validAttestation(a string) bool {
	switch a {
	case AttestationTPM, AttestationX509TPM, AttestationX509Keygen, AttestationX509StationKey, AttestationSymmetricKey:
		return true
	}
	return false
}

// isX509 reports whether the attestation a gives the board a
// certificate.
func isX509(a string) bool {
	return a == AttestationX509TPM || a == AttestationX509Keygen || a == AttestationX509StationKey
}

// Results of a board's run.
const (
	ResultPassed = "passed"
	ResultFailed = "failed"
	// ResultInProgress is a board the station has begun to change (Begin)
	// and not yet verified: a record left so by a station that stopped
	// mid-run says the board must be provisioned again.
	ResultInProgress = "in_progress"
)

// Audit events.
const (
	EventCreated         = "created"                   // first record of a board
	EventUpdated         = "updated"                   // a board provisioned again
	EventClone           = "clone suspected"           // an EK seen under another serial: refused
	EventDuplicateID     = "duplicate registration id" // a registration ID another board holds: refused
	EventUploadClaimed   = "upload started"            // claimed by the uploader: in flight
	EventUploadSettled   = "upload settled"            // an outcome: detail says which state
	EventUploadRecovered = "upload recovered"          // in flight at a crash: pending again
	EventUploadStale     = "upload outcome ignored"    // an outcome for an enrollment since replaced
	EventRegistration    = "registration"              // the board registered with DPS (or was refused): detail says how
	EventBegun           = "run started"               // the station began to change the board (Begin)
	EventSetAside        = "set aside"                 // the operator skipped a failed board and took it off its slot (SetAside)
)

// StateHeld is what Counts calls a pending enrollment whose board has not
// passed (its run failed, or is in progress): it is not uploaded until the
// board passes again.
const StateHeld enroll.State = "held"

// Errors callers branch on.
var (
	// ErrNotFound means no record matches the key.
	ErrNotFound = errors.New("no such record")
	// ErrNotRecords: the file opened is not a zerotouch records
	// database (another SQLite file, or not SQLite at all).
	ErrNotRecords = errors.New("not a zerotouch records database")
	// ErrClone means a board's EK is already recorded under another
	// serial number; a *CloneError says which.
	ErrClone = errors.New("possible clone: this EK is recorded under another serial number")
	// ErrDuplicateID means a board's registration ID is already recorded
	// under another serial number (X.509 and symmetric-key modes, where
	// the ID does not come from an EK); a *CloneError says which.
	ErrDuplicateID = errors.New("registration ID already recorded under another serial number")
	// ErrBusy means another process has the records database open for
	// writing.
	ErrBusy = errors.New("the records database is in use by another process")
	// ErrInvalid means a Record, a Filter or an export format was refused
	// before anything was read or written.
	ErrInvalid = errors.New("invalid")
	// ErrReadOnly means a write was tried on a Store opened with
	// OpenReadOnly.
	ErrReadOnly = errors.New("the records database is open read-only")
)

// CloneError is a Save refused because another serial number holds the
// board's EK (Is ErrClone) or its registration ID (Is ErrDuplicateID).
type CloneError struct {
	Serial         string // the board being saved
	OtherSerial    string // the board already recorded
	RegistrationID string // lower case
	SameEK         bool   // the EK matched (or a TPM registration ID, which is the EK's hash)
	// OtherStation and OtherLine are where the board already recorded
	// was last provisioned (its record's Station and Line; "" when not
	// set): on a factory database, another station than the one saving.
	OtherStation, OtherLine string
}

func (e *CloneError) Error() string {
	if e.SameEK {
		return fmt.Sprintf("possible clone: board %s has the EK (registration ID %s) already recorded for board %s%s",
			e.Serial, e.RegistrationID, e.OtherSerial, e.holder())
	}
	return fmt.Sprintf("board %s: registration ID %s is already recorded for board %s%s", e.Serial, e.RegistrationID, e.OtherSerial, e.holder())
}

// holder says where the board already recorded was provisioned: " (station
// st-2, line 5)", or "" when its record does not say.
func (e *CloneError) holder() string {
	var parts []string
	if e.OtherStation != "" {
		parts = append(parts, "station "+e.OtherStation)
	}
	if e.OtherLine != "" {
		parts = append(parts, "line "+e.OtherLine)
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// Is matches ErrClone or ErrDuplicateID.
func (e *CloneError) Is(target error) bool {
	if e.SameEK {
		return target == ErrClone
	}
	return target == ErrDuplicateID
}

// Record is a board's record. RegistrationID is stored and returned in
// lower case.
type Record struct {
	ID               int64     `json:"id"`
	Serial           string    `json:"serial"`
	Model            string    `json:"model,omitempty"`
	HW               string    `json:"hw,omitempty"`
	Firmware         string    `json:"firmware,omitempty"`
	Attestation      string    `json:"attestation"` // AttestationTPM, ...
	RegistrationID   string    `json:"registrationId,omitempty"`
	DeviceID         string    `json:"deviceId,omitempty"`
	EKPublic         []byte    `json:"ekPublic,omitempty"`      // TPM2B_PUBLIC with its size prefix (TPM modes)
	EKCertificate    []byte    `json:"ekCertificate,omitempty"` // DER
	EKCertStatus     string    `json:"ekCertStatus,omitempty"`
	EKFingerprint    string    `json:"ekFingerprint,omitempty"`
	CertificateChain string    `json:"certificateChain,omitempty"` // PEM (x509 modes)
	CertSerial       string    `json:"certSerial,omitempty"`
	CertNotAfter     time.Time `json:"certNotAfter,omitzero"`
	ConfigSHA256     HexBytes  `json:"configSha256,omitempty"` // lower-case hex in JSON
	ConfigPath       string    `json:"configPath,omitempty"`
	Station          string    `json:"station,omitempty"`
	Line             string    `json:"line,omitempty"`
	Slot             string    `json:"slot,omitempty"`
	Operator         string    `json:"operator,omitempty"`
	WorkOrder        string    `json:"workOrder,omitempty"`
	Result           string    `json:"result"` // ResultPassed, ResultFailed or ResultInProgress
	// PreviousResult is, while Result is ResultInProgress, the result
	// before the run began ("" for a board new to the records).
	PreviousResult string `json:"previousResult,omitempty"`
	Message        string `json:"message,omitempty"` // the operator message when failed
	// Cause is the engineer's cause of a failed run: the underlying
	// error, as "upload /lfs/zerotouch/config at offset 0 of 348: on D:
	// fs.file: board error 10 of group 8". FailedStep is the pipeline
	// step the run failed in. Both are "" unless the last run failed (a
	// run in progress keeps those of the failed run before it).
	Cause      string `json:"cause,omitempty"`
	FailedStep string `json:"failedStep,omitempty"`
	// Enrollment is what goes to DPS; nil: nothing to enroll (group
	// modes, or a board that failed before it was ever enrolled).
	Enrollment  *enroll.Enrollment `json:"enrollment,omitempty"`
	UploadState enroll.State       `json:"uploadState,omitempty"` // "" when Enrollment is nil
	UploadError string             `json:"uploadError,omitempty"`
	ETag        string             `json:"etag,omitempty"`
	// Registration is the board's registration with DPS when the station
	// verified it (SetRegistration); nil otherwise.
	Registration *Registration `json:"registration,omitempty"`
	CreatedAt    time.Time     `json:"createdAt"`
	UpdatedAt    time.Time     `json:"updatedAt"`
}

// ResultText is the record's result for a person: "in progress (was
// passed)" for a run that began and has not ended.
func (r *Record) ResultText() string {
	if r.Result != ResultInProgress {
		return r.Result
	}
	if r.PreviousResult != "" {
		return "in progress (was " + r.PreviousResult + ")"
	}
	return "in progress"
}

// UploadText is the record's upload state for a person: "held" for a
// pending enrollment whose board has not passed (see Claim).
func (r *Record) UploadText() string {
	if r.UploadState == enroll.StatePending && r.Result != ResultPassed {
		return string(StateHeld)
	}
	return string(r.UploadState)
}

// Registration is how a board's registration with DPS went.
type Registration struct {
	State       string    `json:"state"` // assigned, disabled or failed (flasher.Reg*)
	AssignedHub string    `json:"assignedHub,omitempty"`
	DeviceID    string    `json:"deviceId,omitempty"`
	Error       string    `json:"error,omitempty"` // DPS's refusal, or why the board could not ask
	At          time.Time `json:"at"`
	// IssuedChain is the operational certificate chain DPS issued at
	// this registration (PEM, device certificate first, root last), on a
	// line with operational_certificate; "" otherwise.
	IssuedChain string `json:"issuedCertificateChain,omitempty"`
}

// AuditEntry is one row of the audit log.
type AuditEntry struct {
	ID       int64     `json:"id"`
	Time     time.Time `json:"time"`
	Serial   string    `json:"serial"`
	Event    string    `json:"event"`
	Detail   string    `json:"detail,omitempty"`
	Operator string    `json:"operator,omitempty"`
}

// Store is the records database. Its methods are safe for concurrent use
// by the station's slots and one enroll.Uploader in the same process:
// writes are serialised in the process and each is one immediate SQLite
// transaction, committed durably before the method returns. Close it once,
// after every other call has returned.
type Store struct {
	db       *sql.DB
	lock     io.Closer // nil when read-only
	path     string
	readOnly bool
	now      func() time.Time
	// A search with denseAt matches or more first tests the newest
	// scanWindow records (denseMatches, scanWindow; see page).
	denseAt, scanWindow int

	// Writes are committed in groups: see write.
	committer chan struct{} // a token: held by the goroutine committing
	mu        sync.Mutex    // guards queued
	queued    []*writeJob   // writes waiting for the next commit
	commits   atomic.Int64  // transactions committed

	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt // the write statements, prepared once

	claims liveClaims // claims this Store handed out and has not settled
}

// writeJob is one write waiting to be committed.
type writeJob struct {
	ctx  context.Context
	what string
	f    func(ctx context.Context, tx *wtx) error
	err  error
	done chan struct{} // closed when err is final
}

var _ enroll.Queue = (*Store)(nil)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations returns the schema migrations in file name order.
func migrations() ([]string, error) {
	ents, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	ms := make([]string, 0, len(ents))
	for _, e := range ents {
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, string(b))
	}
	return ms, nil
}

// Open opens the records database at path for the station, creating it
// (mode 0600) and bringing its schema up to date. It takes an exclusive
// lock on path+".lock": while one process has the store open another
// gets ErrBusy (readers use OpenReadOnly instead). A database written by
// a newer zerotouch is refused.
func Open(ctx context.Context, path string) (*Store, error) {
	ms, err := migrations()
	if err != nil {
		return nil, fmt.Errorf("records: migrations: %w", err)
	}
	db, lock, err := sqlitedb.OpenLocked(ctx, path, ms, sqlitedb.Options{})
	if errors.Is(err, sqlitedb.ErrLocked) {
		return nil, fmt.Errorf("records: %s: %w", path, ErrBusy)
	}
	if err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	return &Store{db: db, lock: lock, path: path, now: time.Now, denseAt: denseMatches, scanWindow: scanWindow, committer: make(chan struct{}, 1)}, nil
}

// sqliteNotADB is SQLite's SQLITE_NOTADB: the file is not a database.
const sqliteNotADB = 26

// OpenReadOnly opens an existing records database for reading, alongside
// a station that may have it open with Open: it takes no lock, creates
// nothing and changes nothing. A missing file is an error wrapping
// fs.ErrNotExist; a database of another schema version than this
// zerotouch writes is refused. Save, Claim, Settle and Recover on it
// return ErrReadOnly.
func OpenReadOnly(ctx context.Context, path string) (*Store, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("records: %s is not a file", path)
	}
	ms, err := migrations()
	if err != nil {
		return nil, fmt.Errorf("records: migrations: %w", err)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "query_only(1)")
	dsn := (&url.URL{Scheme: "file", OmitHost: true, Path: path, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("records: open %s: %w", path, err)
	}
	var v int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
		db.Close()
		var se interface{ Code() int }
		if errors.As(err, &se) && se.Code() == sqliteNotADB {
			return nil, fmt.Errorf("records: %s: %w (%v)", path, ErrNotRecords, err)
		}
		return nil, fmt.Errorf("records: open %s: %w", path, err)
	}
	if v != len(ms) {
		db.Close()
		if v == 0 {
			return nil, fmt.Errorf("records: %s: %w", path, ErrNotRecords)
		}
		if v < len(ms) {
			return nil, fmt.Errorf("records: %s has schema version %d, this zerotouch reads version %d: let the station open it once to bring it up to date",
				path, v, len(ms))
		}
		return nil, fmt.Errorf("records: %s has schema version %d, newer than this zerotouch reads (%d): use a newer zerotouch", path, v, len(ms))
	}
	// Is it ours? A table list check is cheap and gives a clear error.
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('records', 'audit')`).Scan(&n); err != nil || n != 2 {
		db.Close()
		return nil, fmt.Errorf("records: %s: %w", path, ErrNotRecords)
	}
	return &Store{db: db, path: path, readOnly: true, now: time.Now, denseAt: denseMatches, scanWindow: scanWindow}, nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// Close closes the database and releases the lock.
func (s *Store) Close() error {
	s.stmtMu.Lock()
	for _, st := range s.stmts {
		st.Close()
	}
	s.stmts = nil
	s.stmtMu.Unlock()
	err := s.db.Close()
	if s.lock != nil {
		s.lock.Close()
	}
	if err != nil {
		return fmt.Errorf("records: close: %w", err)
	}
	return nil
}

// write runs f inside an immediate transaction and commits it durably
// before it returns. Writes that arrive while another commit is under
// way are committed together, in the order they arrived: one fsync
// serves every slot that finished a board in the same few milliseconds.
// f sees the writes committed or grouped before it. A write whose f fails
// leaves nothing behind: its group is rolled back and run again without
// it, so f may run more than once and must set its results rather than
// add to them. Its context is ctx without cancellation (an interrupted
// statement would roll back the whole group); a write whose ctx is done
// before it starts is not run.
func (s *Store) write(ctx context.Context, what string, f func(ctx context.Context, tx *wtx) error) error {
	if s.readOnly {
		return fmt.Errorf("records: %s: %w", what, ErrReadOnly)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("records: %s: %w", what, err)
	}
	j := &writeJob{ctx: ctx, what: what, f: f, done: make(chan struct{})}
	s.mu.Lock()
	s.queued = append(s.queued, j)
	s.mu.Unlock()
	select {
	case <-j.done: // committed by another goroutine's group
		return j.err
	case s.committer <- struct{}{}:
	}
	defer func() { <-s.committer }()
	select {
	case <-j.done: // its group finished while this one took the token
		return j.err
	default:
	}
	s.mu.Lock()
	group := s.queued
	s.queued = nil
	s.mu.Unlock()
	for len(group) > 0 {
		group = s.commitGroup(group) // j is in it
	}
	return j.err
}

// commitGroup runs the jobs in one transaction and commits it, settling
// each job. When a job's f fails it settles that job with f's error,
// rolls the transaction back and returns the jobs to run again: the
// others, less any whose context has ended.
func (s *Store) commitGroup(group []*writeJob) (again []*writeJob) {
	finish := func(err error, jobs ...*writeJob) {
		for _, j := range jobs {
			if err != nil {
				j.err = fmt.Errorf("records: %s: %w", j.what, err)
			}
			close(j.done)
		}
	}
	tx, err := s.db.BeginTx(context.Background(), nil)
	if err != nil {
		finish(err, group...)
		return nil
	}
	defer tx.Rollback()
	w := &wtx{tx: tx, s: s}
	ran := group[:0:0]
	for i, j := range group {
		if err := j.ctx.Err(); err != nil {
			finish(err, j)
			continue
		}
		if err := j.f(context.WithoutCancel(j.ctx), w); err != nil {
			j.err = err // as f wrote it
			close(j.done)
			return append(ran, group[i+1:]...)
		}
		ran = append(ran, j)
	}
	if len(ran) == 0 {
		return nil
	}
	if err := tx.Commit(); err != nil {
		finish(fmt.Errorf("commit: %w", err), ran...)
		return nil
	}
	s.commits.Add(1)
	finish(nil, ran...)
	return nil
}

// wtx is a write transaction whose statements are prepared once and kept
// by the store: parsing them again for every board took a quarter of a
// Save's time. Its methods are those of *sql.Tx that the writes use.
type wtx struct {
	tx *sql.Tx
	s  *Store
}

// stmt returns q prepared for the transaction, or nil when it cannot be
// prepared (running it unprepared then reports why).
func (t *wtx) stmt(ctx context.Context, q string) *sql.Stmt {
	t.s.stmtMu.Lock()
	defer t.s.stmtMu.Unlock()
	st, ok := t.s.stmts[q]
	if !ok {
		var err error
		if st, err = t.s.db.PrepareContext(ctx, q); err != nil {
			return nil
		}
		if t.s.stmts == nil {
			t.s.stmts = map[string]*sql.Stmt{}
		}
		t.s.stmts[q] = st
	}
	return t.tx.StmtContext(ctx, st)
}

func (t *wtx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := t.stmt(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.tx.ExecContext(ctx, q, args...)
}

func (t *wtx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.tx.QueryContext(ctx, q, args...)
}

func (t *wtx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if st := t.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.tx.QueryRowContext(ctx, q, args...)
}

// Commits returns how many write transactions the store has committed
// since it was opened: fewer than writes when concurrent writes shared a
// commit.
func (s *Store) Commits() int64 { return s.commits.Load() }

// timeFormat is fixed-width, so that stored times sort as text.
const timeFormat = "2006-01-02T15:04:05.000000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeFormat, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q: %w", s, err)
	}
	return t, nil
}

// audit appends a row to the audit log inside tx.
func audit(ctx context.Context, tx *wtx, now string, recordID int64, serial, event, detail, operator string) error {
	var rid any
	if recordID != 0 {
		rid = recordID
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit (time, record_id, serial, event, detail, operator) VALUES (?, ?, ?, ?, ?, ?)`,
		now, rid, serial, event, detail, operator); err != nil {
		return fmt.Errorf("write audit row %q for %s: %w", event, serial, err)
	}
	return nil
}
