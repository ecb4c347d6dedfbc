package records

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"zerotouch/enroll"
	"zerotouch/internal/pause"
)

// PGQuota is a DPS service's quota shared by every uploader of a
// factory: a token bucket in the records database (table upload_quota,
// one row per DPS service), refilled at the rate the uploaders were given
// (the quota × share), holding one token at most. Each request takes a
// token in one UPDATE of that row, by the database's clock; a token taken
// before it is there is reserved, and the uploader waits until the
// refill reaches it. Together the uploaders thus send at the rate, evenly
// spaced, however many there are and whether they come or go; an
// uploader that dies loses only the tokens it had reserved (the others
// go slower for that moment, never faster). A pause DPS asks for (429
// with Retry-After) holds every uploader back.
//
// It is an enroll.Pacer. Its methods are safe for concurrent use and
// from many processes; it lives as long as its PGStore.
type PGQuota struct {
	s         *PGStore
	name      string
	perMinute float64
}

var _ enroll.Pacer = (*PGQuota)(nil)

// SharedQuota returns the shared quota of the DPS service name (its host
// name), pacing requests at perMinute a minute: the quota × the share
// for the whole factory. The bucket is made on first use; when it exists
// with another rate, this one replaces it, for every uploader, and
// previous says what it was (0 for a new bucket, or the same rate).
// Errors: perMinute not above 0 or an empty name (ErrInvalid); a role
// that may not write upload_quota (ErrReadOnly, naming the rights); the
// database's.
func (s *PGStore) SharedQuota(ctx context.Context, name string, perMinute float64) (q *PGQuota, previous float64, err error) {
	if name == "" || !(perMinute > 0) || math.IsInf(perMinute, 0) {
		return nil, 0, fmt.Errorf("records: shared DPS quota %q at %v a minute: %w: want a DPS host name and a rate above 0", name, perMinute, ErrInvalid)
	}
	var was *float64
	err = s.tx(ctx, "set the shared DPS quota", false, func(ctx context.Context, tx pgx.Tx) error {
		return tx.QueryRow(ctx, `WITH old AS (SELECT per_minute FROM upload_quota WHERE name = $1)
			INSERT INTO upload_quota AS q (name, per_minute, tokens, updated_at) VALUES ($1, $2, 1, clock_timestamp())
			ON CONFLICT (name) DO UPDATE SET per_minute = excluded.per_minute
			RETURNING (SELECT per_minute FROM old)`, name, perMinute).Scan(&was)
	})
	if err != nil {
		if errors.Is(err, ErrReadOnly) {
			return nil, 0, fmt.Errorf("%w (an uploader's role needs SELECT, INSERT, UPDATE on upload_quota)", err)
		}
		return nil, 0, err
	}
	if was != nil {
		previous = *was
	}
	return &PGQuota{s: s, name: name, perMinute: perMinute}, previous, nil
}

// PerMinute is the rate this PGQuota was made with.
func (q *PGQuota) PerMinute() float64 { return q.perMinute }

// Wait implements enroll.Pacer: it takes a token from the shared bucket
// and waits until it is due. Errors: ctx's; the database's (nothing is
// sent then).
func (q *PGQuota) Wait(ctx context.Context) error {
	d, err := q.take(ctx, 1, 0)
	if err != nil {
		return err
	}
	if d > 0 && !pause.For(ctx, d) {
		return ctx.Err()
	}
	return nil
}

// Pause implements enroll.Pacer: no uploader sends for d from now.
func (q *PGQuota) Pause(ctx context.Context, d time.Duration) error {
	_, err := q.take(ctx, 0, d)
	return err
}

// refill is the bucket's tokens at c.now: one at most.
const refill = `least(1, q.tokens + q.per_minute / 60 * greatest(0, extract(epoch FROM c.now - q.updated_at)))`

// take refills the bucket, then takes n tokens, or sets it d in debt
// (when that is lower), and returns how long until what was taken is
// due.
func (q *PGQuota) take(ctx context.Context, n int, d time.Duration) (time.Duration, error) {
	if q.s.readOnly {
		return 0, fmt.Errorf("records: pace by the shared DPS quota: %w", ErrReadOnly)
	}
	var tokens, perSecond float64
	err := q.s.pool.QueryRow(ctx, `WITH c AS (SELECT clock_timestamp() AS now)
		UPDATE upload_quota q SET
			tokens = CASE WHEN $3::float8 > 0 THEN least(`+refill+`, -q.per_minute / 60 * $3::float8) ELSE `+refill+` - $2::float8 END,
			updated_at = c.now
		FROM c WHERE q.name = $1
		RETURNING q.tokens, q.per_minute / 60`, q.name, n, d.Seconds()).Scan(&tokens, &perSecond)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, fmt.Errorf("records: pace by the shared DPS quota of %s: its bucket is gone from upload_quota", q.name)
	case err != nil:
		return 0, fmt.Errorf("records: pace by the shared DPS quota of %s: %w", q.name, err)
	case tokens >= 0:
		return 0, nil
	}
	return time.Duration(-tokens / perSecond * float64(time.Second)), nil
}
