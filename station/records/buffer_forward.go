package records

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"zerotouch/enroll"
)

// Audit events of forwarding a buffer (Buffered).
const (
	// EventForwarded marks a board's buffered change applied to the
	// factory database; its detail names the buffer and the change, so
	// that the change is applied once.
	EventForwarded = "forwarded from a station's buffer"
	// EventForwardConflict is a buffered board whose EK or registration
	// ID another serial number took in the factory database while the
	// station was offline: recorded failed, a suspected clone for a
	// person, its enrollment held in the buffer and never uploaded.
	EventForwardConflict = "clone found when forwarding"
	// EventForwardSuperseded is a buffered change not applied because
	// another station ran the board later: its record is the newer.
	EventForwardSuperseded = "buffered change superseded"
)

// StepForward is the FailedStep of a board recorded failed when its
// buffered record was forwarded (EventForwardConflict).
const StepForward = "forward"

// The buffer's own tables, beside the Store's, in the buffer file.
const bufferSchema = `
CREATE TABLE IF NOT EXISTS buffer_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- the last change of each board forwarded: its record's updated_at and
-- its newest audit row in the buffer
CREATE TABLE IF NOT EXISTS buffer_forwarded (
	serial     TEXT PRIMARY KEY,
	updated_at TEXT NOT NULL,
	audit_id   INTEGER NOT NULL,
	state      TEXT NOT NULL, -- forwarded or conflict
	detail     TEXT NOT NULL DEFAULT '',
	at         TEXT NOT NULL
);
-- registrations of boards the buffer holds no record of (saved in the
-- factory database before it went offline)
CREATE TABLE IF NOT EXISTS buffer_registrations (
	seq          INTEGER PRIMARY KEY AUTOINCREMENT,
	serial       TEXT NOT NULL,
	registration TEXT NOT NULL,
	operator     TEXT NOT NULL DEFAULT '',
	at           TEXT NOT NULL,
	forwarded    INTEGER NOT NULL DEFAULT 0
);`

// Forward states in buffer_forwarded.
const (
	forwardDone     = "forwarded"
	forwardConflict = "conflict"
)

const (
	opRegistration = "registration"
	opSetAside     = "set aside"
)

func (b *Buffered) initBuffer(ctx context.Context) error {
	if _, err := b.buf.db.ExecContext(ctx, bufferSchema+bufferKnownSchema); err != nil {
		return fmt.Errorf("create the buffer's tables: %w", err)
	}
	err := b.buf.db.QueryRowContext(ctx, `SELECT value FROM buffer_meta WHERE key = 'id'`).Scan(&b.id)
	if errors.Is(err, sql.ErrNoRows) {
		b.id = newBufferID()
		_, err = b.buf.db.ExecContext(ctx, `INSERT INTO buffer_meta (key, value) VALUES ('id', ?)`, b.id)
	}
	if err != nil {
		return fmt.Errorf("read the buffer's name: %w", err)
	}
	return nil
}

