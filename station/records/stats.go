package records

import (
	"context"
	"fmt"
	"time"
)

// StatsRow is the yield of one line, station and work order on one day:
// its boards by result. A board counts once, on the day of its latest
// run, under its latest result.
type StatsRow struct {
	Day        string `json:"day"` // YYYY-MM-DD, UTC
	Line       string `json:"line"`
	Station    string `json:"station"`
	WorkOrder  string `json:"workOrder"`
	Passed     int    `json:"passed"`
	Failed     int    `json:"failed"`
	InProgress int    `json:"inProgress"`
}

// statsSQL reads the yield of the days from since on out of daily_yield,
// which the records' triggers keep (migrations 0006, and 3 on
// PostgreSQL). day is the SQL for a row's day as YYYY-MM-DD; ph the
// placeholders for the three results and since.
func statsSQL(day string, ph [4]string) string {
	return `SELECT ` + day + ` AS d, line, station, work_order,
		sum(CASE WHEN result = ` + ph[0] + ` THEN boards ELSE 0 END),
		sum(CASE WHEN result = ` + ph[1] + ` THEN boards ELSE 0 END),
		sum(CASE WHEN result = ` + ph[2] + ` THEN boards ELSE 0 END)
		FROM daily_yield WHERE day >= ` + ph[3] + `
		GROUP BY day, line, station, work_order HAVING sum(boards) > 0
		ORDER BY day DESC, line, station, work_order`
}

// rowScanner is what both adapters' result rows offer.
type rowScanner interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

func scanStats(rows rowScanner) ([]StatsRow, error) {
	var out []StatsRow
	for rows.Next() {
		var r StatsRow
		if err := rows.Scan(&r.Day, &r.Line, &r.Station, &r.WorkOrder, &r.Passed, &r.Failed, &r.InProgress); err != nil {
			return nil, fmt.Errorf("records: stats: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("records: stats: %w", err)
	}
	return out, nil
}

// Stats is the yield per day, line, station and work order of the boards
// last run on since's day (UTC) or later (the zero time: all), newest day
// first. Safe for concurrent use.
func (s *Store) Stats(ctx context.Context, since time.Time) ([]StatsRow, error) {
	// Days are stored as YYYY-MM-DD, which compare as dates.
	rows, err := s.db.QueryContext(ctx, statsSQL("day", [4]string{"?", "?", "?", "?"}),
		ResultPassed, ResultFailed, ResultInProgress, since.UTC().Format(time.DateOnly))
	if err != nil {
		return nil, fmt.Errorf("records: stats: %w", err)
	}
	defer rows.Close()
	return scanStats(rows)
}

// Stats is Store.Stats on the factory's database: every station's boards.
func (s *PGStore) Stats(ctx context.Context, since time.Time) ([]StatsRow, error) {
	rows, err := s.pool.Query(ctx, statsSQL(`to_char(day, 'YYYY-MM-DD')`, [4]string{"$1", "$2", "$3", "$4"}),
		ResultPassed, ResultFailed, ResultInProgress, since.UTC().Truncate(24*time.Hour))
	if err != nil {
		return nil, fmt.Errorf("records: stats: %w", err)
	}
	defer rows.Close()
	return scanStats(rows)
}
