package records

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"zerotouch/enroll"
)

// DefaultBuffer is the buffer file OpenBuffered opens when given none:
// in the working folder. A station opens BufferBeside its configuration
// file instead.
const DefaultBuffer = "zerotouch.buffer.db"

// BufferBeside is the buffer file of the station configured by the file
// at config: beside it, named after it (station.yaml: station.buffer.db),
// so that stations configured in one folder keep one buffer each.
func BufferBeside(config string) string {
	base := filepath.Base(config)
	return filepath.Join(filepath.Dir(config), strings.TrimSuffix(base, filepath.Ext(base))+".buffer.db")
}

// ErrOffline means the factory database did not answer: the connection
// was refused, reset or lost, or it timed out. A *OfflineError says which
// operation met it.
var ErrOffline = errors.New("the factory records database does not answer")

// OfflineError is an operation the factory database did not answer. It
// matches ErrOffline and unwraps to the driver's error.
type OfflineError struct {
	Op  string // "save board SN-1"
	Err error
}

func (e *OfflineError) Error() string {
	return fmt.Sprintf("records: %s: the factory database does not answer: %v", e.Op, e.Err)
}

func (e *OfflineError) Unwrap() error        { return e.Err }
func (e *OfflineError) Is(target error) bool { return target == ErrOffline }

// Unreachable reports whether err says the database could not be reached
// or stopped answering, rather than refusing what was asked: a failed
// connection, a connection lost or reset, a network timeout, or one of
// PostgreSQL's own connection and shutdown codes (class 08, 57P01-57P03).
// A cancelled context is not: the caller gave up.
func Unreachable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrOffline) {
		return true
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "08") || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03"
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	switch {
	case errors.As(err, &ce), errors.As(err, &ne), pgconn.Timeout(err), pgconn.SafeToRetry(err),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return true
	}
	// pgx reports a connection it closed after a failure as "conn closed".
	return strings.Contains(err.Error(), "conn closed")
}

// BufferOptions tune a Buffered store. Zero values take the defaults.
type BufferOptions struct {
	Logger *slog.Logger
	// Timeout is how long a call to the factory database may go without
	// an answer before the store pings it, and how long the ping may take
	// before the store counts the database unreachable (default 5 s): a
	// network that drops packets costs a board up to twice this, once,
	// then the store buffers.
	Timeout time.Duration
	// Retry is how often the forwarder tries the factory database while
	// it is offline (default 2 s).
	Retry time.Duration
	// Refresh is how often the store reads the factory's new EKs and
	// registration IDs while online, for the clone check it makes while
	// offline (default 30 s).
	Refresh time.Duration
}

