package records

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestWriteGroups queues writes while a commit is under way and checks
// that they are committed together in one transaction: a write whose
// function fails (here by a statement the audit log's trigger refuses, or
// by an error of its own) leaves nothing behind and its error reaches its
// caller alone; a write whose context ended before it ran is not run; the
// others are committed once each, though the group ran again after each
// failure.
func TestWriteGroups(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "records.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	errOwn := errors.New("the write's own error")
	cancelled, cancel := context.WithCancel(ctx)
	const n = 12
	kind := func(i int) string {
		switch i % 4 {
		case 1:
			return "trigger" // writes a row, then a statement the trigger refuses
		case 2:
			return "own" // writes a row, then fails by itself
		case 3:
			if i == 3 {
				return "cancelled"
			}
		}
		return "ok"
	}
	s.committer <- struct{}{} // as if a commit were under way
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		c := ctx
		if kind(i) == "cancelled" {
			c = cancelled
		}
		wg.Go(func() {
			errs[i] = s.write(c, fmt.Sprintf("write %d", i), func(ctx context.Context, tx *wtx) error {
				if err := audit(ctx, tx, formatTime(time.Now()), 0, fmt.Sprintf("W%02d", i), "test", kind(i), ""); err != nil {
					return err
				}
				switch kind(i) {
				case "trigger":
					_, err := tx.ExecContext(ctx, `UPDATE audit SET detail = 'changed'`)
					return err
				case "own":
					return errOwn
				}
				return nil
			})
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		q := len(s.queued)
		s.mu.Unlock()
		if q == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-s.committer // the commit ends: one of the waiting writes commits them all
	wg.Wait()

	rows, err := s.db.QueryContext(ctx, `SELECT serial FROM audit WHERE event = 'test'`)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]int{}
	for rows.Next() {
		var serial string
		if err := rows.Scan(&serial); err != nil {
			t.Fatal(err)
		}
		stored[serial]++
	}
	rows.Close()
	for i := range n {
		serial := fmt.Sprintf("W%02d", i)
		switch kind(i) {
		case "ok":
			if errs[i] != nil || stored[serial] != 1 {
				t.Errorf("write %d: err %v, stored %d times; want committed once", i, errs[i], stored[serial])
			}
		case "trigger":
			if errs[i] == nil || stored[serial] != 0 {
				t.Errorf("write %d (refused by the trigger): err %v, stored %d; want an error and nothing stored", i, errs[i], stored[serial])
			}
		case "own":
			if !errors.Is(errs[i], errOwn) || stored[serial] != 0 {
				t.Errorf("write %d (failing): err %v, stored %d; want its own error and nothing stored", i, errs[i], stored[serial])
			}
		case "cancelled":
			if !errors.Is(errs[i], context.Canceled) || stored[serial] != 0 {
				t.Errorf("write %d (cancelled): err %v, stored %d; want context.Canceled and nothing stored", i, errs[i], stored[serial])
			}
		}
	}

	if got := s.Commits(); got != 1 {
		t.Errorf("%d commits, want the group's one", got)
	}

	// The store goes on writing after the group.
	if err := s.write(ctx, "after", func(ctx context.Context, tx *wtx) error {
		return audit(ctx, tx, formatTime(time.Now()), 0, "AFTER", "test", "", "")
	}); err != nil {
		t.Fatalf("a write after the group: %v", err)
	}
}
