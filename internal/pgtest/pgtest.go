// Package pgtest runs a real PostgreSQL server for tests, the way the
// tests already run swtpm: initdb into a temporary folder, the server on a
// free loopback port with its Unix socket inside that folder, and one
// fresh database per test (New).
//
// One server serves a whole test binary: the first New starts it, later
// ones reuse it. It runs as a child of the test process that dies with it
// (the parent-death signal asks for an immediate shutdown), and a small
// watcher removes its folder once the test process has gone, however it
// ended. PostgreSQL refuses to run as root: when the tests run as root (as
// CI does), initdb and the server run as the postgres system user that
// Debian's postgresql package creates, in a folder it owns.
//
// The test role has a password (SCRAM): the URLs New returns carry none,
// and name the server's password file instead (passfile=...), as libpq
// reads it; Password returns it for tests of PGPASSWORD.
//
// Nothing is skipped: without PostgreSQL's programs, New fails the test
// with what to install.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// TB is the part of testing.TB that New uses.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
	Name() string
}

// Role is the login role the test databases belong to.
const Role = "zerotouch"

// Install says what to install when PostgreSQL's programs are missing.
const Install = "install PostgreSQL's server (Debian: apt-get install -y postgresql; its programs are in /usr/lib/postgresql/<version>/bin)"

// Stop modes, as pg_ctl stop -m names them.
const (
	Smart     = "smart"     // wait for the clients to disconnect
	Fast      = "fast"      // disconnect them, shut down cleanly
	Immediate = "immediate" // quit at once, recovery at the next start (a crash, for the database)
)

// Server is a running PostgreSQL (or a stopped one, between Stop and
// Start). Its methods are safe for concurrent use.
type Server struct {
	Dir      string // the folder: data/, the socket, the password file
	Port     int    // on 127.0.0.1
	password string
	bin      string              // the folder of postgres and initdb
	cred     *syscall.Credential // run as this user; nil: as ourselves

	mu    sync.Mutex
	proc  *exec.Cmd
	exit  chan struct{} // closed when proc has exited
	log   *os.File
	seq   atomic.Int64 // databases made
	admin *pgx.Conn    // superuser connection over the socket; nil when stopped
	watch *os.File     // the removal watcher's standard input
}

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
)

// Shared returns the test binary's server, starting it at the first call.
func Shared() (*Server, error) {
	sharedOnce.Do(func() { shared, sharedErr = Start(context.Background()) })
	return shared, sharedErr
}

// New makes a fresh, empty database owned by Role on the shared server
// and returns its URL (postgres://zerotouch@127.0.0.1:PORT/NAME?
// sslmode=disable&passfile=...). The database is dropped when the test
// ends. A server that cannot start fails the test.
func New(t TB) string {
	t.Helper()
	s, err := Shared()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	u, err := s.CreateDB(context.Background(), t.Name())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.DropDB(context.Background(), u); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	})
	return u
}

// findBin returns the folder holding initdb and postgres: on PATH, or
// Debian's /usr/lib/postgresql/<newest>/bin.
func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if p, err = filepath.EvalSymlinks(p); err == nil {
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), "postgres")); err == nil {
				return filepath.Dir(p), nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	best, bestV := "", -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil && v > bestV {
			best, bestV = d, v
		}
	}
	if best == "" {
		return "", fmt.Errorf("no initdb and postgres found on PATH or in /usr/lib/postgresql/*/bin: %s", Install)
	}
	return best, nil
}