// Buffered is the records store of a station on a factory database that
// keeps the line running when the database does not answer.
//
// While PostgreSQL answers, every call goes to it (a *PGStore). When a
// write meets an unreachable database (Unreachable, or a call without an
// answer for BufferOptions.Timeout and a ping that fails), the store goes
// offline: Begin, Save, SetRegistration and SetAside go to a local SQLite
// buffer (a *Store at the buffer's path) until every buffered change is
// forwarded. Offline, Save refuses a board whose EK or registration ID
// another serial number holds in the buffer, or held in the factory
// database when it was last read (the store reads its EKs and
// registration IDs at open and every BufferOptions.Refresh, and keeps
// them in the buffer): a *CloneError as online, whose OtherStation and
// OtherLine say where the factory had it. What the factory recorded
// since that read is checked when the board is forwarded.
//
// A write whose commit the database made and whose answer was lost (the
// connection dropped just then) is buffered too, and forwarded: Save's
// rules make it the same one record, with one more "updated" audit row.
//
// Reads (Get, List, Page, Audit, Counts, Export, Stats, InProgress) come
// from the factory database while online, and from the buffer while
// offline: then they show only the boards this station recorded since the
// buffer began, which Offline reports. The upload queue (Recover, Claim,
// Settle) is the factory's alone: a buffered board's enrollment is not
// uploaded until it is forwarded.
//
// A forwarder tries the database every BufferOptions.Retry while offline
// and, when it answers, forwards each buffered board in the order the
// buffer last changed it (see Forward): one PostgreSQL transaction per
// board that applies its buffered state by the rules of PGStore.Save and
// writes an EventForwarded audit row naming the buffer and the change, so
// that a change forwarded twice (the station killed between the commit
// and the buffer noting it) is applied once. A board whose EK or
// registration ID another station recorded meanwhile is not recorded
// with them: it is recorded failed with EventForwardConflict, a suspected
// clone for a person, its enrollment held in the buffer and never
// uploaded. When nothing is left to forward the store is online again.
//
// The buffer file keeps every board it ever held (and the forward marks)
// for the audit; one station opens it at a time (ErrBusy). Its methods
// are safe for concurrent use. Close it once, after every other call.
type Buffered struct {
	pg  *PGStore
	buf *Store
	log *slog.Logger
	id  string // this buffer's name in forward marks

	timeout, retry, refresh time.Duration

	// mode orders writes against going online: a write holds it for
	// reading while it decides where to go and writes there; the
	// forwarder holds it to go online once the buffer is empty.
	mode sync.RWMutex

	mu        sync.Mutex // guards what follows
	offline   bool
	since     time.Time
	buffered  int // boards in the buffer not forwarded yet
	lastErr   error
	unready   bool                  // opened offline: the database is to be migrated and checked (PGStore.ready)
	known     map[string]knownBoard // the factory's EKs and IDs: "ek:"+sha256 hex, "id:"+registration ID
	watermark time.Time             // updated_at of the newest factory record read into known

	forwarding sync.Mutex // one Forward at a time

	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	// afterForward, when set (tests), runs after a board's forward has
	// committed in the factory database and before the buffer notes it.
	afterForward func(serial string)
}

// knownBoard is a board the factory database held when last read.
type knownBoard struct{ serial, registrationID, station, line string }

var _ DB = (*Buffered)(nil)

// OpenBuffered opens the factory's records database at url (OpenPostgres:
// its errors, each before the first board) and the station's buffer at
// bufferPath (created, mode 0600, if missing; ErrBusy if another process
// has it), and starts the forwarder. A buffer holding boards not
// forwarded yet (the station stopped while offline) starts forwarding at
// once.
//
// A database that does not answer (Unreachable) is the caller's error
// unless the buffer file exists and has met that database (the same URL
// less its password and query): then the station starts offline, its
// clone check over the factory's EKs and registration IDs the buffer
// kept, and the forwarder migrates and checks the database when it
// answers (a station restarted during an outage keeps its line going).
func OpenBuffered(ctx context.Context, url, bufferPath string, opt BufferOptions) (*Buffered, error) {
	if bufferPath == "" {
		bufferPath = DefaultBuffer
	}
	pg, err := OpenPostgres(ctx, url)
	if err != nil {
		if Unreachable(err) && ctx.Err() == nil {
			return openOffline(ctx, url, bufferPath, opt, err)
		}
		return nil, err
	}
	buf, err := Open(ctx, bufferPath)
	if err != nil {
		pg.Close()
		return nil, fmt.Errorf("records: the buffer for the factory database: %w", err)
	}
	b := newBuffered(pg, buf, opt)
	fail := func(err error) (*Buffered, error) {
		buf.Close()
		pg.Close()
		return nil, fmt.Errorf("records: the buffer %s: %w", bufferPath, err)
	}
	if err := b.initBuffer(ctx); err != nil {
		return fail(err)
	}
	if err := b.refreshKnown(ctx); err != nil {
		return fail(err)
	}
	n, err := b.countBuffered(ctx)
	if err != nil {
		return fail(err)
	}
	if n > 0 {
		// Left by a station that stopped while offline: its boards go
		// first, and writes stay in the buffer until they have.
		b.offline, b.since, b.buffered = true, time.Now(), n
		b.log.Warn("the records buffer holds boards not yet in the factory database: forwarding them", "buffer", bufferPath, "boards", n)
	}
	go b.forwardLoop()
	if n > 0 {
		b.kick()
	}
	return b, nil
}

