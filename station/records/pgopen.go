package records

import (
	"context"
	"io"
	"time"

	"zerotouch/enroll"
)

// DB is the records store whichever adapter holds it: *Store (a SQLite
// file, one station) or *PGStore (a PostgreSQL database, a factory). Both
// keep the same rules, checked by one contract test suite; their methods'
// comments say what each adds. Callers declare the smaller interfaces they
// use (station.Recorder, ui.Records, enroll.Queue); DB is what OpenURL
// returns, for the code that opens a store and hands it to them.
type DB interface {
	Begin(ctx context.Context, r *Record) error
	Save(ctx context.Context, r *Record) (SaveResult, error)
	InProgress(ctx context.Context) ([]Record, error)
	SetRegistration(ctx context.Context, serial string, reg Registration, operator string) error
	SetAside(ctx context.Context, serial, slot, operator string) error
	// NextSerial hands out the next number of a serial sequence, never
	// twice (Store.NextSerial).
	NextSerial(ctx context.Context, name string) (int64, error)

	Get(ctx context.Context, key string) (*Record, error)
	List(ctx context.Context, f Filter) ([]Record, error)
	Page(ctx context.Context, f Filter, cursor string, size int) (Page, error)
	Audit(ctx context.Context, key string) ([]AuditEntry, error)
	Counts(ctx context.Context) (map[enroll.State]int, error)
	Export(ctx context.Context, w io.Writer, format string, f Filter) (int, error)
	Stats(ctx context.Context, since time.Time) ([]StatsRow, error)

	enroll.Queue // Recover, Claim, Settle
	Close() error
}

var (
	_ DB = (*Store)(nil)
	_ DB = (*PGStore)(nil)
)

// OpenURL opens the records store that target names, for writing: a
// postgres:// (or postgresql://) URL opens PostgreSQL (OpenPostgres), and
// anything else is a SQLite file's path (Open). Its errors are theirs.
func OpenURL(ctx context.Context, target string) (DB, error) {
	if IsPostgresURL(target) {
		return nonNil(OpenPostgres(ctx, target))
	}
	return nonNil(Open(ctx, target))
}

// OpenURLReadOnly opens the records store that target names for reading,
// as OpenURL chooses (OpenPostgresReadOnly or OpenReadOnly).
func OpenURLReadOnly(ctx context.Context, target string) (DB, error) {
	if IsPostgresURL(target) {
		return nonNil(OpenPostgresReadOnly(ctx, target))
	}
	return nonNil(OpenReadOnly(ctx, target))
}

// nonNil returns a nil DB, not one holding a nil pointer, with an error.
func nonNil[T DB](s T, err error) (DB, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}
