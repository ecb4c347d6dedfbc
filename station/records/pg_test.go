package records_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"zerotouch/enroll"
	"zerotouch/internal/pgtest"
	"zerotouch/station/records"
)

// newTestPG opens a PGStore on a fresh database and returns it with the
// database's URL.
func newTestPG(t *testing.T) (*records.PGStore, string) {
	t.Helper()
	u := pgtest.New(t)
	s, err := records.OpenPostgres(context.Background(), u)
	if err != nil {
		t.Fatalf("OpenPostgres(%s): %v", u, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, u
}

func openPG(t *testing.T, u string) *records.PGStore {
	t.Helper()
	s, err := records.OpenPostgres(context.Background(), u)
	if err != nil {
		t.Fatalf("OpenPostgres(%s): %v", u, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func pgServer(t *testing.T) *pgtest.Server {
	t.Helper()
	s, err := pgtest.Shared()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dbOf is the database name of a URL.
func dbOf(t *testing.T, u string) string {
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(p.Path, "/")
}

// withQuery returns u with its query parameter key set to v ("" deletes it).
func withQuery(t *testing.T, u, key, v string) string {
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := p.Query()
	if v == "" {
		q.Del(key)
	} else {
		q.Set(key, v)
	}
	p.RawQuery = q.Encode()
	return p.String()
}

func TestOpenURLChoosesTheAdapter(t *testing.T) {
	for _, tt := range []struct {
		target string
		pg     bool
	}{
		{"postgres://h/db", true}, {"POSTGRESQL://h/db", true}, {"/var/lib/zerotouch/records.db", false},
		{"records.db", false}, {"postgres.db", false},
	} {
		if got := records.IsPostgresURL(tt.target); got != tt.pg {
			t.Errorf("IsPostgresURL(%q) = %v, want %v", tt.target, got, tt.pg)
		}
	}
	u := pgtest.New(t)
	s, err := records.OpenURL(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*records.PGStore); !ok {
		t.Errorf("OpenURL(%s) = %T, want *records.PGStore", u, s)
	}
	if s, err := records.OpenURL(context.Background(), t.TempDir()); err == nil || s != nil {
		t.Errorf("OpenURL(a folder) = %v, %v; want a nil DB and an error", s, err)
	}
}

func TestOpenPostgresRefusesAPasswordInTheURL(t *testing.T) {
	for _, u := range []string{
		"postgres://zerotouch:s3cret@127.0.0.1:5432/factory",
		"postgres://zerotouch@127.0.0.1:5432/factory?password=s3cret",
	} {
		_, err := records.OpenPostgres(context.Background(), u)
		if !errors.Is(err, records.ErrInvalid) || !strings.Contains(err.Error(), "PGPASSFILE") {
			t.Errorf("OpenPostgres(%q) = %v, want ErrInvalid telling to use PGPASSFILE", u, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("OpenPostgres(%q) = %v: the error shows the password", u, err)
		}
	}
}

func TestOpenPostgresCredentials(t *testing.T) {
	u := pgtest.New(t)
	bare := withQuery(t, u, "passfile", "")
	t.Setenv("PGPASSFILE", "/nonexistent")
	t.Setenv("PGPASSWORD", "")
	ctx := context.Background()
	if _, err := records.OpenPostgres(ctx, bare); err == nil || !strings.Contains(err.Error(), "password") {
		t.Errorf("OpenPostgres without a password = %v, want a password error", err)
	}
	t.Setenv("PGPASSWORD", "wrong")
	_, err := records.OpenPostgres(ctx, bare)
	if err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Errorf("OpenPostgres with a wrong password = %v, want an authentication error", err)
	}
	if err != nil && strings.Contains(err.Error(), "wrong") {
		t.Errorf("OpenPostgres with a wrong password = %v: the error shows the password", err)
	}
	t.Setenv("PGPASSWORD", pgServer(t).Password())
	s, err := records.OpenPostgres(ctx, bare)
	if err != nil {
		t.Fatalf("OpenPostgres with PGPASSWORD: %v", err)
	}
	s.Close()
	t.Setenv("PGPASSWORD", "")
	t.Setenv("PGPASSFILE", pgServer(t).PassFile())
	s, err = records.OpenPostgres(ctx, bare)
	if err != nil {
		t.Fatalf("OpenPostgres with PGPASSFILE: %v", err)
	}
	s.Close()
}

func TestOpenPostgresUnreachable(t *testing.T) {
	u := "postgres://zerotouch@127.0.0.1:1/factory?sslmode=disable&connect_timeout=10"
	_, err := records.OpenPostgres(context.Background(), u)
	if err == nil || !strings.Contains(err.Error(), "connect to postgres://zerotouch@127.0.0.1:1/factory") {
		t.Errorf("OpenPostgres(%s) = %v, want a connection error naming the database", u, err)
	}
}

func TestOpenPostgresWithoutWriteRights(t *testing.T) {
	s, u := newTestPG(t)
	if _, err := s.Save(context.Background(), tpmRecord("SN-1", 1)); err != nil {
		t.Fatal(err)
	}
	srv, db := pgServer(t), dbOf(t, u)
	ctx := context.Background()
	role := "reader_" + db
	if err := srv.Admin(ctx, "", `CREATE ROLE `+role+` LOGIN PASSWORD 'reader-pw'`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Admin(ctx, "", `DROP ROLE IF EXISTS `+role) })
	if err := srv.Admin(ctx, db, `GRANT SELECT ON records, audit, zerotouch_schema TO `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Admin(ctx, db, `REVOKE ALL ON records, audit, zerotouch_schema FROM `+role) })
	p, _ := url.Parse(u)
	p.User = url.User(role)
	t.Setenv("PGPASSWORD", "reader-pw")
	_, err := records.OpenPostgres(ctx, p.String())
	if !errors.Is(err, records.ErrReadOnly) || !strings.Contains(err.Error(), "may not write") {
		t.Errorf("OpenPostgres(role with SELECT only) = %v, want ErrReadOnly saying it may not write", err)
	}
	ro, err := records.OpenPostgresReadOnly(ctx, p.String())
	if err != nil {
		t.Fatalf("OpenPostgresReadOnly(role with SELECT only): %v", err)
	}
	defer ro.Close()
	if r, err := ro.Get(ctx, "SN-1"); err != nil || r.Serial != "SN-1" {
		t.Errorf("Get on a read-only store = %v, %v", r, err)
	}

	// The rights on the records and the audit, but not on the yield that
	// the records' trigger keeps: refused at open, not at every board.
	if err := srv.Admin(ctx, db, `GRANT INSERT, UPDATE ON records TO `+role+`; GRANT INSERT ON audit TO `+role+
		`; GRANT USAGE ON SEQUENCE records_queue_seq TO `+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Admin(ctx, db, `REVOKE ALL ON daily_yield FROM `+role+`; REVOKE ALL ON SEQUENCE records_queue_seq FROM `+role)
	})
	if _, err := records.OpenPostgres(ctx, p.String()); !errors.Is(err, records.ErrReadOnly) || !strings.Contains(err.Error(), "daily_yield") {
		t.Errorf("OpenPostgres(role without rights on daily_yield) = %v, want ErrReadOnly naming daily_yield", err)
	}
	if err := srv.Admin(ctx, db, `GRANT SELECT, INSERT, UPDATE ON daily_yield TO `+role); err != nil {
		t.Fatal(err)
	}
	w, err := records.OpenPostgres(ctx, p.String())
	if err != nil {
		t.Fatalf("OpenPostgres(role with the rights it names): %v", err)
	}
	defer w.Close()
	if _, err := w.Save(ctx, tpmRecord("SN-2", 2)); err != nil {
		t.Errorf("Save by a role with the rights OpenPostgres names: %v", err)
	}
}

func TestOpenPostgresNotRecords(t *testing.T) {
	u := pgtest.New(t)
	conn, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `CREATE TABLE records (x int)`); err != nil {
		t.Fatal(err)
	}
	if _, err := records.OpenPostgres(context.Background(), u); !errors.Is(err, records.ErrNotRecords) {
		t.Errorf("OpenPostgres(a database with another records table) = %v, want ErrNotRecords", err)
	}
	empty := pgtest.New(t)
	if _, err := records.OpenPostgresReadOnly(context.Background(), empty); !errors.Is(err, records.ErrNotRecords) {
		t.Errorf("OpenPostgresReadOnly(an empty database) = %v, want ErrNotRecords", err)
	}
}

// expireLeases makes every claim's lease run out.
func expireLeases(t *testing.T, u string) {
	t.Helper()
	if err := pgServer(t).Admin(context.Background(), dbOf(t, u), `UPDATE records SET lease_until = now() - interval '1 second' WHERE lease_until IS NOT NULL`); err != nil {
		t.Fatal(err)
	}
}

func TestLeaseTakeover(t *testing.T) {
	ctx := context.Background()
	a, u := newTestPG(t)
	a.SetLease(time.Hour)
	b := openPG(t, u)
	b.SetLease(time.Hour)
	r := tpmRecord("SN-1", 1)
	if _, err := a.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	if es, err := a.Claim(ctx, 5); err != nil || len(es) != 1 {
		t.Fatalf("A: Claim = %d, %v; want 1", len(es), err)
	}
	// A lives: B takes nothing of its.
	if es, err := b.Claim(ctx, 5); err != nil || len(es) != 0 {
		t.Errorf("B: Claim(A's live claim) = %d, %v; want none", len(es), err)
	}
	if n, err := b.Recover(ctx); err != nil || n != 0 {
		t.Errorf("B: Recover(A's live claim) = %d, %v; want 0", n, err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := b.Begin(short, tpmRecord("SN-1", 1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("B: Begin(board in flight under A's live lease) = %v, want it to wait (deadline exceeded)", err)
	}
	// A's lease runs out: B takes the claim over.
	expireLeases(t, u)
	es, err := b.Claim(ctx, 5)
	if err != nil || len(es) != 1 {
		t.Fatalf("B: Claim(A's expired claim) = %d, %v; want 1", len(es), err)
	}
	// A's late failure does not undo B's claim; B's outcome settles it.
	if err := a.Settle(ctx, []enroll.Outcome{{RegistrationID: r.RegistrationID, State: enroll.StateFailed, Error: "timeout"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Get(ctx, "SN-1"); got.UploadState != enroll.StateInFlight {
		t.Errorf("after A's late outcome: upload state %s, want in_flight (B's claim)", got.UploadState)
	}
	if err := b.Settle(ctx, []enroll.Outcome{{RegistrationID: r.RegistrationID, State: enroll.StateUploaded, ETag: "e1"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Get(ctx, "SN-1"); got.UploadState != enroll.StateUploaded || got.ETag != "e1" {
		t.Errorf("after B's outcome: %s %q, want uploaded e1", got.UploadState, got.ETag)
	}
	ev := map[string]int{}
	as, _ := b.Audit(ctx, "SN-1")
	for _, e := range as {
		ev[e.Event]++
		if e.Event == records.EventUploadClaimed && strings.Contains(e.Detail, "taken over") {
			ev["taken over"]++
		}
	}
	if ev["taken over"] != 1 || ev[records.EventUploadStale] != 1 || ev[records.EventUploadSettled] != 1 {
		t.Errorf("audit events %v, want one takeover, one stale outcome, one settled", ev)
	}
}

func TestLateUploadedOutcomeIsKept(t *testing.T) {
	ctx := context.Background()
	a, u := newTestPG(t)
	b := openPG(t, u)
	r := tpmRecord("SN-1", 1)
	if _, err := a.Save(ctx, r); err != nil {
		t.Fatal(err)
	}
	if es, err := a.Claim(ctx, 1); err != nil || len(es) != 1 {
		t.Fatalf("A: Claim = %d, %v", len(es), err)
	}
	expireLeases(t, u)
	if n, err := b.Recover(ctx); err != nil || n != 1 {
		t.Fatalf("B: Recover(A's expired claim) = %d, %v; want 1", n, err)
	}
	// Meanwhile the board is provisioned again: a changed enrollment,
	// which B claims.
	changed := tpmRecord("SN-1", 1)
	changed.Enrollment.ProvisioningStatus = "disabled"
	if _, err := b.Save(ctx, changed); err != nil {
		t.Fatal(err)
	}
	es, err := b.Claim(ctx, 1)
	if err != nil || len(es) != 1 || es[0].ProvisioningStatus != "disabled" {
		t.Fatalf("B: Claim = %+v, %v; want the changed enrollment", es, err)
	}
	// DPS took A's upload of the old one after all: that settles nothing
	// of B's claim, which is for the new one.
	if err := a.Settle(ctx, []enroll.Outcome{{RegistrationID: r.RegistrationID, State: enroll.StateUploaded, ETag: "a"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Get(ctx, "SN-1"); got.UploadState != enroll.StateInFlight {
		t.Errorf("after A's late upload: %s, want in_flight (B's claim of the new enrollment)", got.UploadState)
	}
	// What B sends next replaces what DPS holds (A's upload).
	if err := b.Settle(ctx, []enroll.Outcome{{RegistrationID: r.RegistrationID, State: enroll.StatePending}}); err != nil {
		t.Fatal(err)
	}
	es, err = b.Claim(ctx, 1)
	if err != nil || len(es) != 1 || es[0].ETag != "a" || es[0].ProvisioningStatus != "disabled" {
		t.Fatalf("B: Claim after A's late upload = %+v, %v; want the new enrollment to replace A's (ETag a)", es, err)
	}
	if err := b.Settle(ctx, []enroll.Outcome{{RegistrationID: r.RegistrationID, State: enroll.StateUploaded, ETag: "b"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Get(ctx, "SN-1"); got.UploadState != enroll.StateUploaded || got.ETag != "b" {
		t.Errorf("after B's upload: %s %q, want uploaded b", got.UploadState, got.ETag)
	}
}

func TestLeasesAreRenewed(t *testing.T) {
	ctx := context.Background()
	s, u := newTestPG(t)
	s.SetLease(time.Hour)
	for i := range 3 {
		if _, err := s.Save(ctx, tpmRecord("SN-"+string(rune('A'+i)), i)); err != nil {
			t.Fatal(err)
		}
	}
	if es, err := s.Claim(ctx, 3); err != nil || len(es) != 3 {
		t.Fatalf("Claim = %d, %v", len(es), err)
	}
	srv, db := pgServer(t), dbOf(t, u)
	if err := srv.Admin(ctx, db, `UPDATE records SET lease_until = now() + interval '1 minute'`); err != nil {
		t.Fatal(err)
	}
	if err := srv.Admin(ctx, db, `UPDATE records SET lease_until = now() - interval '1 second' WHERE serial = 'SN-C'`); err != nil {
		t.Fatal(err)
	}
	n, err := records.Renew(ctx, s)
	if err != nil || n != 2 {
		t.Fatalf("Renew = %d, %v; want 2 (an expired lease is not renewed: another uploader may hold it)", n, err)
	}
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var long int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM records WHERE lease_until > now() + interval '50 minutes'`).Scan(&long); err != nil || long != 2 {
		t.Errorf("leases renewed to an hour = %d, %v; want 2", long, err)
	}
}