func newBuffered(pg *PGStore, buf *Store, opt BufferOptions) *Buffered {
	b := &Buffered{pg: pg, buf: buf, log: opt.Logger, timeout: opt.Timeout, retry: opt.Retry, refresh: opt.Refresh,
		known: map[string]knownBoard{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.timeout <= 0 {
		b.timeout = 5 * time.Second
	}
	if b.retry <= 0 {
		b.retry = 2 * time.Second
	}
	if b.refresh <= 0 {
		b.refresh = 30 * time.Second
	}
	return b
}

// Offline reports whether the store is offline (writing to its buffer),
// since when, and how many boards the buffer holds that are not yet in
// the factory database. Safe for concurrent use; it does not block on
// the database.
func (b *Buffered) Offline() (buffered int, since time.Time, offline bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buffered, b.since, b.offline
}

// OfflineText is what a station shows while the store is offline:
// "factory database offline: 3 boards buffered"; "" when online.
func (b *Buffered) OfflineText() string {
	n, _, off := b.Offline()
	if !off {
		return ""
	}
	return OfflineText(n)
}

// OfflineText words the offline status for the operator.
func OfflineText(buffered int) string {
	if buffered == 1 {
		return "factory database offline: 1 board buffered"
	}
	return fmt.Sprintf("factory database offline: %d boards buffered", buffered)
}

// Factory returns the factory database's store; Buffer the local buffer.
func (b *Buffered) Factory() *PGStore { return b.pg }

// Buffer returns the local buffer's store.
func (b *Buffered) Buffer() *Store { return b.buf }

// Close stops the forwarder and closes both stores. Closing again does
// nothing.
func (b *Buffered) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.stop)
		<-b.done
		err = errors.Join(b.buf.Close(), b.pg.Close())
	})
	return err
}

func (b *Buffered) isOffline() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.offline
}

// goOffline notes that the factory database did not answer.
func (b *Buffered) goOffline(what string, err error) {
	b.mu.Lock()
	was := b.offline
	if !was {
		b.offline, b.since = true, time.Now()
	}
	b.lastErr = err
	b.mu.Unlock()
	if !was {
		b.log.Warn("the factory records database does not answer: the station records into its buffer until it does",
			"op", what, "buffer", b.buf.Path(), "err", err)
	}
	b.kick()
}

func (b *Buffered) kick() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// unreachable reports whether err, from a call to the factory database
// under ctx (see call), means it did not answer.
func (b *Buffered) unreachable(ctx context.Context, err error) bool {
	return err != nil && ctx.Err() == nil && Unreachable(err)
}

// call runs f, a call to the factory database, under ctx and a watchdog:
// each time the store's timeout passes with f still running, the
// database is pinged, and if it does not answer f is cancelled and call
// returns an *OfflineError. A call that waits on the database's answer
// (Begin waiting for an upload to settle) may so take longer than the
// timeout while the database answers.
func (b *Buffered) call(ctx context.Context, what string, f func(ctx context.Context) error) error {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f(cctx) }()
	t := time.NewTimer(b.timeout)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-t.C:
			if err := b.ping(ctx); err != nil && ctx.Err() == nil {
				cancel()
				return &OfflineError{Op: what, Err: errors.Join(err, <-done)}
			}
			t.Reset(b.timeout)
		}
	}
}

func (b *Buffered) ping(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	return b.pg.pool.Ping(pctx)
}

// write runs online against the factory database unless the store is
// offline, and offline against the buffer when it is or the database
// does not answer.
func (b *Buffered) write(ctx context.Context, what string, online, offline func(ctx context.Context) error) error {
	for range 3 {
		b.mode.RLock()
		if b.isOffline() {
			err := offline(ctx)
			b.mode.RUnlock()
			return err
		}
		err := b.call(ctx, what, online)
		b.mode.RUnlock()
		if !b.unreachable(ctx, err) {
			return err
		}
		b.goOffline(what, err)
	}
	return &OfflineError{Op: what, Err: errors.New("the database went offline and online again during the write")}
}

