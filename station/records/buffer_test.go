package records_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"zerotouch/internal/pgtest"
	"zerotouch/station/records"
)

// cutProxy passes TCP connections to a PostgreSQL server until it is cut:
// then it drops every connection and refuses new ones, as a network that
// fails does, without stopping the server other tests share.
type cutProxy struct {
	t      *testing.T
	addr   string
	target string

	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
	frozen bool // pass nothing, answer nothing: packets dropped
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{t: t, addr: ln.Addr().String(), target: target, ln: ln}
	go p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *cutProxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		frozen := p.frozen
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		if frozen {
			continue // accepted, never answered
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, s)
		p.mu.Unlock()
		go func() { p.relay(s, c); s.Close() }()
		go func() { p.relay(c, s); c.Close() }()
	}
}

// relay copies src to dst, holding what it reads while the proxy is
// frozen.
func (p *cutProxy) relay(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for p.isFrozen() {
			time.Sleep(10 * time.Millisecond)
		}
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *cutProxy) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

// freeze stops passing bytes, as a network that drops packets: nothing
// is refused, nothing answers.
func (p *cutProxy) freeze(frozen bool) {
	p.mu.Lock()
	p.frozen = frozen
	p.mu.Unlock()
}

// cut drops every connection and refuses new ones.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// restore accepts connections again, on the same address.
func (p *cutProxy) restore() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("listen again on %s: %v", p.addr, err)
	}
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go p.serve(ln)
}

// bufferedFixture is a factory database reached directly (url) and
// through a proxy the test may cut (proxied).
type bufferedFixture struct {
	url, proxied string
	proxy        *cutProxy
	buffer       string // the buffer file's path
}

func newBufferedFixture(t *testing.T) *bufferedFixture {
	t.Helper()
	u := pgtest.New(t)
	srv := pgServer(t)
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newCutProxy(t, pu.Host)
	dir := t.TempDir()
	_, port, _ := net.SplitHostPort(proxy.addr)
	pass := filepath.Join(dir, "pgpass")
	if err := os.WriteFile(pass, fmt.Appendf(nil, "127.0.0.1:%s:*:%s:%s\n", port, pgtest.Role, srv.Password()), 0o600); err != nil {
		t.Fatal(err)
	}
	pu.Host = proxy.addr
	q := pu.Query()
	q.Set("passfile", pass)
	q.Set("connect_timeout", "2")
	pu.RawQuery = q.Encode()
	return &bufferedFixture{url: u, proxied: pu.String(), proxy: proxy, buffer: filepath.Join(dir, records.DefaultBuffer)}
}

