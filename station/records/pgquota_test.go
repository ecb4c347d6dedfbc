package records_test

import (
	"context"
	"errors"
	"math"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"zerotouch/station/records"
)

// sharedQuota returns store s's PGQuota of name at perMinute.
func sharedQuota(t *testing.T, s *records.PGStore, name string, perMinute float64) *records.PGQuota {
	t.Helper()
	q, _, err := s.SharedQuota(context.Background(), name, perMinute)
	if err != nil {
		t.Fatalf("SharedQuota(%q, %v): %v", name, perMinute, err)
	}
	return q
}

// Three uploaders, each with its store, share one bucket: together they
// take no more than its rate, whichever of them asks.
func TestPGQuotaPacesTogether(t *testing.T) {
	_, u := newTestPG(t)
	const perMinute, each = 6000, 34 // 100 a second; 102 requests in all
	first := openPG(t, u)
	qs := []*records.PGQuota{
		sharedQuota(t, first, "dps.example", perMinute),
		sharedQuota(t, openPG(t, u), "dps.example", perMinute),
		sharedQuota(t, openPG(t, u), "dps.example", perMinute),
	}
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(qs)*each)
	for _, q := range qs {
		for range 2 { // two workers an uploader
			wg.Go(func() {
				for range each / 2 {
					if err := q.Wait(ctx); err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Wait: %v", err)
	}
	// The bucket starts with one token; the other 101 come at 100 a second.
	n := len(qs) * each
	if got, least := time.Since(start), time.Duration(n-1)*time.Second/100; got < least {
		t.Errorf("%d requests at %d a minute shared by 3 uploaders took %v, want at least %v", n, perMinute, got, least)
	}

	// Another DPS service's bucket is its own: this one's pause does
	// not hold it back.
	if err := qs[0].Pause(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	other := sharedQuota(t, first, "other.example", 60)
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := other.Wait(tctx); err != nil {
		t.Errorf("Wait on a fresh bucket of another service while the first is paused for an hour: %v", err)
	}
}

// A pause one uploader was asked for holds back the others.
func TestPGQuotaPause(t *testing.T) {
	_, u := newTestPG(t)
	a := sharedQuota(t, openPG(t, u), "dps.example", 60000)
	b := sharedQuota(t, openPG(t, u), "dps.example", 60000)
	ctx := context.Background()
	const d = 700 * time.Millisecond
	start := time.Now()
	if err := a.Pause(ctx, d); err != nil {
		t.Fatalf("Pause: %v", err)
	}
	if err := b.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if got := time.Since(start); got < d {
		t.Errorf("Wait after another uploader's Pause(%v) returned after %v", d, got)
	}
	// A Wait whose context ends while it waits says so.
	if err := a.Pause(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait during a minute's pause with a 50 ms context = %v, want DeadlineExceeded", err)
	}
}

// The last uploader to start sets the rate, and learns the one it
// replaced.
func TestPGQuotaRate(t *testing.T) {
	s, u := newTestPG(t)
	ctx := context.Background()
	for _, c := range []struct {
		s         *records.PGStore
		perMinute float64
		previous  float64
	}{{s, 970, 0}, {openPG(t, u), 1940, 970}, {s, 1940, 1940}} {
		q, prev, err := c.s.SharedQuota(ctx, "dps.example", c.perMinute)
		if err != nil || prev != c.previous || q.PerMinute() != c.perMinute {
			t.Errorf("SharedQuota(%v) = %v a minute, previous %v, %v; want previous %v", c.perMinute, q.PerMinute(), prev, err, c.previous)
		}
	}
	for _, c := range []struct {
		name      string
		perMinute float64
	}{{"dps.example", 0}, {"dps.example", -5}, {"dps.example", math.NaN()}, {"dps.example", math.Inf(1)}, {"", 100}} {
		if _, _, err := s.SharedQuota(ctx, c.name, c.perMinute); !errors.Is(err, records.ErrInvalid) {
			t.Errorf("SharedQuota(%q, %v) = %v, want ErrInvalid", c.name, c.perMinute, err)
		}
	}
}

// A role that may write the records but not the shared quota is told
// which rights it lacks; a read-only store has none.
func TestPGQuotaRights(t *testing.T) {
	_, u := newTestPG(t)
	srv, db := pgServer(t), dbOf(t, u)
	ctx := context.Background()
	role := "uploader_" + db
	if err := srv.Admin(ctx, "", `CREATE ROLE `+role+` LOGIN PASSWORD 'uploader-pw'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Admin(ctx, "", `DROP ROLE IF EXISTS `+role) })
	if err := srv.Admin(ctx, db, `GRANT SELECT, INSERT, UPDATE ON records, daily_yield TO `+role+`; GRANT SELECT, INSERT ON audit TO `+role+
		`; GRANT SELECT ON zerotouch_schema, upload_quota TO `+role+`; GRANT USAGE ON SEQUENCE records_queue_seq TO `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Admin(ctx, db, `REVOKE ALL ON records, daily_yield, audit, zerotouch_schema, upload_quota FROM `+role+`; REVOKE ALL ON SEQUENCE records_queue_seq FROM `+role)
	})
	p, _ := url.Parse(u)
	p.User = url.User(role)
	t.Setenv("PGPASSWORD", "uploader-pw")
	s, err := records.OpenPostgres(ctx, p.String())
	if err != nil {
		t.Fatalf("OpenPostgres(a role that may write the records): %v", err)
	}
	defer s.Close()
	if _, _, err := s.SharedQuota(ctx, "dps.example", 970); !errors.Is(err, records.ErrReadOnly) || !strings.Contains(err.Error(), "upload_quota") {
		t.Errorf("SharedQuota(a role without rights on upload_quota) = %v, want ErrReadOnly naming upload_quota", err)
	}
	t.Setenv("PGPASSWORD", "")
	ro, err := records.OpenPostgresReadOnly(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, _, err := ro.SharedQuota(ctx, "dps.example", 970); !errors.Is(err, records.ErrReadOnly) {
		t.Errorf("SharedQuota on a read-only store = %v, want ErrReadOnly", err)
	}
}
