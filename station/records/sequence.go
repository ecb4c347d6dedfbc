package records

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrSequenceOffline means a serial number from a sequence was asked of a
// station whose factory database does not answer: only the factory
// database hands them out, so that no two stations ever hand out the
// same one.
var ErrSequenceOffline = errors.New("serial numbers from a sequence come from the factory database, which is offline")

// checkSequence checks a sequence's name.
func checkSequence(name string) error {
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("records: next serial: %w: no sequence name", ErrInvalid)
	}
	return nil
}

// NextSerial hands out the next number of the sequence name: 1 for a
// sequence never used, then one more each call. The number is durable
// before NextSerial returns: no later call, from this process or another
// that opens the file after a crash, hands it out again. A number handed
// out and never used (the board failed, the station died) is a gap, never
// a repeat. Safe for concurrent use.
func (s *Store) NextSerial(ctx context.Context, name string) (int64, error) {
	if err := checkSequence(name); err != nil {
		return 0, err
	}
	var n int64
	err := s.write(ctx, "next serial of "+name, func(ctx context.Context, tx *wtx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO serial_sequences (name, last, updated_at) VALUES (?, 1, ?)
			ON CONFLICT (name) DO UPDATE SET last = last + 1, updated_at = excluded.updated_at
			RETURNING last`, name, formatTime(s.now())).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("records: next serial of sequence %q: %w", name, err)
	}
	return n, nil
}

// NextSerial hands out the next number of the sequence name, by the rules
// of Store.NextSerial, across every station that shares the database.
// Safe for concurrent use.
func (s *PGStore) NextSerial(ctx context.Context, name string) (int64, error) {
	if err := checkSequence(name); err != nil {
		return 0, err
	}
	var n int64
	err := s.tx(ctx, "next serial of "+name, true, func(ctx context.Context, tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO serial_sequences (name, last, updated_at) VALUES ($1, 1, $2)
			ON CONFLICT (name) DO UPDATE SET last = serial_sequences.last + 1, updated_at = excluded.updated_at
			RETURNING last`, name, s.clock()).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("records: next serial of sequence %q: %w", name, err)
	}
	return n, nil
}

// NextSerial hands out the next number of the sequence name from the
// factory database (PGStore.NextSerial). While the database is offline it
// hands out none: an error wrapping ErrSequenceOffline (and the
// *OfflineError), since the buffer cannot know what other stations
// handed out meanwhile.
func (b *Buffered) NextSerial(ctx context.Context, name string) (int64, error) {
	if b.isOffline() {
		return 0, fmt.Errorf("records: next serial of sequence %q: %w", name, ErrSequenceOffline)
	}
	var n int64
	err := b.call(ctx, "next serial of "+name, func(ctx context.Context) (err error) {
		n, err = b.pg.NextSerial(ctx, name)
		return err
	})
	if b.unreachable(ctx, err) {
		b.goOffline("next serial of "+name, err)
		return 0, fmt.Errorf("%w: %w", ErrSequenceOffline, err)
	}
	return n, err
}