// addOp keeps a change of a board the buffer has no record of. A set
// aside is an audit row, forwarded with the board's other audit rows.
func (b *Buffered) addOp(ctx context.Context, serial, kind string, reg Registration, slot, operator string) error {
	return b.buf.write(ctx, kind+" of "+serial, func(ctx context.Context, tx *wtx) error {
		now := formatTime(b.buf.now())
		if kind == opSetAside {
			detail := "set aside by the operator"
			if slot != "" {
				detail = "taken off slot " + slot + " and set aside by the operator"
			}
			return audit(ctx, tx, now, 0, serial, EventSetAside, detail, operator)
		}
		body, err := json.Marshal(reg)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO buffer_registrations (serial, registration, operator, at) VALUES (?, ?, ?, ?)`,
			serial, string(body), operator, now); err != nil {
			return fmt.Errorf("records: buffer the registration of %s: %w", serial, err)
		}
		return audit(ctx, tx, now, 0, serial, EventRegistration, reg.State+" (the board's record is in the factory database)", operator)
	})
}

// pendingSQL lists the boards with changes in the buffer not forwarded:
// serial, newest audit row, the last forwarded change's, in the order of
// their newest change.
const pendingSQL = `SELECT a.serial, max(a.id) AS last, coalesce(f.audit_id, 0), coalesce(f.updated_at, '')
	FROM audit a LEFT JOIN buffer_forwarded f ON f.serial = a.serial
	GROUP BY a.serial HAVING max(a.id) > coalesce(f.audit_id, 0) ORDER BY last`

type pendingBoard struct {
	serial          string
	last, doneAudit int64
	doneUpdated     string
}

func (b *Buffered) pending(ctx context.Context) ([]pendingBoard, error) {
	rows, err := b.buf.db.QueryContext(ctx, pendingSQL)
	if err != nil {
		return nil, fmt.Errorf("records: list the buffer's boards to forward: %w", err)
	}
	defer rows.Close()
	var out []pendingBoard
	for rows.Next() {
		var p pendingBoard
		if err := rows.Scan(&p.serial, &p.last, &p.doneAudit, &p.doneUpdated); err != nil {
			return nil, fmt.Errorf("records: list the buffer's boards to forward: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// countBuffered counts the boards with changes not forwarded.
func (b *Buffered) countBuffered(ctx context.Context) (int, error) {
	var n, regs int
	if err := b.buf.db.QueryRowContext(ctx, `SELECT count(*) FROM (`+pendingSQL+`)`).Scan(&n); err != nil {
		return 0, fmt.Errorf("records: count the buffer's boards: %w", err)
	}
	if err := b.buf.db.QueryRowContext(ctx, `SELECT count(DISTINCT serial) FROM buffer_registrations WHERE forwarded = 0`).Scan(&regs); err != nil {
		return 0, fmt.Errorf("records: count the buffer's boards: %w", err)
	}
	return n + regs, nil
}

// recount updates the count Offline reports.
func (b *Buffered) recount(ctx context.Context) {
	n, err := b.countBuffered(context.WithoutCancel(ctx))
	if err != nil {
		b.log.Warn("count the buffer's boards", "err", err)
		return
	}
	b.mu.Lock()
	b.buffered = n
	b.mu.Unlock()
}

// isPending reports whether r, from the buffer, has a change not
// forwarded.
func (b *Buffered) isPending(ctx context.Context, r *Record) (bool, error) {
	var n int
	err := b.buf.db.QueryRowContext(ctx, `SELECT count(*) FROM (`+pendingSQL+`) WHERE serial = ?`, r.Serial).Scan(&n)
	return n > 0, err
}

// forwardLoop runs the forwarder until Close.
func (b *Buffered) forwardLoop() {
	defer close(b.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-b.stop
		cancel()
	}()
	retry := time.NewTicker(b.retry)
	defer retry.Stop()
	lastRefresh := time.Now()
	for {
		select {
		case <-b.stop:
			return
		case <-b.wake:
		case <-retry.C:
		}
		if b.isOffline() {
			n, err := b.Forward(ctx)
			switch {
			case err != nil && ctx.Err() == nil && !errors.Is(err, ErrOffline):
				b.log.Error("forward the records buffer to the factory database", "forwarded", n, "err", err)
			case err == nil:
				b.log.Info("the factory records database answers again: every buffered board is forwarded", "forwarded", n)
			}
			continue
		}
		if time.Since(lastRefresh) >= b.refresh {
			lastRefresh = time.Now()
			if err := b.refreshKnown(ctx); err != nil && ctx.Err() == nil {
				b.log.Warn("read the factory's EKs for the offline clone check", "err", err)
			}
		}
	}
}

// Forward forwards every change in the buffer to the factory database,
// in order, and goes online when none is left; it returns how many
// boards it forwarded. An *OfflineError if the database does not answer
// (what was forwarded stays so); other errors are the databases'. A
// board another store holds busy (its enrollment in flight under a live
// lease) stops the round: it is tried again at the next. Forward runs in
// the store's forwarder; tests and tools may call it too: one runs at a
// time.
func (b *Buffered) Forward(ctx context.Context) (int, error) {
	b.forwarding.Lock()
	defer b.forwarding.Unlock()
	if err := b.ping(ctx); err != nil {
		return 0, &OfflineError{Op: "forward the buffer", Err: err}
	}
	b.mu.Lock()
	unready := b.unready
	b.mu.Unlock()
	if unready {
		if err := b.pg.ready(ctx); err != nil {
			if Unreachable(err) {
				return 0, &OfflineError{Op: "forward the buffer", Err: err}
			}
			return 0, err
		}
		if err := b.refreshKnown(ctx); err != nil {
			return 0, err
		}
		b.mu.Lock()
		b.unready = false
		b.mu.Unlock()
	}
	forwarded := 0
	for {
		boards, err := b.pending(ctx)
		if err != nil {
			return forwarded, err
		}
		regs, err := b.pendingRegistrations(ctx)
		if err != nil {
			return forwarded, err
		}
		if len(boards) == 0 && len(regs) == 0 {
			b.mode.Lock()
			n, err := b.countBuffered(ctx)
			if err == nil && n == 0 {
				b.mu.Lock()
				b.offline, b.since, b.buffered, b.lastErr = false, time.Time{}, 0, nil
				b.mu.Unlock()
			}
			b.mode.Unlock()
			if err != nil {
				return forwarded, err
			}
			if n == 0 {
				return forwarded, nil
			}
			continue
		}
		for _, p := range boards {
			if err := b.forwardBoard(ctx, p); err != nil {
				return forwarded, err
			}
			forwarded++
			b.recount(ctx)
		}
		for _, r := range regs {
			if err := b.forwardRegistration(ctx, r); err != nil {
				return forwarded, err
			}
			b.recount(ctx)
		}
	}
}

// errHeld: the factory holds the board busy; forward it later.
var errHeld = errors.New("the board's enrollment is in flight in the factory database")

// forwardBoard applies one board's buffered changes to the factory
// database in one transaction, once (its EventForwarded row says so),
// then notes them forwarded in the buffer.
func (b *Buffered) forwardBoard(ctx context.Context, p pendingBoard) error {
	var rec *Record
	r, err := b.buf.get(ctx, p.serial)
	switch {
	case err == nil && r.Serial == p.serial:
		rec = &r.Record
	case err == nil, errors.Is(err, ErrNotFound):
	default:
		return err
	}
	updated := p.doneUpdated
	apply := false
	if rec != nil {
		updated = formatTime(rec.UpdatedAt)
		apply = updated != p.doneUpdated
	}
	rows, err := b.bufferAudit(ctx, p.serial, p.doneAudit)
	if err != nil {
		return err
	}
	// The mark's key names the buffer by its ID, not its path, which a
	// restart may spell otherwise; the ";" ends it (change 1, not 10).
	key := fmt.Sprintf("buffer %s: board %s, change %d;", b.id, p.serial, p.last)
	mark := key + " buffer file " + b.buf.Path()
	what := "forward board " + p.serial
	var conflict *CloneError
	state := forwardDone
	octx, cancel := context.WithTimeout(ctx, 2*b.timeout)
	defer cancel()
	err = b.pg.tx(octx, what, true, func(ctx context.Context, tx pgx.Tx) error {
		conflict, state = nil, forwardDone
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM audit WHERE serial = $1 AND event = $2 AND detail LIKE $3 LIMIT 1`,
			p.serial, EventForwarded, likeEscape(key)+"%").Scan(&one)
		switch {
		case err == nil:
			var c bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit WHERE serial = $1 AND event = $2 AND detail LIKE $3)`,
				p.serial, EventForwardConflict, "%"+likeEscape(key)+"%").Scan(&c); err != nil {
				return fmt.Errorf("read its forward: %w", err)
			}
			if c {
				state = forwardConflict
			}
			return nil // forwarded before: the buffer did not note it
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("read its forward marks: %w", err)
		}
		now := b.pg.clock()
		if apply {
			if conflict, err = b.applyBoard(ctx, tx, now, rec, mark); err != nil {
				return err
			}
			if conflict != nil {
				state = forwardConflict
			}
		}
		var id int64
		err = tx.QueryRow(ctx, `SELECT id FROM records WHERE serial = $1`, p.serial).Scan(&id)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read its record: %w", err)
		}
		for _, a := range rows {
			switch a.Event {
			case EventSetAside, EventClone, EventDuplicateID:
			default:
				continue // the record's state carries them
			}
			if err := pgAudit(ctx, tx, a.Time.UTC().Truncate(time.Microsecond), id, p.serial, a.Event,
				a.Detail+" (in the station's buffer while the factory database was offline)", a.Operator); err != nil {
				return err
			}
		}
		return pgAudit(ctx, tx, now, id, p.serial, EventForwarded, mark, "")
	})
	if err != nil {
		if ctx.Err() == nil && (Unreachable(err) || errors.Is(err, context.DeadlineExceeded)) {
			return &OfflineError{Op: what, Err: err}
		}
		return err
	}
	if conflict != nil {
		b.log.Error("suspected clone found when forwarding the buffer: the board is recorded failed and its enrollment held; a supervisor must check it",
			"serial", p.serial, "err", conflict)
	}
	if apply && rec.Result == ResultPassed && conflict == nil {
		b.remember(rec)
	}
	if b.afterForward != nil {
		b.afterForward(p.serial)
	}
	detail := ""
	if conflict != nil {
		detail = conflict.Error()
	}
	return b.buf.write(ctx, "note board "+p.serial+" forwarded", func(ctx context.Context, tx *wtx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO buffer_forwarded (serial, updated_at, audit_id, state, detail, at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (serial) DO UPDATE SET updated_at = excluded.updated_at, audit_id = excluded.audit_id, state = excluded.state,
			detail = excluded.detail, at = excluded.at`, p.serial, updated, p.last, state, detail, formatTime(b.buf.now()))
		return err
	})
}