// open opens the buffered store through the proxy; its forwarder waits
// for the test (Forward) unless retry is set.
func (f *bufferedFixture) open(t *testing.T, retry time.Duration) *records.Buffered {
	t.Helper()
	if retry == 0 {
		retry = time.Hour
	}
	b, err := records.OpenBuffered(context.Background(), f.proxied, f.buffer, records.BufferOptions{Timeout: 2 * time.Second, Retry: retry})
	if err != nil {
		t.Fatalf("OpenBuffered: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// pendingRegIDs claims everything the factory's queue holds and returns
// the registration IDs.
func pendingRegIDs(t *testing.T, pg *records.PGStore) map[string]bool {
	t.Helper()
	es, err := pg.Claim(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, e := range es {
		m[e.RegistrationID] = true
	}
	return m
}

func forwardAll(t *testing.T, b *records.Buffered) int {
	t.Helper()
	n, err := b.Forward(context.Background())
	if err != nil {
		t.Fatalf("Forward: %v", err)
	}
	if _, _, off := b.Offline(); off {
		t.Fatalf("Offline() after Forward = offline, want online")
	}
	return n
}

func TestBufferKeepsTheLineGoingAndForwards(t *testing.T) {
	ctx := context.Background()
	f := newBufferedFixture(t)
	b := f.open(t, 0)
	for i := range 2 {
		r := tpmRecord(fmt.Sprintf("SN-%d", i), i)
		if _, err := b.Save(ctx, r); err != nil {
			t.Fatalf("Save online: %v", err)
		}
	}
	if n, _, off := b.Offline(); off || n != 0 {
		t.Fatalf("Offline() online = %d, %v; want 0, false", n, off)
	}

	f.proxy.cut()
	start := time.Now()
	for i := 2; i < 7; i++ {
		if i == 3 {
			t.Logf("the first board's writes with the database cut off took %v", time.Since(start))
		}
		r := tpmRecord(fmt.Sprintf("SN-%d", i), i)
		begin := &records.Record{Serial: r.Serial, Attestation: r.Attestation, Station: r.Station, Line: r.Line}
		if err := b.Begin(ctx, begin); err != nil {
			t.Fatalf("Begin(%s) offline: %v", r.Serial, err)
		}
		if _, err := b.Save(ctx, r); err != nil {
			t.Fatalf("Save(%s) offline: %v", r.Serial, err)
		}
	}
	// A board of the factory provisioned again during the outage.
	again := tpmRecord("SN-0", 0)
	again.Slot = "2"
	if _, err := b.Save(ctx, again); err != nil {
		t.Fatalf("Save(SN-0) again offline: %v", err)
	}
	n, since, off := b.Offline()
	if !off || n != 6 || since.IsZero() {
		t.Fatalf("Offline() = %d, %v, %v; want 6 boards, a time, offline", n, since, off)
	}
	if got, want := b.OfflineText(), "factory database offline: 6 boards buffered"; got != want {
		t.Errorf("OfflineText() = %q, want %q", got, want)
	}
	r, err := b.Get(ctx, "SN-4")
	if err != nil || r.Result != records.ResultPassed {
		t.Fatalf("Get(SN-4) offline = %v, %v; want the buffered record", r, err)
	}
	start = time.Now()
	_, err = b.Forward(ctx)
	t.Logf("Forward with the database cut off took %v", time.Since(start))
	if !errors.Is(err, records.ErrOffline) {
		t.Fatalf("Forward with the database cut = %v, want ErrOffline", err)
	}

	f.proxy.restore()
	start = time.Now()
	got := forwardAll(t, b)
	t.Logf("forwarding 6 boards took %v", time.Since(start))
	if got != 6 {
		t.Errorf("Forward forwarded %d boards, want 6", got)
	}
	pg := openPG(t, f.url)
	all, err := pg.List(ctx, records.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 7 {
		t.Fatalf("factory database holds %d records, want 7", len(all))
	}
	for _, r := range all {
		if r.Result != records.ResultPassed {
			t.Errorf("record %s result %q, want passed", r.Serial, r.Result)
		}
	}
	// In the order the station recorded them: SN-2 .. SN-6, then SN-0.
	var order []string
	for i := 2; i < 7; i++ {
		order = append(order, fmt.Sprintf("SN-%d", i))
	}
	order = append(order, "SN-0")
	var marks []string
	for _, s := range order {
		es, err := pg.Audit(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.Event == records.EventForwarded {
				marks = append(marks, fmt.Sprintf("%s@%d", s, e.ID))
			}
		}
	}
	if len(marks) != 6 {
		t.Fatalf("forward marks %v, want one per buffered board", marks)
	}
	for i := 1; i < len(marks); i++ {
		var a, c int
		fmt.Sscanf(marks[i-1][strings.Index(marks[i-1], "@")+1:], "%d", &a)
		fmt.Sscanf(marks[i][strings.Index(marks[i], "@")+1:], "%d", &c)
		if a > c {
			t.Errorf("forwarded out of order: %v", marks)
		}
	}
	pend := pendingRegIDs(t, pg)
	for i := range 7 {
		if id := tpmRecord("x", i).RegistrationID; !pend[id] {
			t.Errorf("enrollment of SN-%d not pending in the factory queue", i)
		}
	}
	if s, _ := pg.Get(ctx, "SN-0"); s.Slot != "2" {
		t.Errorf("SN-0 slot %q, want the buffered run's 2", s.Slot)
	}
	// Online again: writes go to the factory database.
	if _, err := b.Save(ctx, tpmRecord("SN-9", 9)); err != nil {
		t.Fatal(err)
	}
	if _, err := pg.Get(ctx, "SN-9"); err != nil {
		t.Errorf("SN-9 saved online is not in the factory database: %v", err)
	}
}

func TestBufferRefusesClonesItCanSee(t *testing.T) {
	ctx := context.Background()
	f := newBufferedFixture(t)
	// Recorded by another station before this one opened.
	other := openPG(t, f.url)
	held := tpmRecord("SN-F", 1)
	held.Station, held.Line = "st-9", "line-5"
	if _, err := other.Save(ctx, held); err != nil {
		t.Fatal(err)
	}
	b := f.open(t, 0)
	f.proxy.cut()

	var ce *records.CloneError
	_, err := b.Save(ctx, tpmRecord("SN-X", 1))
	if !errors.Is(err, records.ErrClone) || !errors.As(err, &ce) || ce.OtherSerial != "SN-F" || ce.OtherStation != "st-9" || ce.OtherLine != "line-5" {
		t.Fatalf("Save offline of the factory's EK = %v, want a CloneError naming SN-F, st-9, line-5", err)
	}
	if _, err := b.Save(ctx, tpmRecord("SN-A", 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Save(ctx, tpmRecord("SN-B", 2)); !errors.Is(err, records.ErrClone) {
		t.Fatalf("Save offline of a buffered board's EK = %v, want ErrClone", err)
	}
	f.proxy.restore()
	forwardAll(t, b)
	es, err := other.Audit(ctx, "SN-X")
	if err != nil {
		t.Fatal(err)
	}
	if !hasEvent(es, records.EventClone) {
		t.Errorf("factory audit of SN-X %v, want the buffered clone refusal", es)
	}
	if _, err := other.Get(ctx, "SN-X"); !errors.Is(err, records.ErrNotFound) {
		t.Errorf("Get(SN-X) = %v, want ErrNotFound: a refused board is not recorded", err)
	}
}

func hasEvent(es []records.AuditEntry, ev string) bool {
	for _, e := range es {
		if e.Event == ev {
			return true
		}
	}
	return false
}

func TestBufferFlagsACloneFoundWhenForwarding(t *testing.T) {
	ctx := context.Background()
	f := newBufferedFixture(t)
	b := f.open(t, 0)
	f.proxy.cut()
	mine := tpmRecord("SN-MINE", 5)
	if _, err := b.Save(ctx, mine); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Save(ctx, tpmRecord("SN-OK", 6)); err != nil {
		t.Fatal(err)
	}
	// Meanwhile another station records the same EK under another serial.
	other := openPG(t, f.url)
	theirs := tpmRecord("SN-THEIRS", 5)
	theirs.Station, theirs.Line = "st-2", "line-5"
	if _, err := other.Save(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	f.proxy.restore()
	forwardAll(t, b)

	r, err := other.Get(ctx, "SN-MINE")
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != records.ResultFailed || r.FailedStep != records.StepForward || r.Enrollment != nil || !strings.Contains(r.Message, "SN-THEIRS") {
		t.Errorf("SN-MINE = result %q step %q enrollment %v message %q; want failed at forward, no enrollment, naming SN-THEIRS",
			r.Result, r.FailedStep, r.Enrollment, r.Message)
	}
	es, err := other.Audit(ctx, "SN-MINE")
	if err != nil {
		t.Fatal(err)
	}
	if !hasEvent(es, records.EventForwardConflict) || !hasEvent(es, records.EventClone) {
		t.Errorf("audit of SN-MINE %v, want %q and %q", es, records.EventForwardConflict, records.EventClone)
	}
	pend := pendingRegIDs(t, other)
	if !pend[theirs.RegistrationID] || !pend[tpmRecord("x", 6).RegistrationID] || len(pend) != 2 {
		t.Errorf("factory queue %v, want SN-THEIRS's and SN-OK's enrollments only (SN-MINE's held)", pend)
	}
	cs, err := b.Conflicts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Serial != "SN-MINE" {
		t.Errorf("Conflicts() = %v, want SN-MINE", cs)
	}
	if held, err := b.Buffer().Get(ctx, "SN-MINE"); err != nil || held.Enrollment == nil {
		t.Errorf("buffer's SN-MINE = %v, %v; want its enrollment held there", held, err)
	}
}

// TestBufferForwardIsIdempotent forwards a buffer twice: the second time
// as a station that died after the factory commit and before the buffer
// noted it.
func TestBufferForwardIsIdempotent(t *testing.T) {
	ctx := context.Background()
	f := newBufferedFixture(t)
	b := f.open(t, 0)
	f.proxy.cut()
	for i := range 3 {
		if _, err := b.Save(ctx, tpmRecord(fmt.Sprintf("SN-%d", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	f.proxy.restore()
	forwardAll(t, b)
	b.Close()
	db := rawDB(t, f.buffer)
	if _, err := db.Exec(`DELETE FROM buffer_forwarded`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b = f.open(t, 0)
	if n, _, off := b.Offline(); !off || n != 3 {
		t.Fatalf("reopened Offline() = %d, %v; want 3 boards to forward, offline", n, off)
	}
	forwardAll(t, b)
	assertOnceEach(t, openPG(t, f.url), 3, 0)
}

// assertOnceEach checks that the factory holds boards SN-0.. SN-(n-1)
// once each, each created once and, but the first online saved online,
// forwarded once.
func assertOnceEach(t *testing.T, pg *records.PGStore, n, online int) {
	t.Helper()
	ctx := context.Background()
	all, err := pg.List(ctx, records.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != n {
		t.Fatalf("factory holds %d records, want %d", len(all), n)
	}
	for i := range n {
		s := fmt.Sprintf("SN-%d", i)
		es, err := pg.Audit(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		for _, e := range es {
			count[e.Event]++
		}
		forwarded := 1
		if i < online {
			forwarded = 0
		}
		if count[records.EventCreated] != 1 || count[records.EventForwarded] != forwarded || count[records.EventUpdated] != 0 {
			t.Errorf("audit of %s: %v; want created once, forwarded %d times, never updated", s, count, forwarded)
		}
	}
	if got := pendingRegIDs(t, pg); len(got) != n {
		t.Errorf("factory queue holds %d enrollments, want %d", len(got), n)
	}
}

const bufferChildEnv = "ZT_BUFFER_FORWARD_CHILD"

// TestBufferForwardResumesAfterSIGKILL kills a forwarding process after
// its second board's commit and before its buffer notes it, then forwards
// again.
func TestBufferForwardResumesAfterSIGKILL(t *testing.T) {
	if spec := os.Getenv(bufferChildEnv); spec != "" {
		forwardChild(spec)
		return
	}
	ctx := context.Background()
	f := newBufferedFixture(t)
	b := f.open(t, 0)
	f.proxy.cut()
	const n = 5
	for i := range n {
		if _, err := b.Save(ctx, tpmRecord(fmt.Sprintf("SN-%d", i), i)); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	f.proxy.restore()

	cmd := exec.Command(os.Args[0], "-test.run=^TestBufferForwardResumesAfterSIGKILL$")
	cmd.Env = append(os.Environ(), bufferChildEnv+"="+f.url+" "+f.buffer)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	seen := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "forwarded ") {
			seen++
			if seen == 2 {
				break
			}
		}
	}
	if seen != 2 {
		cmd.Wait()
		t.Fatalf("the child forwarded %d boards before it ended, want to kill it at 2", seen)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	b = f.open(t, 0)
	if got, _, _ := b.Offline(); got != n-1 {
		t.Errorf("after the kill, %d boards left to forward, want %d (the second's commit unnoted)", got, n-1)
	}
	forwardAll(t, b)
	assertOnceEach(t, openPG(t, f.url), n, 0)
}

// forwardChild forwards the buffer, saying each board forwarded, and
// stops after the second's commit to be killed.
func forwardChild(spec string) {
	u, path, _ := strings.Cut(spec, " ")
	b, err := records.OpenBuffered(context.Background(), u, path, records.BufferOptions{Retry: time.Hour})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k := 0
	records.SetAfterForward(b, func(serial string) {
		k++
		fmt.Printf("forwarded %s\n", serial)
		if k == 2 {
			select {} // killed here
		}
	})
	b.Forward(context.Background())
	os.Exit(0)
}

func TestBufferBeside(t *testing.T) {
	for _, c := range []struct{ config, want string }{
		{"station.yaml", "station.buffer.db"},
		{"/etc/zerotouch/line-5.yml", "/etc/zerotouch/line-5.buffer.db"},
		{"conf/st", "conf/st.buffer.db"},
	} {
		if got := records.BufferBeside(c.config); got != c.want {
			t.Errorf("BufferBeside(%q) = %q, want %q", c.config, got, c.want)
		}
	}
}

// TestBufferGoesOfflineWhenTheNetworkHangs: a database that neither
// answers nor refuses (packets dropped) costs one write the watchdog's
// time, then the store buffers; a Begin that waits on a database that
// answers is not cut short.
func TestBufferGoesOfflineWhenTheNetworkHangs(t *testing.T) {
	ctx := context.Background()
	f := newBufferedFixture(t)
	b, err := records.OpenBuffered(ctx, f.proxied, f.buffer, records.BufferOptions{Timeout: 300 * time.Millisecond, Retry: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.Save(ctx, tpmRecord("SN-0", 0)); err != nil {
		t.Fatal(err)
	}
	f.proxy.freeze(true)
	start := time.Now()
	if _, err := b.Save(ctx, tpmRecord("SN-1", 1)); err != nil {
		t.Fatalf("Save with the network hung: %v", err)
	}
	t.Logf("the first write with the network hung took %v", time.Since(start))
	if n, _, off := b.Offline(); !off || n != 1 {
		t.Fatalf("Offline() = %d, %v; want 1 board buffered, offline", n, off)
	}
	start = time.Now()
	if _, err := b.Save(ctx, tpmRecord("SN-2", 2)); err != nil {
		t.Fatal(err)
	}
	t.Logf("the next write, buffered, took %v", time.Since(start))
	f.proxy.freeze(false)
	f.proxy.cut() // the hung connections go; new ones pass
	f.proxy.restore()
	forwardAll(t, b)
	assertOnceEach(t, openPG(t, f.url), 3, 1)
}

// TestBufferStartsOfflineAfterARestart: a station restarted while the
// factory database does not answer starts offline if its buffer met that
// database before, its clone check over the factory's EKs as last read;
// a station whose buffer never did gets the database's error.
func TestBufferStartsOfflineAfterARestart(t *testing.T) {
	ctx := context.Background()
	f := newBufferedFixture(t)
	other := openPG(t, f.url)
	held := tpmRecord("SN-F", 1)
	held.Station = "st-9"
	if _, err := other.Save(ctx, held); err != nil {
		t.Fatal(err)
	}
	b := f.open(t, 0)
	b.Close()

	f.proxy.cut()
	fresh := filepath.Join(t.TempDir(), "station.buffer.db")
	if nb, err := records.OpenBuffered(ctx, f.proxied, fresh, records.BufferOptions{Timeout: time.Second, Retry: time.Hour}); err == nil || !records.Unreachable(err) {
		if nb != nil {
			nb.Close()
		}
		t.Fatalf("OpenBuffered with a new buffer and the database cut off = %v, want the database's error", err)
	}
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a station that could not start left a buffer file: %v", err)
	}
	b = f.open(t, 0)
	if _, _, off := b.Offline(); !off {
		t.Fatal("reopened with the database cut off: Offline() = online, want offline")
	}
	var ce *records.CloneError
	if _, err := b.Save(ctx, tpmRecord("SN-X", 1)); !errors.As(err, &ce) || ce.OtherSerial != "SN-F" || ce.OtherStation != "st-9" {
		t.Fatalf("Save offline after the restart of the factory's EK = %v, want a CloneError naming SN-F at st-9", err)
	}
	if _, err := b.Save(ctx, tpmRecord("SN-0", 2)); err != nil {
		t.Fatalf("Save offline after the restart: %v", err)
	}
	f.proxy.restore()
	forwardAll(t, b)
	if r, err := other.Get(ctx, "SN-0"); err != nil || r.Result != records.ResultPassed {
		t.Errorf("Get(SN-0) after forwarding = %v, %v; want passed", r, err)
	}
	if _, err := other.Get(ctx, "SN-X"); !errors.Is(err, records.ErrNotFound) {
		t.Errorf("Get(SN-X) = %v, want ErrNotFound", err)
	}
}

// TestBufferForwardKeepsANewerRunElsewhere: a board this station buffered
// as failed while offline, then moved to another station that passed it
// in the factory database: forwarding leaves the newer record as it is
// and says why in the audit.
func TestBufferForwardKeepsANewerRunElsewhere(t *testing.T) {
	ctx := context.Background()
	f := newBufferedFixture(t)
	b := f.open(t, 0)
	f.proxy.cut()
	failed := tpmRecord("SN-MOVED", 7)
	failed.Result, failed.Message = records.ResultFailed, "no answer"
	if _, err := b.Save(ctx, failed); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the other station's run is later by the clock too
	other := openPG(t, f.url)
	passed := tpmRecord("SN-MOVED", 7)
	passed.Station, passed.Line = "st-2", "line-6"
	if _, err := other.Save(ctx, passed); err != nil {
		t.Fatal(err)
	}
	f.proxy.restore()
	forwardAll(t, b)
	r, err := other.Get(ctx, "SN-MOVED")
	if err != nil {
		t.Fatal(err)
	}
	if r.Result != records.ResultPassed || r.Station != "st-2" {
		t.Errorf("SN-MOVED = %s at %s after the forward, want passed at st-2 (the newer run)", r.Result, r.Station)
	}
	es, err := other.Audit(ctx, "SN-MOVED")
	if err != nil {
		t.Fatal(err)
	}
	if !hasEvent(es, records.EventForwardSuperseded) || !hasEvent(es, records.EventForwarded) {
		t.Errorf("audit of SN-MOVED %v, want the buffered change marked superseded and forwarded", es)
	}
}

// TestBufferForwardsTheIssuedChain: a registration recorded while the
// factory database is offline reaches it with its issued chain, for a
// board the buffer holds (forwarded with its record) and for one the
// factory database already held (a buffered registration).
func TestBufferForwardsTheIssuedChain(t *testing.T) {
	ctx := context.Background()
	f := newBufferedFixture(t)
	b := f.open(t, 0)
	if _, err := b.Save(ctx, tpmRecord("SN-1", 1)); err != nil {
		t.Fatalf("Save online: %v", err)
	}
	f.proxy.cut()
	if _, err := b.Save(ctx, tpmRecord("SN-2", 2)); err != nil {
		t.Fatalf("Save offline: %v", err)
	}
	chain := map[string]string{}
	for _, s := range []string{"SN-1", "SN-2"} {
		chain[s] = "-----BEGIN CERTIFICATE-----\nMIIB" + s + "\n-----END CERTIFICATE-----\n"
		reg := records.Registration{State: "assigned", AssignedHub: "hub", DeviceID: s, IssuedChain: chain[s], At: time.Now()}
		if err := b.SetRegistration(ctx, s, reg, "ana"); err != nil {
			t.Fatalf("SetRegistration(%s) offline: %v", s, err)
		}
	}
	f.proxy.restore()
	forwardAll(t, b)
	pg := openPG(t, f.url)
	for _, s := range []string{"SN-1", "SN-2"} {
		r, err := pg.Get(ctx, s)
		if err != nil || r.Registration == nil || r.Registration.IssuedChain != chain[s] {
			t.Errorf("factory record %s: registration %+v, %v; want the issued chain %q", s, r.Registration, err, chain[s])
		}
	}
}
