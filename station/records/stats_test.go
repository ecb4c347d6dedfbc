package records_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"zerotouch/enroll"

	"zerotouch/station/records"
)

func TestContractStats(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		ctx := context.Background()
		s := a.open(t)
		board := func(serial string, i int, line, station, wo, result string) {
			r := tpmRecord(serial, i)
			r.Line, r.Station, r.WorkOrder, r.Result = line, station, wo, result
			csave(t, s, r)
		}
		board("SN-1", 1, "line-a", "st-1", "wo-1", records.ResultPassed)
		board("SN-2", 2, "line-a", "st-1", "wo-1", records.ResultPassed)
		board("SN-3", 3, "line-a", "st-1", "wo-1", records.ResultFailed)
		board("SN-4", 4, "line-a", "st-2", "wo-1", records.ResultPassed)
		board("SN-5", 5, "line-b", "st-3", "wo-2", records.ResultFailed)
		// A board run again counts once, under its latest result.
		board("SN-3", 3, "line-a", "st-1", "wo-1", records.ResultPassed)

		today := time.Now().UTC().Format(time.DateOnly)
		want := []records.StatsRow{
			{Day: today, Line: "line-a", Station: "st-1", WorkOrder: "wo-1", Passed: 3},
			{Day: today, Line: "line-a", Station: "st-2", WorkOrder: "wo-1", Passed: 1},
			{Day: today, Line: "line-b", Station: "st-3", WorkOrder: "wo-2", Failed: 1},
		}
		for _, since := range []time.Time{{}, time.Now()} {
			got, err := s.Stats(ctx, since)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("Stats(since %v) (-want +got):\n%s", since, d)
			}
		}
		// The queue's work (claims, outcomes, a recovery) and a board
		// begun again change no count: each board is still once.
		claimAll(t, s, 3)
		es := claimAll(t, s, 1)
		if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: es[0].RegistrationID, State: enroll.StateUploaded}}); err != nil {
			t.Fatal(err)
		}
		a.expire(t)
		if _, err := s.Recover(ctx); err != nil {
			t.Fatal(err)
		}
		again := tpmRecord("SN-4", 4)
		again.Line, again.Station, again.WorkOrder = "line-a", "st-2", "wo-1"
		if err := s.Begin(ctx, again); err != nil {
			t.Fatal(err)
		}
		rows, err := s.Stats(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		total, inProgress := 0, 0
		for _, r := range rows {
			total += r.Passed + r.Failed + r.InProgress
			inProgress += r.InProgress
		}
		if total != 5 || inProgress != 1 {
			t.Errorf("after the queue's work and a board begun again, Stats = %+v; want 5 boards, 1 in progress", rows)
		}

		got, err := s.Stats(ctx, time.Now().Add(48*time.Hour))
		if err != nil || len(got) != 0 {
			t.Errorf("Stats(since the day after tomorrow) = %v, %v; want none", got, err)
		}
	})
}
