package station

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"

	"zerotouch/station/records"
)

// Errors of the supervisor's rules.
var (
	// ErrSupervisor means the supervisor must allow what was asked: a
	// board refused as a possible clone runs again only on a station the
	// supervisor unlocked.
	ErrSupervisor = errors.New("the supervisor must allow this")
	// ErrNoSupervisor means the configuration sets no supervisor password
	// (gui.supervisor_password_hash), so nothing can be unlocked.
	ErrNoSupervisor = errors.New("no supervisor password is set (gui.supervisor_password_hash)")
	// ErrWrongPassword means the password given is not the supervisor's.
	ErrWrongPassword = errors.New("not the supervisor's password")
)

// Unlock checks the supervisor's password against the configuration's
// hash and, if it is the supervisor's, lets boards refused as possible
// clones run again (Retry, or put back on a fixture) until Lock. The
// window's unlock and headless runs given the supervisor's password both
// come here: the rule is the station's. Safe for concurrent use.
func (s *Station) Unlock(password []byte) error {
	hash := s.cfg.GUI.SupervisorPasswordHash
	if hash == "" {
		return ErrNoSupervisor
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), password); err != nil {
		s.log.Warn("supervisor unlock refused: wrong password")
		return ErrWrongPassword
	}
	s.mu.Lock()
	s.supervised = true
	s.mu.Unlock()
	s.log.Info("unlocked by the supervisor: boards refused as possible clones may run again")
	return nil
}

// Lock undoes Unlock.
func (s *Station) Lock() {
	s.mu.Lock()
	s.supervised = false
	s.mu.Unlock()
}

// Unlocked reports whether the supervisor has unlocked the station.
func (s *Station) Unlocked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.supervised
}

// checkSuspect refuses, unless the supervisor unlocked the station, a
// board refused as a possible clone that has not passed since: an error
// wrapping ErrSupervisor and records.ErrClone. A board new to the records
// is no suspect.
func (s *Station) checkSuspect(ctx context.Context, serial string) error {
	if s.Unlocked() {
		return nil
	}
	rec, err := s.deps.Store.Get(ctx, serial)
	if errors.Is(err, records.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the board's record: %w", err)
	}
	if rec.Result == records.ResultPassed || rec.Result == records.ResultInProgress && rec.PreviousResult == records.ResultPassed {
		return nil
	}
	audit, err := s.deps.Store.Audit(ctx, serial)
	if err != nil {
		return fmt.Errorf("read the board's audit: %w", err)
	}
	for _, a := range audit {
		if a.Serial == serial && a.Event == records.EventClone {
			return fmt.Errorf("%w: board %s: %w (audit %s)", ErrSupervisor, serial, records.ErrClone, a.Time.Format("2006-01-02 15:04:05"))
		}
	}
	return nil
}

// HashPassword returns the bcrypt hash of a supervisor password, for
// gui.supervisor_password_hash.
func HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash the supervisor password: %w", err)
	}
	return string(h), nil
}
