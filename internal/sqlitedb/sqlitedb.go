// Package sqlitedb opens SQLite files the way every zerotouch store wants
// them: WAL, synchronous=FULL (a committed transaction survives a power
// cut), foreign keys on, a busy timeout instead of SQLITE_BUSY, and
// schema migrations applied in order inside one transaction each.
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"zerotouch/internal/filelock"
	"zerotouch/internal/ownerfile"
)

// Options tune Open.
type Options struct {
	// Synchronous is the PRAGMA synchronous level; empty means FULL.
	// NORMAL in WAL mode can lose the last transactions on power loss but
	// never corrupts the file.
	Synchronous string
}

// Open opens (creating it if needed, mode 0600) the SQLite file at path and applies
// migrations: migrations[i] takes the schema from user_version i to i+1.
// A file whose user_version is beyond len(migrations) was written by a
// newer zerotouch and is refused.
func Open(ctx context.Context, path string, migrations []string, opts Options) (*sql.DB, error) {
	// Create the file private to its owner: stores hold keys and
	// identities. SQLite gives its -wal and -shm files the same mode on
	// Unix; on Windows they inherit their folder's ACL.
	if f, err := ownerfile.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	} else {
		f.Close()
	}
	sync := opts.Synchronous
	if sync == "" {
		sync = "FULL"
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Set("_txlock", "immediate")
	// As a URI, so that '#', '?' and '%' in the path are escaped, not read
	// as URI syntax.
	dsn := (&url.URL{Scheme: "file", OmitHost: true, Path: path, RawQuery: q.Encode()}).String()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := migrate(ctx, db, migrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

// migrate applies the migrations the file lacks, in one transaction, on
// a connection with foreign keys off (a migration may rebuild a table
// that others reference, as SQLite's documented way to change a table's
// constraints does) and checks every foreign key before it commits.
func migrate(ctx context.Context, db *sql.DB, migrations []string) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
		return fmt.Errorf("prepare migration: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys = ON")
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this zerotouch knows (%d): use a newer zerotouch", v, len(migrations))
	}
	if v == len(migrations) {
		return nil
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", i+1, err)
		}
	}
	rows, err := tx.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return fmt.Errorf("migrate schema: check foreign keys: %w", err)
	}
	broken := rows.Next()
	rows.Close()
	if broken {
		return fmt.Errorf("migrate schema to version %d: it leaves foreign keys that point nowhere", len(migrations))
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	return tx.Commit()
}

// ErrLocked means another process has the file open with OpenLocked.
var ErrLocked = errors.New("in use by another process")

// OpenLocked is Open for a store that one process at a time may write:
// it first takes an exclusive lock on path+".lock" (ErrLocked when
// another process holds it). Close the database, then the returned lock,
// to let the next process in. The folder of path is made when missing.
func OpenLocked(ctx context.Context, path string, migrations []string, opts Options) (*sql.DB, io.Closer, error) {
	// The folder is made when missing, readable by this user alone: it
	// holds the database, its journal and its lock.
	if err := ownerfile.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, fmt.Errorf("make the folder of %s: %w", path, err)
	}
	lock, err := filelock.TryLock(path + ".lock")
	if errors.Is(err, filelock.ErrLocked) {
		return nil, nil, fmt.Errorf("%s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, nil, err
	}
	db, err := Open(ctx, path, migrations, opts)
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	return db, lock, nil
}