// read runs online against the factory database unless the store is
// offline, and offline against the buffer when it is or the database
// does not answer.
func (b *Buffered) read(ctx context.Context, what string, online, offline func(ctx context.Context) error) error {
	if !b.isOffline() {
		err := b.call(ctx, what, online)
		if !b.unreachable(ctx, err) {
			return err
		}
		b.goOffline(what, err)
	}
	return offline(ctx)
}

// Begin marks the board in progress (PGStore.Begin; Store.Begin in the
// buffer while offline).
func (b *Buffered) Begin(ctx context.Context, r *Record) error {
	return b.write(ctx, "begin board "+r.Serial,
		func(ctx context.Context) error { return b.pg.Begin(ctx, r) },
		func(ctx context.Context) error {
			err := b.buf.Begin(ctx, r)
			b.recount(ctx)
			return err
		})
}

// Save records a board's outcome (PGStore.Save; offline, the buffer's
// Store.Save after the clone check against the factory's last-known EKs
// and registration IDs).
func (b *Buffered) Save(ctx context.Context, r *Record) (SaveResult, error) {
	var res SaveResult
	err := b.write(ctx, "save board "+r.Serial,
		func(ctx context.Context) error {
			var err error
			res, err = b.pg.Save(ctx, r)
			if err == nil {
				b.remember(r)
			}
			return err
		},
		func(ctx context.Context) error {
			var err error
			res, err = b.saveBuffered(ctx, r)
			b.recount(ctx)
			return err
		})
	return res, err
}

// saveBuffered is Save into the buffer, offline.
func (b *Buffered) saveBuffered(ctx context.Context, r *Record) (SaveResult, error) {
	ce := b.knownClone(r)
	if ce == nil {
		return b.buf.Save(ctx, r)
	}
	detail := fmt.Sprintf("%s, recorded in the factory database when it was last read; refused, nothing recorded for it (the factory database was offline)", ce.Error())
	err := b.buf.write(ctx, "refuse board "+r.Serial, func(ctx context.Context, tx *wtx) error {
		ev := EventDuplicateID
		if ce.SameEK {
			ev = EventClone
		}
		return audit(ctx, tx, formatTime(b.buf.now()), 0, r.Serial, ev, detail+where(r), r.Operator)
	})
	if err != nil {
		return SaveResult{}, err
	}
	return SaveResult{}, ce
}

// SetRegistration records how the board's registration went
// (PGStore.SetRegistration; offline, in the buffer).
func (b *Buffered) SetRegistration(ctx context.Context, serial string, reg Registration, operator string) error {
	return b.write(ctx, "record the registration of "+serial,
		func(ctx context.Context) error { return b.pg.SetRegistration(ctx, serial, reg, operator) },
		func(ctx context.Context) error {
			err := b.buf.SetRegistration(ctx, serial, reg, operator)
			if errors.Is(err, ErrNotFound) {
				// Saved in the factory database before it went offline.
				err = b.addOp(ctx, serial, opRegistration, reg, "", operator)
			}
			b.recount(ctx)
			return err
		})
}

// SetAside notes the operator's Skip of a failed board (PGStore.SetAside;
// offline, in the buffer).
func (b *Buffered) SetAside(ctx context.Context, serial, slot, operator string) error {
	return b.write(ctx, "set aside "+serial,
		func(ctx context.Context) error { return b.pg.SetAside(ctx, serial, slot, operator) },
		func(ctx context.Context) error {
			err := b.buf.SetAside(ctx, serial, slot, operator)
			if errors.Is(err, ErrNotFound) {
				err = b.addOp(ctx, serial, opSetAside, Registration{}, slot, operator)
			}
			b.recount(ctx)
			return err
		})
}

// InProgress lists the boards whose runs never ended.
func (b *Buffered) InProgress(ctx context.Context) ([]Record, error) {
	var rs []Record
	err := b.read(ctx, "list boards in progress",
		func(ctx context.Context) (err error) { rs, err = b.pg.InProgress(ctx); return err },
		func(ctx context.Context) (err error) { rs, err = b.buf.InProgress(ctx); return err })
	return rs, err
}

