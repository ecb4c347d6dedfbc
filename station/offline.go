package station

import (
	"context"
	"time"
)

// StepRecords is the Step of the station's own events about its records
// store, which name no slot (Slot ""): the factory database going offline
// and coming back (WatchOffline).
const StepRecords = "records"

// Offline is what Deps.Offline says now: the operator's words while the
// factory's records database does not answer and the station buffers its
// records, "" while it answers or when the station has no Deps.Offline.
// Safe for concurrent use.
func (s *Station) Offline() string {
	if s.deps.Offline == nil {
		return ""
	}
	return s.deps.Offline()
}

// WatchOffline reports the records store's offline state in the station's
// events until ctx ends: while Deps.Offline says the factory database is
// offline, an event with Slot "", Step StepRecords, Result Running and
// Offline set ("factory database offline: 3 boards buffered") every
// heartbeat, so that a line with no board running says so too; when the
// database is back, one such event with Offline "" and a Message saying
// so. It returns at once when the station has no Deps.Offline.
func (s *Station) WatchOffline(ctx context.Context) {
	if s.deps.Offline == nil {
		return
	}
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	was := ""
	for {
		now := s.Offline()
		switch {
		case now != "":
			s.deps.Events(Event{Schema: EventSchema, Time: s.deps.Now(), Step: StepRecords, Result: Running, Offline: now,
				Waiting: "the factory database"})
		case was != "":
			s.deps.Events(Event{Schema: EventSchema, Time: s.deps.Now(), Step: StepRecords, Result: Running,
				Message: "factory database back: the buffered boards are recorded in it"})
		}
		was = now
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