// Start makes a new server in a new temporary folder and starts it. The
// caller stops it with Close; a test uses New instead.
func Start(ctx context.Context) (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin}
	var uid, gid int = -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, PostgreSQL must run as another user, and there is no postgres user (%v): %s", err, Install)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}
	}
	if s.Dir, err = os.MkdirTemp("", "pgtest-"); err != nil {
		return nil, fmt.Errorf("make the server's folder: %w", err)
	}
	if s.cred != nil {
		if err := os.Chown(s.Dir, uid, gid); err != nil {
			os.RemoveAll(s.Dir)
			return nil, fmt.Errorf("give %s to the postgres user: %w", s.Dir, err)
		}
	}
	if err := s.watchRemoval(); err != nil {
		os.RemoveAll(s.Dir)
		return nil, err
	}
	pw := make([]byte, 12)
	rand.Read(pw)
	s.password = hex.EncodeToString(pw)
	if err := s.initdb(ctx); err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	if _, err := s.admin.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD '%s'`, Role, s.password)); err != nil {
		s.Close()
		return nil, fmt.Errorf("create role %s: %w", Role, err)
	}
	passfile := filepath.Join(s.Dir, "pgpass")
	if err := os.WriteFile(passfile, fmt.Appendf(nil, "127.0.0.1:%d:*:%s:%s\n", s.Port, Role, s.password), 0o600); err != nil {
		s.Close()
		return nil, fmt.Errorf("write the password file: %w", err)
	}
	return s, nil
}

// watchRemoval starts a shell that removes the folder once this process
// has gone (its standard input, a pipe from us, then reads end of file)
// and the server with it.
func (s *Server) watchRemoval() error {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("pgtest: watcher: %w", err)
	}
	script := `read _; i=0; while [ -e "$1/data/postmaster.pid" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; rm -rf "$1"`
	cmd := exec.Command("/bin/sh", "-c", script, "sh", s.Dir)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // not killed with our process group by ^C
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return fmt.Errorf("pgtest: watcher: %w", err)
	}
	r.Close()
	go cmd.Wait()
	s.watch = w // open until Close, or the process exits
	return nil
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

func (s *Server) initdb(ctx context.Context) error {
	cmd := s.command("initdb", "-D", filepath.Join(s.Dir, "data"), "-U", "postgres", "--auth-local=trust",
		"--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb in %s: %v\n%s", s.Dir, err, out)
	}
	return nil
}

// starter runs every start of a server from one goroutine locked to its
// own thread, which lives as long as the process: the parent-death signal
// goes when the thread that started the child ends, not the process.
var starter = sync.OnceValue(func() chan func() {
	c := make(chan func())
	go func() {
		runtime.LockOSThread()
		for f := range c {
			f()
		}
	}()
	return c
})

// Start starts the server after a Stop (Start has started it already:
// then it does nothing) and waits until it accepts connections. If its
// port has been taken meanwhile it fails.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return nil
	}
	if s.Port == 0 {
		var err error
		if s.Port, err = freePort(); err != nil {
			return err
		}
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: server log: %w", err)
	}
	cmd := s.command("postgres", "-D", filepath.Join(s.Dir, "data"), "-p", strconv.Itoa(s.Port), "-k", s.Dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB",
		"-c", "log_min_messages=warning")
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT // immediate shutdown when we die
	done := make(chan error)
	starter() <- func() { done <- cmd.Start() }
	if err := <-done; err != nil {
		logf.Close()
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	exit := make(chan struct{})
	go func() { cmd.Wait(); close(exit) }()
	s.proc, s.exit, s.log = cmd, exit, logf
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := pgx.Connect(context.Background(), fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", s.Dir, s.Port))
		if err == nil {
			s.admin = conn
			return nil
		}
		select {
		case <-exit:
			s.proc, s.exit = nil, nil
			logf.Close()
			b, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
			return fmt.Errorf("pgtest: postgres exited at start: %s", tail(b))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stopLocked(Immediate)
			return fmt.Errorf("pgtest: postgres does not accept connections after a minute: %v", err)
		}
	}
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Stop stops the server in a mode of pg_ctl stop -m (Smart, Fast or
// Immediate) and waits until it has exited. A stopped server's Stop does
// nothing.
func (s *Server) Stop(mode string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(mode)
}

func (s *Server) stopLocked(mode string) error {
	sig := map[string]syscall.Signal{Smart: syscall.SIGTERM, Fast: syscall.SIGINT, Immediate: syscall.SIGQUIT}[mode]
	if sig == 0 {
		return fmt.Errorf("pgtest: stop mode %q: want %s, %s or %s", mode, Smart, Fast, Immediate)
	}
	if s.proc == nil {
		return nil
	}
	if s.admin != nil {
		s.admin.Close(context.Background())
		s.admin = nil
	}
	if err := s.proc.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("pgtest: stop postgres: %w", err)
	}
	<-s.exit
	s.log.Close()
	s.proc, s.exit, s.log = nil, nil, nil
	return nil
}

// Close stops the server (fast) and removes its folder.
func (s *Server) Close() error {
	err := s.Stop(Fast)
	os.RemoveAll(s.Dir)
	if s.watch != nil {
		s.watch.Close()
	}
	return err
}

// Password is Role's password, for a test of PGPASSWORD.
func (s *Server) Password() string { return s.password }

// PassFile is the password file the URLs name (libpq's format).
func (s *Server) PassFile() string { return filepath.Join(s.Dir, "pgpass") }

// URL is the URL of database name as Role: no password in it, the
// password file named by passfile.
func (s *Server) URL(name string) string {
	q := url.Values{"sslmode": {"disable"}, "passfile": {s.PassFile()}}
	return (&url.URL{Scheme: "postgres", User: url.User(Role), Host: fmt.Sprintf("127.0.0.1:%d", s.Port),
		Path: "/" + name, RawQuery: q.Encode()}).String()
}

// Admin runs sql as the superuser in database db ("" for the server's
// postgres database), for tests that change what a store cannot: expire a
// lease, make a role without rights.
func (s *Server) Admin(ctx context.Context, db, sql string, args ...any) error {
	if db == "" {
		db = "postgres"
	}
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=%s", s.Dir, s.Port, db))
	if err != nil {
		return fmt.Errorf("pgtest: connect to %s as postgres: %w", db, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("pgtest: %s: %w", db, err)
	}
	return nil
}

// CreateDB makes a new database owned by Role, named after hint, and
// returns its URL.
func (s *Server) CreateDB(ctx context.Context, hint string) (string, error) {
	name := dbName(hint, s.seq.Add(1))
	if err := s.Admin(ctx, "", `CREATE DATABASE `+name+` OWNER `+Role); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.URL(name), nil
}

// DropDB drops the database of a URL CreateDB returned, disconnecting
// whoever is still connected. A stopped server is started again first.
func (s *Server) DropDB(ctx context.Context, u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	name := strings.TrimPrefix(p.Path, "/")
	if err := s.Admin(ctx, "", `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// dbName makes a database name from a test name: lower-case letters,
// digits and underscores, short, unique by n.
func dbName(hint string, n int64) string {
	var b strings.Builder
	for _, r := range strings.ToLower(hint) {
		if b.Len() >= 40 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return fmt.Sprintf("t%d_%s", n, b.String())
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
