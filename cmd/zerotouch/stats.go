package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"zerotouch/enroll"
	"zerotouch/internal/textsafe"
	"zerotouch/station/records"
)

// parseSince reads --since: a date (2026-12-01, UTC) or how long ago
// (36h, 7d).
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	var d time.Duration
	var err error
	if n, ok := cutSuffixInt(s, "d"); ok {
		d = time.Duration(n) * 24 * time.Hour
	} else if d, err = time.ParseDuration(s); err != nil {
		d = -1
	}
	if d < 0 {
		return time.Time{}, fmt.Errorf("--since %q: want a date (2026-12-01) or how long ago (36h, 7d)", s)
	}
	return now.Add(-d), nil
}

func cutSuffixInt(s, suffix string) (int, bool) {
	var n int
	if len(s) <= len(suffix) || s[len(s)-len(suffix):] != suffix {
		return 0, false
	}
	if _, err := fmt.Sscanf(s[:len(s)-len(suffix)], "%d", &n); err != nil || n < 0 || fmt.Sprint(n) != s[:len(s)-len(suffix)] {
		return 0, false
	}
	return n, true
}

// statsReport is records stats's --json object.
type statsReport struct {
	Database string               `json:"database"`
	Since    string               `json:"since,omitempty"` // YYYY-MM-DD
	Rows     []records.StatsRow   `json:"rows"`
	Passed   int                  `json:"passed"`
	Failed   int                  `json:"failed"`
	Queue    map[enroll.State]int `json:"queue"` // upload states, held included
}

func recordsStatsCmd(g *globals, db *string) *cobra.Command {
	var since string
	cmd := &cobra.Command{
		Use:   "stats [--since DATE|AGO]",
		Short: "Boards passed and failed per day, line, station and work order, and the upload queue",
		Long: `Print the yield: boards passed and failed (and still in progress) per day,
line, station and work order, newest day first, and the upload queue's
states. A board counts once, on the day of its latest run, under its
latest result. On a factory database (--db postgres://...) that is every
station's boards. --since keeps the days from a date (2026-12-01) or from
how long ago (36h, 7d); days are UTC. --json prints one object.

Exit status: 0 on success; 1 when the database cannot be read; 2 when the
command line is wrong or --db names no records database.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, err := parseSince(since, time.Now())
			if err != nil {
				return usageError{err}
			}
			s, err := openRecords(cmd.Context(), *db)
			if err != nil {
				return err
			}
			defer s.Close()
			rows, err := s.Stats(cmd.Context(), from)
			if err != nil {
				return err
			}
			queue, err := s.Counts(cmd.Context())
			if err != nil {
				return err
			}
			rep := statsReport{Database: *db, Rows: rows, Queue: queue}
			if rep.Rows == nil {
				rep.Rows = []records.StatsRow{}
			}
			if !from.IsZero() {
				rep.Since = from.UTC().Format(time.DateOnly)
			}
			for _, r := range rows {
				rep.Passed += r.Passed
				rep.Failed += r.Failed
			}
			if g.json {
				return json.NewEncoder(g.stdout).Encode(rep)
			}
			if len(rows) == 0 {
				fmt.Fprintf(g.stderr, "%s: no boards%s\n", *db, map[bool]string{true: "", false: " since " + rep.Since}[from.IsZero()])
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			if len(rows) > 0 {
				fmt.Fprintln(tw, "DAY\tLINE\tSTATION\tWORK ORDER\tPASSED\tFAILED\tIN PROGRESS\tYIELD")
			}
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", r.Day, dash(textsafe.Escape(r.Line)), dash(textsafe.Escape(r.Station)),
					dash(textsafe.Escape(r.WorkOrder)), r.Passed, r.Failed, r.InProgress, yield(r.Passed, r.Failed))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "%d boards passed, %d failed (yield %s); upload queue: %d pending, %d in flight, %d uploaded, %d held, %d failed, %d in conflict\n",
				rep.Passed, rep.Failed, yield(rep.Passed, rep.Failed), queue[enroll.StatePending], queue[enroll.StateInFlight], queue[enroll.StateUploaded],
				queue[records.StateHeld], queue[enroll.StateFailed], queue[enroll.StateConflict])
			return nil
		},
	}
	cmd.Flags().StringVar(&since, "since", "", "only the days from this date (2026-12-01) or from this long ago (36h, 7d)")
	return cmd
}

// yield is passed boards over passed and failed, as a percentage.
func yield(passed, failed int) string {
	if passed+failed == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(passed)/float64(passed+failed))
}
