package pgtest_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"zerotouch/internal/pgtest"
)

func connect(t *testing.T, u string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatalf("connect to %s: %v", u, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestNewGivesAFreshDatabaseWithoutAPasswordInItsURL(t *testing.T) {
	u1, u2 := pgtest.New(t), pgtest.New(t)
	if u1 == u2 {
		t.Fatalf("New twice = %q both times, want two databases", u1)
	}
	p, err := url.Parse(u1)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.User.Password(); ok {
		t.Errorf("New() = %q: holds a password", u1)
	}
	if p.Query().Get("passfile") == "" {
		t.Errorf("New() = %q: names no passfile", u1)
	}
	conn := connect(t, u1)
	var user, db string
	if err := conn.QueryRow(context.Background(), `SELECT current_user, current_database()`).Scan(&user, &db); err != nil {
		t.Fatal(err)
	}
	if user != pgtest.Role || "/"+db != p.Path {
		t.Errorf("connected as %s to %s, want %s to %s", user, db, pgtest.Role, p.Path)
	}
	// The role owns its database: it can make tables there.
	if _, err := conn.Exec(context.Background(), `CREATE TABLE t (x int)`); err != nil {
		t.Errorf("CREATE TABLE as %s: %v", user, err)
	}
}

func TestPasswordIsRequired(t *testing.T) {
	u := pgtest.New(t)
	p, _ := url.Parse(u)
	q := p.Query()
	q.Del("passfile")
	p.RawQuery = q.Encode()
	t.Setenv("PGPASSFILE", "/nonexistent")
	t.Setenv("PGPASSWORD", "")
	if _, err := pgx.Connect(context.Background(), p.String()); err == nil || !strings.Contains(err.Error(), "password") {
		t.Errorf("connect without a password = %v, want a password error", err)
	}
	s, err := pgtest.Shared()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGPASSWORD", s.Password())
	connect(t, p.String())
}

func TestStopAndStart(t *testing.T) {
	u := pgtest.New(t)
	s, err := pgtest.Shared()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := connect(t, u).Exec(context.Background(), `CREATE TABLE kept (x int); INSERT INTO kept VALUES (7)`); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(pgtest.Immediate); err != nil {
		t.Fatalf("Stop(immediate): %v", err)
	}
	if _, err := pgx.Connect(context.Background(), u); err == nil {
		t.Errorf("connect to a stopped server succeeded")
	}
	if err := s.Stop("gently"); err == nil {
		t.Errorf("Stop(%q) = nil, want an error", "gently")
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	var x int
	if err := connect(t, u).QueryRow(context.Background(), `SELECT x FROM kept`).Scan(&x); err != nil || x != 7 {
		t.Errorf("after a restart: x = %d, %v; want 7", x, err)
	}
}
