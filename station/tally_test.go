package station

import (
	"errors"
	"testing"
)

// A board counts once, with its last run's result; a run that failed
// before the board said who it was is replaced by its slot's next run.
func TestTally(t *testing.T) {
	fail := errors.New("failed")
	type run struct {
		slot, serial string
		err          error
	}
	for _, tc := range []struct {
		name           string
		runs           []run
		passed, failed int
	}{
		{"retried then passed", []run{{"s1", "A", fail}, {"s1", "A", nil}}, 1, 0},
		{"failed twice", []run{{"s1", "A", fail}, {"s1", "A", fail}}, 0, 1},
		{"dropped before its serial, reseated, passed", []run{{"s1", "", fail}, {"s1", "A", nil}}, 1, 0},
		{"silent twice on a slot", []run{{"s1", "", fail}, {"s1", "", fail}}, 0, 1},
		{"silent on two slots", []run{{"s1", "", fail}, {"s2", "", fail}}, 0, 2},
		{"passed on one slot, failed on another later", []run{{"s1", "A", nil}, {"s2", "A", fail}}, 0, 1},
		{"two boards", []run{{"s1", "A", nil}, {"s1", "B", fail}}, 1, 1},
	} {
		var ta tally
		n := 0
		for _, r := range tc.runs {
			n = ta.add(r.slot, r.serial, r.err)
		}
		p, f := ta.counts()
		if p != tc.passed || f != tc.failed || n != p+f {
			t.Errorf("%s: passed %d, failed %d, boards %d; want %d, %d", tc.name, p, f, n, tc.passed, tc.failed)
		}
	}
}