// Get returns a board's record: the buffer's while it holds a change of
// the board not yet forwarded, else the factory database's (the buffer's
// while offline).
func (b *Buffered) Get(ctx context.Context, key string) (*Record, error) {
	if n, _, _ := b.Offline(); n > 0 {
		if r, err := b.buf.Get(ctx, key); err == nil {
			if pending, err := b.isPending(ctx, r); err == nil && pending {
				return r, nil
			}
		}
	}
	var r *Record
	err := b.read(ctx, "read record "+key,
		func(ctx context.Context) (err error) { r, err = b.pg.Get(ctx, key); return err },
		func(ctx context.Context) (err error) { r, err = b.buf.Get(ctx, key); return err })
	return r, err
}

// List lists records (the buffer's while offline).
func (b *Buffered) List(ctx context.Context, f Filter) ([]Record, error) {
	var rs []Record
	err := b.read(ctx, "list records",
		func(ctx context.Context) (err error) { rs, err = b.pg.List(ctx, f); return err },
		func(ctx context.Context) (err error) { rs, err = b.buf.List(ctx, f); return err })
	return rs, err
}

// Page pages records (the buffer's while offline: a cursor of one does
// not carry over to the other).
func (b *Buffered) Page(ctx context.Context, f Filter, cursor string, size int) (Page, error) {
	var p Page
	err := b.read(ctx, "page records",
		func(ctx context.Context) (err error) { p, err = b.pg.Page(ctx, f, cursor, size); return err },
		func(ctx context.Context) (err error) { p, err = b.buf.Page(ctx, f, cursor, size); return err })
	return p, err
}

// Audit returns a board's audit rows (the buffer's while offline).
func (b *Buffered) Audit(ctx context.Context, key string) ([]AuditEntry, error) {
	var es []AuditEntry
	err := b.read(ctx, "read the audit of "+key,
		func(ctx context.Context) (err error) { es, err = b.pg.Audit(ctx, key); return err },
		func(ctx context.Context) (err error) { es, err = b.buf.Audit(ctx, key); return err })
	return es, err
}

// Counts counts the upload queue's states (the buffer's while offline).
func (b *Buffered) Counts(ctx context.Context) (map[enroll.State]int, error) {
	var m map[enroll.State]int
	err := b.read(ctx, "count the upload queue",
		func(ctx context.Context) (err error) { m, err = b.pg.Counts(ctx); return err },
		func(ctx context.Context) (err error) { m, err = b.buf.Counts(ctx); return err })
	return m, err
}

// Export writes records (the buffer's while offline). An export that
// fails midway against the factory database is not retried on the
// buffer: part of it is written.
func (b *Buffered) Export(ctx context.Context, w io.Writer, format string, f Filter) (int, error) {
	if b.isOffline() {
		return b.buf.Export(ctx, w, format, f)
	}
	n, err := b.pg.Export(ctx, w, format, f)
	if Unreachable(err) {
		b.goOffline("export", err)
		return n, &OfflineError{Op: "export records", Err: err}
	}
	return n, err
}

// Stats counts boards per line, station, work order and day (the
// buffer's while offline).
func (b *Buffered) Stats(ctx context.Context, since time.Time) ([]StatsRow, error) {
	var rs []StatsRow
	err := b.read(ctx, "read statistics",
		func(ctx context.Context) (err error) { rs, err = b.pg.Stats(ctx, since); return err },
		func(ctx context.Context) (err error) { rs, err = b.buf.Stats(ctx, since); return err })
	return rs, err
}

// Recover, Claim and Settle are the factory database's upload queue
// (PGStore): an *OfflineError while it does not answer.
func (b *Buffered) Recover(ctx context.Context) (int, error) {
	n, err := b.pg.Recover(ctx)
	return n, b.queueErr("recover the upload queue", err)
}