// applyBoard writes a buffered record's state into the factory database
// by the rules of PGStore.Begin and PGStore.Save, in tx. A board the
// factory now holds under another serial's EK or registration ID is
// recorded failed instead, and the *CloneError returned.
func (b *Buffered) applyBoard(ctx context.Context, tx pgx.Tx, now time.Time, rec *Record, mark string) (*CloneError, error) {
	old, err := pgScanRecord(tx.QueryRow(ctx, `SELECT `+pgRecordColumns+` FROM records WHERE serial = $1 FOR UPDATE`, rec.Serial))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		old = nil
	case err != nil:
		return nil, fmt.Errorf("read its record: %w", err)
	}
	if old != nil && old.Station != rec.Station && old.UpdatedAt.After(rec.UpdatedAt) {
		// Another station ran the board after this one buffered it
		// (moved to another line during the outage): its record is the
		// newer, and the buffered change only history.
		detail := fmt.Sprintf("the change buffered by station %s at %s (%s) is older than the board's run at station %s at %s: not applied",
			rec.Station, rec.UpdatedAt.UTC().Format(time.RFC3339), mark, old.Station, old.UpdatedAt.UTC().Format(time.RFC3339))
		return nil, pgAudit(ctx, tx, now, old.ID, rec.Serial, EventForwardSuperseded, detail, rec.Operator)
	}
	if old != nil && old.UploadState == enroll.StateInFlight {
		var busy bool
		if err := tx.QueryRow(ctx, `SELECT lease_until > now() FROM records WHERE id = $1`, old.ID).Scan(&busy); err != nil {
			return nil, fmt.Errorf("read its claim: %w", err)
		}
		if busy {
			return nil, errHeld
		}
	}
	if rec.Result == ResultInProgress {
		return nil, pgBegin(ctx, tx, now, rec, old)
	}
	m := *rec
	m.Enrollment = nil
	if rec.Result == ResultPassed {
		m.Enrollment = rec.Enrollment
	}
	body, err := checkRecord(&m)
	if err != nil {
		return nil, err
	}
	if err := noteFlightLost(old, pgPlaceholders5, pgQueryRow(ctx, tx), pgx.ErrNoRows); err != nil {
		return nil, err
	}
	m.RegistrationID = strings.ToLower(m.RegistrationID)
	if m.Result == ResultFailed && old != nil {
		keepStored(&m, &old.Record)
	}
	ce, err := pgCheckClone(ctx, tx, now, &m)
	if err != nil {
		return nil, err
	}
	if ce != nil {
		f := Record{Serial: m.Serial, Model: m.Model, HW: m.HW, Firmware: m.Firmware, Attestation: m.Attestation,
			Station: m.Station, Line: m.Line, Slot: m.Slot, Operator: m.Operator, WorkOrder: m.WorkOrder, Result: ResultFailed,
			Message: "Suspected clone, found when the station's buffered record reached the factory database: " + ce.Error() +
				". Its enrollment is held, not uploaded: a supervisor must check the board.",
			Cause: ce.Error(), FailedStep: StepForward}
		if old != nil {
			keepStored(&f, &old.Record)
		}
		if _, err := pgUpsert(ctx, tx, now, &f, "", old); err != nil {
			return nil, fmt.Errorf("record it failed: %w", err)
		}
		detail := fmt.Sprintf("%s; the board was recorded by this station while the factory database was offline (%s): recorded failed, its enrollment (registration ID %s) held in the buffer, never uploaded",
			ce.Error(), mark, m.RegistrationID)
		if err := pgAudit(ctx, tx, now, 0, m.Serial, EventForwardConflict, detail, m.Operator); err != nil {
			return nil, err
		}
		return ce, nil
	}
	if _, err := pgUpsert(ctx, tx, now, &m, body, old); err != nil {
		return nil, err
	}
	if reg := rec.Registration; reg != nil && rec.Result == ResultPassed {
		var at *time.Time
		if !reg.At.IsZero() {
			t := reg.At.UTC()
			at = &t
		}
		if _, err := tx.Exec(ctx, `UPDATE records SET registration_state = $1, assigned_hub = $2, registered_at = $3,
			registration_error = $4, device_id = CASE WHEN device_id = '' THEN $5 ELSE device_id END,
			issued_chain = $7 WHERE serial = $6`,
			reg.State, reg.AssignedHub, at, reg.Error, reg.DeviceID, rec.Serial, reg.IssuedChain); err != nil {
			return nil, fmt.Errorf("record its registration: %w", err)
		}
	}
	return nil, nil
}

