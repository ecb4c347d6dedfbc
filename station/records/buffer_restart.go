package records

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// A station restarted while its factory database does not answer starts
// offline when its buffer has met that database before: the buffer keeps
// the database's name and the factory's EKs and registration IDs as last
// read (buffer_known), so the clone check offline survives the restart.
// A station whose buffer never reached the database gets the database's
// error, before the first board.

const bufferKnownSchema = `
CREATE TABLE IF NOT EXISTS buffer_known (
	key             TEXT PRIMARY KEY, -- "ek:" + sha256 of the EK, or "id:" + registration ID
	serial          TEXT NOT NULL,
	registration_id TEXT NOT NULL,
	station         TEXT NOT NULL,
	line            TEXT NOT NULL
);`

// saveKnown keeps what refreshKnown read in the buffer, with the
// database's name and the newest change read.
func (b *Buffered) saveKnown(ctx context.Context, found map[string]knownBoard, watermark time.Time) error {
	return b.buf.write(ctx, "keep the factory's EKs and registration IDs", func(ctx context.Context, tx *wtx) error {
		for key, k := range found {
			if _, err := tx.ExecContext(ctx, `INSERT INTO buffer_known (key, serial, registration_id, station, line) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (key) DO UPDATE SET serial = excluded.serial, registration_id = excluded.registration_id,
				station = excluded.station, line = excluded.line`, key, k.serial, k.registrationID, k.station, k.line); err != nil {
				return fmt.Errorf("keep the factory's EKs: %w", err)
			}
		}
		for _, kv := range [][2]string{{"database", b.pg.name}, {"watermark", formatTime(watermark)}} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO buffer_meta (key, value) VALUES (?, ?)
				ON CONFLICT (key) DO UPDATE SET value = excluded.value`, kv[0], kv[1]); err != nil {
				return fmt.Errorf("keep the factory's EKs: %w", err)
			}
		}
		return nil
	})
}

// loadKnown reads what saveKnown kept, if the buffer met the database
// named name; false if it never did.
func (b *Buffered) loadKnown(ctx context.Context, name string) (bool, error) {
	var db, mark string
	err := b.buf.db.QueryRowContext(ctx, `SELECT (SELECT value FROM buffer_meta WHERE key = 'database'),
		(SELECT value FROM buffer_meta WHERE key = 'watermark')`).Scan(&db, &mark)
	if err != nil || db != name {
		return false, nil // NULLs: never met it
	}
	watermark, err := parseTime(mark)
	if err != nil {
		return false, fmt.Errorf("the buffer's last read of the factory database: %w", err)
	}
	rows, err := b.buf.db.QueryContext(ctx, `SELECT key, serial, registration_id, station, line FROM buffer_known`)
	if err != nil {
		return false, fmt.Errorf("read the factory's EKs kept in the buffer: %w", err)
	}
	defer rows.Close()
	known := map[string]knownBoard{}
	for rows.Next() {
		var key string
		var k knownBoard
		if err := rows.Scan(&key, &k.serial, &k.registrationID, &k.station, &k.line); err != nil {
			return false, fmt.Errorf("read the factory's EKs kept in the buffer: %w", err)
		}
		known[key] = k
	}
	if err := rows.Err(); err != nil {
		return false, fmt.Errorf("read the factory's EKs kept in the buffer: %w", err)
	}
	b.mu.Lock()
	b.known, b.watermark = known, watermark
	b.mu.Unlock()
	return true, nil
}

// openPostgresLater makes the PGStore of a database that does not answer
// yet: its pool connects when first used; ready migrates and checks it.
func openPostgresLater(rawURL string) (*PGStore, error) {
	cfg, name, err := parsePGURL(rawURL)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("records: %s: %w", name, err)
	}
	return &PGStore{pool: pool, name: name, now: time.Now, owner: newOwner(), lease: DefaultLease,
		denseAt: denseMatches, scanWindow: scanWindow, stop: make(chan struct{})}, nil
}

// ready does for a store from openPostgresLater what OpenPostgres does
// once the database answers: the schema brought up to date, the role's
// rights checked.
func (s *PGStore) ready(ctx context.Context) error {
	if err := s.migrate(ctx); err != nil {
		return err
	}
	var user string
	var ok bool
	if err := s.pool.QueryRow(ctx, rightsSQL).Scan(&user, &ok); err != nil {
		return fmt.Errorf("records: %s: check the role's rights: %w", s.name, err)
	}
	if !ok {
		return fmt.Errorf("records: %s: role %s may not write the records (it needs %s): %w", s.name, user, rightsNeeded, ErrReadOnly)
	}
	return nil
}

// openOffline opens the buffer of a station whose factory database did
// not answer at start (err), if the buffer met that database before;
// otherwise it returns err.
func openOffline(ctx context.Context, url, bufferPath string, opt BufferOptions, pgErr error) (*Buffered, error) {
	if _, err := os.Stat(bufferPath); err != nil {
		return nil, pgErr // no buffer: this station never met the database
	}
	pg, err := openPostgresLater(url)
	if err != nil {
		return nil, pgErr
	}
	buf, err := Open(ctx, bufferPath)
	if err != nil {
		pg.Close()
		return nil, errors.Join(pgErr, fmt.Errorf("records: the buffer for the factory database: %w", err))
	}
	b := newBuffered(pg, buf, opt)
	fail := func(err error) (*Buffered, error) {
		buf.Close()
		pg.Close()
		return nil, err
	}
	if err := b.initBuffer(ctx); err != nil {
		return fail(errors.Join(pgErr, fmt.Errorf("records: the buffer %s: %w", bufferPath, err)))
	}
	met, err := b.loadKnown(ctx, pg.name)
	if err != nil {
		return fail(errors.Join(pgErr, fmt.Errorf("records: the buffer %s: %w", bufferPath, err)))
	}
	if !met {
		return fail(pgErr)
	}
	n, err := b.countBuffered(ctx)
	if err != nil {
		return fail(fmt.Errorf("records: the buffer %s: %w", bufferPath, err))
	}
	b.offline, b.since, b.buffered, b.lastErr, b.unready = true, time.Now(), n, pgErr, true
	b.log.Warn("the factory records database does not answer: the station starts offline, recording into its buffer until it does",
		"buffer", bufferPath, "boards", n, "err", pgErr)
	go b.forwardLoop()
	return b, nil
}