// Claim claims enrollments of the factory's queue (PGStore.Claim).
func (b *Buffered) Claim(ctx context.Context, n int) ([]enroll.Enrollment, error) {
	es, err := b.pg.Claim(ctx, n)
	return es, b.queueErr("claim enrollments", err)
}

// Settle settles outcomes in the factory's queue (PGStore.Settle).
func (b *Buffered) Settle(ctx context.Context, outs []enroll.Outcome) error {
	return b.queueErr("settle enrollments", b.pg.Settle(ctx, outs))
}

func (b *Buffered) queueErr(what string, err error) error {
	if err != nil && Unreachable(err) && !errors.Is(err, ErrOffline) {
		return &OfflineError{Op: what, Err: err}
	}
	return err
}

// remember adds a board the factory database recorded to the known set.
func (b *Buffered) remember(r *Record) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := knownBoard{serial: r.Serial, registrationID: strings.ToLower(r.RegistrationID), station: r.Station, line: r.Line}
	if len(r.EKPublic) > 0 {
		h := sha256.Sum256(r.EKPublic)
		b.known["ek:"+hex.EncodeToString(h[:])] = k
	}
	if k.registrationID != "" {
		b.known["id:"+k.registrationID] = k
	}
}

// knownClone is the *CloneError for r if the factory database held its
// EK or registration ID under another serial number when last read.
func (b *Buffered) knownClone(r *Record) *CloneError {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := strings.ToLower(r.RegistrationID)
	if len(r.EKPublic) > 0 {
		h := sha256.Sum256(r.EKPublic)
		if k, ok := b.known["ek:"+hex.EncodeToString(h[:])]; ok && k.serial != r.Serial {
			return &CloneError{Serial: r.Serial, OtherSerial: k.serial, RegistrationID: k.registrationID, SameEK: true,
				OtherStation: k.station, OtherLine: k.line}
		}
	}
	if id == "" {
		return nil
	}
	if k, ok := b.known["id:"+id]; ok && k.serial != r.Serial {
		return &CloneError{Serial: r.Serial, OtherSerial: k.serial, RegistrationID: id, SameEK: r.Attestation == AttestationTPM,
			OtherStation: k.station, OtherLine: k.line}
	}
	return nil
}

// refreshKnown reads the factory's EKs and registration IDs changed since
// the last read.
func (b *Buffered) refreshKnown(ctx context.Context) error {
	b.mu.Lock()
	since := b.watermark
	b.mu.Unlock()
	qctx, cancel := context.WithTimeout(ctx, 10*b.timeout)
	defer cancel()
	rows, err := b.pg.pool.Query(qctx, `SELECT serial, coalesce(registration_id, ''), coalesce(sha256(ek_public), ''::bytea), station, line, updated_at
		FROM records WHERE updated_at >= $1 AND (ek_public IS NOT NULL OR registration_id IS NOT NULL)`, since)
	if err != nil {
		return fmt.Errorf("read the factory's EKs and registration IDs: %w", err)
	}
	defer rows.Close()
	found := map[string]knownBoard{}
	newest := since
	for rows.Next() {
		var k knownBoard
		var ek []byte
		var at time.Time
		if err := rows.Scan(&k.serial, &k.registrationID, &ek, &k.station, &k.line, &at); err != nil {
			return fmt.Errorf("read the factory's EKs and registration IDs: %w", err)
		}
		if len(ek) > 0 {
			found["ek:"+hex.EncodeToString(ek)] = k
		}
		if k.registrationID != "" {
			found["id:"+k.registrationID] = k
		}
		if at.After(newest) {
			newest = at
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the factory's EKs and registration IDs: %w", err)
	}
	rows.Close()
	if err := b.saveKnown(ctx, found, newest); err != nil {
		return err
	}
	b.mu.Lock()
	for key, k := range found {
		b.known[key] = k
	}
	b.watermark = newest
	b.mu.Unlock()
	return nil
}

// newBufferID names a buffer in forward marks: random, kept in the file.
func newBufferID() string {
	p := make([]byte, 6)
	rand.Read(p)
	return hex.EncodeToString(p)
}