// bufferAudit reads a board's audit rows in the buffer after id.
func (b *Buffered) bufferAudit(ctx context.Context, serial string, after int64) ([]AuditEntry, error) {
	rows, err := b.buf.db.QueryContext(ctx, `SELECT id, time, serial, event, detail, operator FROM audit WHERE serial = ? AND id > ? ORDER BY id`, serial, after)
	if err != nil {
		return nil, fmt.Errorf("records: read the buffer's audit of %s: %w", serial, err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var a AuditEntry
		var t string
		if err := rows.Scan(&a.ID, &t, &a.Serial, &a.Event, &a.Detail, &a.Operator); err != nil {
			return nil, fmt.Errorf("records: read the buffer's audit of %s: %w", serial, err)
		}
		if a.Time, err = parseTime(t); err != nil {
			return nil, fmt.Errorf("records: read the buffer's audit of %s: %w", serial, err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

type pendingRegistration struct {
	seq              int64
	serial, operator string
	reg              Registration
}

func (b *Buffered) pendingRegistrations(ctx context.Context) ([]pendingRegistration, error) {
	rows, err := b.buf.db.QueryContext(ctx, `SELECT seq, serial, registration, operator FROM buffer_registrations WHERE forwarded = 0 ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("records: list the buffer's registrations: %w", err)
	}
	defer rows.Close()
	var out []pendingRegistration
	for rows.Next() {
		var p pendingRegistration
		var body string
		if err := rows.Scan(&p.seq, &p.serial, &body, &p.operator); err != nil {
			return nil, fmt.Errorf("records: list the buffer's registrations: %w", err)
		}
		if err := json.Unmarshal([]byte(body), &p.reg); err != nil {
			return nil, fmt.Errorf("records: the buffer's registration %d of %s is damaged: %w", p.seq, p.serial, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// forwardRegistration applies a buffered registration of a board the
// factory database holds, once.
func (b *Buffered) forwardRegistration(ctx context.Context, p pendingRegistration) error {
	mark := fmt.Sprintf("buffer %s (%s): registration %d of board %s", b.id, b.buf.Path(), p.seq, p.serial)
	what := "forward the registration of " + p.serial
	octx, cancel := context.WithTimeout(ctx, 2*b.timeout)
	defer cancel()
	err := b.pg.tx(octx, what, false, func(ctx context.Context, tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `SELECT id FROM records WHERE serial = $1 FOR UPDATE`, p.serial).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			id = 0 // nothing to set: the mark keeps the audit
		} else if err != nil {
			return fmt.Errorf("read its record: %w", err)
		}
		var done bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audit WHERE serial = $1 AND event = $2 AND detail = $3)`,
			p.serial, EventForwarded, mark).Scan(&done); err != nil {
			return fmt.Errorf("read its forward marks: %w", err)
		}
		if done {
			return nil
		}
		now := b.pg.clock()
		if id != 0 {
			var at *time.Time
			if !p.reg.At.IsZero() {
				t := p.reg.At.UTC()
				at = &t
			}
			if _, err := tx.Exec(ctx, `UPDATE records SET registration_state = $1, assigned_hub = $2, registered_at = $3,
				registration_error = $4, device_id = CASE WHEN device_id = '' THEN $5 ELSE device_id END, updated_at = $6,
				issued_chain = $8 WHERE id = $7`,
				p.reg.State, p.reg.AssignedHub, at, p.reg.Error, p.reg.DeviceID, now, id, p.reg.IssuedChain); err != nil {
				return fmt.Errorf("record its registration: %w", err)
			}
			if err := pgAudit(ctx, tx, now, id, p.serial, EventRegistration, p.reg.State+" (in the station's buffer while the factory database was offline)", p.operator); err != nil {
				return err
			}
		}
		return pgAudit(ctx, tx, now, id, p.serial, EventForwarded, mark, "")
	})
	if err != nil {
		if ctx.Err() == nil && (Unreachable(err) || errors.Is(err, context.DeadlineExceeded)) {
			return &OfflineError{Op: what, Err: err}
		}
		return err
	}
	return b.buf.write(ctx, "note the registration of "+p.serial+" forwarded", func(ctx context.Context, tx *wtx) error {
		_, err := tx.ExecContext(ctx, `UPDATE buffer_registrations SET forwarded = 1 WHERE seq = ?`, p.seq)
		return err
	})
}

// ForwardConflict is a buffered board found, when forwarded, to hold an
// EK or registration ID the factory had recorded under another serial.
type ForwardConflict struct {
	Serial string
	Detail string // the *CloneError's words
	At     time.Time
}

// Conflicts lists the buffered boards refused when forwarded: suspected
// clones whose enrollments the buffer holds, for a person.
func (b *Buffered) Conflicts(ctx context.Context) ([]ForwardConflict, error) {
	rows, err := b.buf.db.QueryContext(ctx, `SELECT serial, detail, at FROM buffer_forwarded WHERE state = ? ORDER BY at`, forwardConflict)
	if err != nil {
		return nil, fmt.Errorf("records: list the buffer's conflicts: %w", err)
	}
	defer rows.Close()
	var out []ForwardConflict
	for rows.Next() {
		var c ForwardConflict
		var at string
		if err := rows.Scan(&c.Serial, &c.Detail, &at); err != nil {
			return nil, fmt.Errorf("records: list the buffer's conflicts: %w", err)
		}
		if c.At, err = parseTime(at); err != nil {
			return nil, fmt.Errorf("records: list the buffer's conflicts: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
