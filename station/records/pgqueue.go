package records

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"zerotouch/enroll"
)

// The queue on PostgreSQL follows queue.go's rules (generation and
// claimed_generation, replaces), with a claim's owner and lease beside
// claimed_generation: the three are set together by Claim and cleared
// together when a claim ends (Settle, or Recover of an expired one).
// A claim is live while its lease has not run out (by the database's
// clock); the store that made it renews the lease every third of it
// while it is open. Only an expired claim is taken over: Recover puts its
// enrollment back to pending, and Claim may take it straight away.

// Recover implements enroll.Queue for one of many uploaders: enrollments
// left in flight under an expired lease (their uploader died, or lost the
// database) go back to pending, and expired claims are cleared; live
// claims, another uploader's work, are left alone. It returns how many
// were in flight. Safe for concurrent use, and with other uploaders
// running.
func (s *PGStore) Recover(ctx context.Context) (int, error) {
	var n int
	err := s.tx(ctx, "recover the upload queue", false, func(ctx context.Context, tx pgx.Tx) error {
		n = 0
		rows, err := tx.Query(ctx, `SELECT id, serial, upload_state, claimed_by, lease_until FROM records
			WHERE claimed_by IS NOT NULL AND lease_until < now() ORDER BY id FOR UPDATE SKIP LOCKED`)
		if err != nil {
			return err
		}
		type expired struct {
			id            int64
			serial, state string
			by            string
			until         time.Time
		}
		var es []expired
		for rows.Next() {
			var e expired
			if err := rows.Scan(&e.id, &e.serial, &e.state, &e.by, &e.until); err != nil {
				rows.Close()
				return err
			}
			es = append(es, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		now := s.clock()
		for _, e := range es {
			if _, err := tx.Exec(ctx, `UPDATE records SET upload_state = CASE WHEN upload_state = 'in_flight' THEN 'pending' ELSE upload_state END,
				claimed_generation = NULL, claimed_by = NULL, lease_until = NULL WHERE id = $1`, e.id); err != nil {
				return err
			}
			if e.state != string(enroll.StateInFlight) {
				continue
			}
			n++
			detail := fmt.Sprintf("in flight when uploader %s stopped (its lease ran out at %s): pending again (the uploader reads DPS back before it could enroll twice)",
				e.by, e.until.UTC().Format(time.RFC3339))
			if err := pgAudit(ctx, tx, now, e.id, e.serial, EventUploadRecovered, detail, ""); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// Claim implements enroll.Queue for one of many uploaders: it takes up to
// n enrollments, oldest queued first (pending ones of boards that passed,
// and ones whose claim's lease has run out), skipping rows another
// transaction holds (FOR UPDATE SKIP LOCKED), and marks them in flight
// under this store's lease before it returns them: two uploaders never
// hold one enrollment at once. Safe for concurrent use.
func (s *PGStore) Claim(ctx context.Context, n int) ([]enroll.Enrollment, error) {
	if n <= 0 {
		return nil, nil
	}
	s.renewOnce.Do(s.startRenewing)
	var es []enroll.Enrollment
	err := s.tx(ctx, "claim enrollments", false, func(ctx context.Context, tx pgx.Tx) error {
		es = nil
		rows, err := tx.Query(ctx, `SELECT id, serial, enrollment, generation, replaces, coalesce(claimed_by, ''), lease_until FROM records
			WHERE result = 'passed' AND (upload_state = 'pending' AND (claimed_by IS NULL OR lease_until < now())
				OR upload_state = 'in_flight' AND lease_until < now())
			ORDER BY queue_seq LIMIT $1 FOR UPDATE SKIP LOCKED`, n)
		if err != nil {
			return err
		}
		type claim struct {
			id         int64
			serial     string
			generation int64
			replaces   string
			was        string // the expired claim's uploader
			until      *time.Time
		}
		var claims []claim
		for rows.Next() {
			var c claim
			var body string
			if err := rows.Scan(&c.id, &c.serial, &body, &c.generation, &c.replaces, &c.was, &c.until); err != nil {
				rows.Close()
				return err
			}
			var e enroll.Enrollment
			if err := json.Unmarshal([]byte(body), &e); err != nil {
				rows.Close()
				return fmt.Errorf("records: claim enrollments: board %s: its stored enrollment is damaged: %w", c.serial, err)
			}
			e.ETag = c.replaces // non-empty: the uploader replaces DPS's (mode update)
			es = append(es, e)
			claims = append(claims, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		now := s.clock()
		for _, c := range claims {
			if _, err := tx.Exec(ctx, `UPDATE records SET upload_state = 'in_flight', claimed_generation = generation, claimed_by = $1,
				lease_until = now() + $2 * interval '1 microsecond' WHERE id = $3`, s.owner, s.lease.Microseconds(), c.id); err != nil {
				return fmt.Errorf("records: claim board %s: %w", c.serial, err)
			}
			detail := fmt.Sprintf("enrollment %d in flight, to be created", c.generation)
			if c.replaces != "" {
				detail = fmt.Sprintf("enrollment %d in flight, to replace the one DPS holds", c.generation)
			}
			detail += " by uploader " + s.owner
			if c.was != "" {
				detail += fmt.Sprintf(", taken over from uploader %s whose lease ran out at %s", c.was, c.until.UTC().Format(time.RFC3339))
			}
			if err := pgAudit(ctx, tx, now, c.id, c.serial, EventUploadClaimed, detail, ""); err != nil {
				return fmt.Errorf("records: claim board %s: %w", c.serial, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return es, nil
}

// startRenewing renews this store's leases every third of a lease until
// Close.
func (s *PGStore) startRenewing() {
	s.renewed.Add(1)
	go func() {
		defer s.renewed.Done()
		t := time.NewTicker(max(s.lease/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.renew(context.Background())
			}
		}
	}()
}

// renew extends the leases of this store's claims; one that has run out
// meanwhile (another uploader may take it) is not renewed.
func (s *PGStore) renew(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, max(s.lease/3, time.Second))
	defer cancel()
	tag, err := s.pool.Exec(ctx, `UPDATE records SET lease_until = now() + $1 * interval '1 microsecond' WHERE claimed_by = $2 AND lease_until >= now()`,
		s.lease.Microseconds(), s.owner)
	if err != nil {
		return 0, fmt.Errorf("records: renew the leases of uploader %s: %w", s.owner, err)
	}
	return tag.RowsAffected(), nil
}

// Settle implements enroll.Queue: it records the outcomes of claimed
// enrollments by the rules of Store.Settle. An outcome for a claim that
// another uploader has taken over (this store's lease ran out) is
// applied only when it says DPS took the enrollment (uploaded: a fact,
// whoever learned it); otherwise it is dropped with an EventUploadStale
// audit row, and the live claim decides. Safe for concurrent use.
func (s *PGStore) Settle(ctx context.Context, outs []enroll.Outcome) error {
	for _, o := range outs {
		switch o.State {
		case enroll.StatePending, enroll.StateUploaded, enroll.StateFailed, enroll.StateConflict:
		default:
			return fmt.Errorf("records: settle %s: %w: outcome state %q", o.RegistrationID, ErrInvalid, o.State)
		}
	}
	return s.tx(ctx, "settle uploads", false, func(ctx context.Context, tx pgx.Tx) error {
		now := s.clock()
		for _, o := range outs {
			if err := s.settle(ctx, tx, now, o); err != nil {
				return fmt.Errorf("records: settle %s: %w", o.RegistrationID, err)
			}
		}
		return nil
	})
}

func (s *PGStore) settle(ctx context.Context, tx pgx.Tx, now time.Time, o enroll.Outcome) error {
	var id, generation int64
	var serial, state, by string
	var claimed *int64
	err := tx.QueryRow(ctx, `SELECT id, serial, upload_state, generation, claimed_generation, coalesce(claimed_by, '') FROM records
		WHERE registration_id = $1 FOR UPDATE`, strings.ToLower(o.RegistrationID)).Scan(&id, &serial, &state, &generation, &claimed, &by)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil // the board has another registration ID now
	case err != nil:
		return err
	case claimed == nil:
		return nil // no claim out: settled already, or recovered
	}
	if by != s.owner {
		// A claim taken over (this uploader's lease ran out): the
		// outcome is for what this uploader sent, which may be an
		// enrollment the board has replaced since. It settles nothing;
		// DPS having taken it is remembered, so that what goes next
		// replaces it rather than meet it as a conflict.
		detail := fmt.Sprintf("DPS outcome %s from uploader %s, whose claim uploader %s has taken over (its lease ran out); ignored",
			describe(o), s.owner, by)
		if o.State == enroll.StateUploaded {
			if _, err := tx.Exec(ctx, `UPDATE records SET replaces = $1 WHERE id = $2`, cmp.Or(o.ETag, "*"), id); err != nil {
				return err
			}
			detail = fmt.Sprintf("DPS took the enrollment uploader %s sent, whose claim uploader %s has taken over (its lease ran out): remembered (etag %s), the claim left to %s",
				s.owner, by, cmp.Or(o.ETag, "*"), by)
		}
		return pgAudit(ctx, tx, now, id, serial, EventUploadStale, detail, "")
	}
	replaces := "" // unchanged unless DPS took it
	if o.State == enroll.StateUploaded {
		replaces = cmp.Or(o.ETag, "*")
	}
	if state != string(enroll.StateInFlight) || *claimed != generation {
		var err error
		if o.State == enroll.StateConflict {
			_, err = tx.Exec(ctx, `UPDATE records SET claimed_generation = NULL, claimed_by = NULL, lease_until = NULL, replaces = '' WHERE id = $1`, id)
		} else {
			_, err = tx.Exec(ctx, `UPDATE records SET claimed_generation = NULL, claimed_by = NULL, lease_until = NULL,
				replaces = coalesce(nullif($1, ''), replaces) WHERE id = $2`, replaces, id)
		}
		if err != nil {
			return err
		}
		detail := fmt.Sprintf("DPS outcome %s for enrollment %d, replaced since it was claimed; enrollment %d is %s",
			describe(o), *claimed, generation, orNone(state))
		return pgAudit(ctx, tx, now, id, serial, EventUploadStale, detail, "")
	}
	if _, err := tx.Exec(ctx, `UPDATE records SET upload_state = $1, upload_error = $2, etag = $3, claimed_generation = NULL,
		claimed_by = NULL, lease_until = NULL, replaces = coalesce(nullif($4, ''), replaces) WHERE id = $5`,
		o.State, o.Error, o.ETag, replaces, id); err != nil {
		return err
	}
	detail := fmt.Sprintf("enrollment %d %s", generation, describe(o))
	if by != s.owner {
		detail += fmt.Sprintf(" (reported by uploader %s after uploader %s took its claim over)", s.owner, by)
	}
	return pgAudit(ctx, tx, now, id, serial, EventUploadSettled, detail, "")
}
