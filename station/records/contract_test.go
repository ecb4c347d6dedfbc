package records_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"zerotouch/enroll"
	"zerotouch/internal/pgtest"
	"zerotouch/station/records"
)

// The contract suite: the rules every records adapter keeps, run against a
// SQLite file and a PostgreSQL database alike.

// adapter is one records adapter under test, on a fresh database.
type adapter struct {
	name   string
	target string // path or URL, for records.OpenURL
	// exec runs SQL on the database behind the store's back.
	exec func(t *testing.T, sql string) error
	// expire makes every claim's lease run out (SQLite has none: one
	// uploader per file).
	expire func(t *testing.T)
}

func (a *adapter) open(t *testing.T) records.DB {
	t.Helper()
	s, err := records.OpenURL(context.Background(), a.target)
	if err != nil {
		t.Fatalf("OpenURL(%s): %v", a.name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sqliteAdapter(t *testing.T) *adapter {
	path := filepath.Join(t.TempDir(), "zerotouch.db")
	return &adapter{name: "sqlite", target: path,
		exec: func(t *testing.T, sql string) error {
			_, err := rawDB(t, path).Exec(sql)
			return err
		},
		expire: func(*testing.T) {},
	}
}

func pgAdapter(t *testing.T) *adapter {
	u := pgtest.New(t)
	a := &adapter{name: "postgres", target: u}
	a.exec = func(t *testing.T, sql string) error {
		t.Helper()
		conn, err := pgx.Connect(context.Background(), u)
		if err != nil {
			t.Fatalf("connect to %s: %v", u, err)
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(context.Background(), sql)
		return err
	}
	a.expire = func(t *testing.T) {
		t.Helper()
		if err := a.exec(t, `UPDATE records SET lease_until = now() - interval '1 second' WHERE lease_until IS NOT NULL`); err != nil {
			t.Fatalf("expire the leases: %v", err)
		}
	}
	return a
}

// forEachAdapter runs f against each adapter, on a fresh database.
func forEachAdapter(t *testing.T, f func(t *testing.T, a *adapter)) {
	for _, mk := range []func(*testing.T) *adapter{sqliteAdapter, pgAdapter} {
		a := mk(t)
		t.Run(a.name, func(t *testing.T) { f(t, a) })
	}
}

func csave(t *testing.T, s records.DB, r *records.Record) records.SaveResult {
	t.Helper()
	res, err := s.Save(context.Background(), r)
	if err != nil {
		t.Fatalf("Save(%s): %v", r.Serial, err)
	}
	return res
}

func serials(rs []records.Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Serial)
	}
	return out
}

func TestContractSaveGet(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		ctx := context.Background()
		s := a.open(t)
		r := tpmRecord("SN-1", 1)
		r.CertNotAfter = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
		res := csave(t, s, r)
		if !res.Created || !res.Queued {
			t.Errorf("Save(new board) = %+v, want created and queued", res)
		}
		for _, key := range []string{"SN-1", "sn-1", strings.ToUpper(r.RegistrationID)} {
			got, err := s.Get(ctx, key)
			if err != nil {
				t.Fatalf("Get(%q): %v", key, err)
			}
			if got.Serial != "SN-1" || !bytes.Equal(got.EKPublic, r.EKPublic) || got.RegistrationID != r.RegistrationID ||
				got.Station != "st-1" || got.UploadState != enroll.StatePending || got.Enrollment == nil ||
				!got.CertNotAfter.Equal(r.CertNotAfter) || string(got.ConfigSHA256) != string(r.ConfigSHA256) {
				t.Errorf("Get(%q) = %+v, want the saved board", key, got)
			}
		}
		if _, err := s.Get(ctx, "SN-404"); !errors.Is(err, records.ErrNotFound) {
			t.Errorf("Get(unknown) = %v, want ErrNotFound", err)
		}
		if _, err := s.Save(ctx, &records.Record{Serial: "SN-2", Attestation: "magic", Result: records.ResultPassed}); !errors.Is(err, records.ErrInvalid) {
			t.Errorf("Save(bad attestation) = %v, want ErrInvalid", err)
		}
	})
}

func TestContractOneRecordPerSerial(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		ctx := context.Background()
		s := a.open(t)
		csave(t, s, tpmRecord("SN-1", 1))
		r := tpmRecord("SN-1", 1)
		r.Firmware = "1.3.0"
		res := csave(t, s, r)
		if res.Created || !res.Updated || res.Queued {
			t.Errorf("Save(same board again, same enrollment) = %+v, want updated, not queued", res)
		}
		// A new EK for the same board: still one record.
		res = csave(t, s, tpmRecord("SN-1", 2))
		if !res.Updated || !res.Queued {
			t.Errorf("Save(same board, new EK) = %+v, want updated and queued", res)
		}
		all, err := s.List(ctx, records.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if got := serials(all); !slices.Equal(got, []string{"SN-1"}) {
			t.Errorf("List = %v, want one record", got)
		}
		as, err := s.Audit(ctx, "SN-1")
		if err != nil {
			t.Fatal(err)
		}
		var ev []string
		for _, e := range as {
			ev = append(ev, e.Event)
		}
		if want := []string{records.EventCreated, records.EventUpdated, records.EventUpdated}; !slices.Equal(ev, want) {
			t.Errorf("Audit events = %v, want %v", ev, want)
		}
	})
}

func TestContractDuplicateRegistrationID(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		s := a.open(t)
		csave(t, s, x509Record(t, "SN-1", "dev-0001"))
		r := x509Record(t, "SN-2", "DEV-0001")
		r.Station = "st-2"
		_, err := s.Save(context.Background(), r)
		var ce *records.CloneError
		if !errors.Is(err, records.ErrDuplicateID) || errors.Is(err, records.ErrClone) || !errors.As(err, &ce) {
			t.Fatalf("Save(same registration ID) = %v, want a CloneError matching ErrDuplicateID", err)
		}
		if ce.OtherSerial != "SN-1" || ce.OtherStation != "st-1" || ce.RegistrationID != "dev-0001" {
			t.Errorf("CloneError = %+v, want it to name SN-1 at st-1 and dev-0001", ce)
		}
		if _, err := s.Get(context.Background(), "SN-2"); !errors.Is(err, records.ErrNotFound) {
			t.Errorf("Get(refused board) = %v, want ErrNotFound", err)
		}
	})
}

func TestContractCloneEKNamesItsHolder(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		ctx := context.Background()
		s := a.open(t)
		first := tpmRecord("SN-1", 7)
		first.Station, first.Line = "st-2", "line-5"
		csave(t, s, first)
		clone := tpmRecord("SN-9", 7)
		clone.Station, clone.Line = "st-3", "line-1"
		_, err := s.Save(ctx, clone)
		var ce *records.CloneError
		if !errors.Is(err, records.ErrClone) || !errors.As(err, &ce) {
			t.Fatalf("Save(same EK, other serial) = %v, want a CloneError matching ErrClone", err)
		}
		if ce.Serial != "SN-9" || ce.OtherSerial != "SN-1" || ce.OtherStation != "st-2" || ce.OtherLine != "line-5" || !ce.SameEK {
			t.Errorf("CloneError = %+v, want SN-9 refused for SN-1 at st-2, line-5", ce)
		}
		if msg := err.Error(); !strings.Contains(msg, "station st-2") || !strings.Contains(msg, "line line-5") {
			t.Errorf("error %q does not name the station and line that hold the EK", msg)
		}
		as, err := s.Audit(ctx, "SN-9")
		if err != nil {
			t.Fatalf("Audit(refused board): %v", err)
		}
		if len(as) != 1 || as[0].Event != records.EventClone {
			t.Errorf("Audit(SN-9) = %+v, want one clone row", as)
		}
		if _, err := s.Get(ctx, "SN-9"); !errors.Is(err, records.ErrNotFound) {
			t.Errorf("Get(clone) = %v, want ErrNotFound", err)
		}
	})
}

func TestContractAuditAppendOnly(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		s := a.open(t)
		csave(t, s, tpmRecord("SN-1", 1))
		for _, q := range []string{`UPDATE audit SET detail = 'rewritten'`, `DELETE FROM audit`, `DELETE FROM records`} {
			if err := a.exec(t, q); err == nil {
				t.Errorf("%s succeeded, want the database to refuse it", q)
			}
		}
		as, err := s.Audit(context.Background(), "SN-1")
		if err != nil || len(as) != 1 || as[0].Detail == "rewritten" {
			t.Errorf("Audit after the attempts = %+v, %v; want the one row as written", as, err)
		}
	})
}

func TestContractQueueStates(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		ctx := context.Background()
		s, err := records.OpenURL(ctx, a.target)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			csave(t, s, tpmRecord(fmt.Sprintf("SN-%d", i), i))
		}
		failed := tpmRecord("SN-4", 4)
		csave(t, s, failed)
		if err := s.Begin(ctx, failed); err != nil {
			t.Fatal(err)
		}
		if n, err := s.Recover(ctx); err != nil || n != 0 {
			t.Errorf("Recover(nothing in flight) = %d, %v; want 0", n, err)
		}
		es, err := s.Claim(ctx, 2)
		if err != nil || len(es) != 2 {
			t.Fatalf("Claim(2) = %d, %v; want 2", len(es), err)
		}
		want := map[enroll.State]int{enroll.StateInFlight: 2, enroll.StatePending: 1, records.StateHeld: 1}
		if c, _ := s.Counts(ctx); !mapsEqual(c, want) {
			t.Errorf("Counts after Claim = %v, want %v", c, want)
		}
		if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: strings.ToUpper(es[0].RegistrationID), State: enroll.StateUploaded, ETag: "e1"}}); err != nil {
			t.Fatalf("Settle: %v", err)
		}
		if err := s.Settle(ctx, []enroll.Outcome{{RegistrationID: es[1].RegistrationID, State: "lost"}}); !errors.Is(err, records.ErrInvalid) {
			t.Errorf("Settle(state lost) = %v, want ErrInvalid", err)
		}
		want = map[enroll.State]int{enroll.StateUploaded: 1, enroll.StateInFlight: 1, enroll.StatePending: 1, records.StateHeld: 1}
		if c, _ := s.Counts(ctx); !mapsEqual(c, want) {
			t.Errorf("Counts after Settle = %v, want %v", c, want)
		}
		// The uploader dies with one in flight; the next one recovers it.
		s.Close()
		a.expire(t)
		s2 := a.open(t)
		if n, err := s2.Recover(ctx); err != nil || n != 1 {
			t.Errorf("Recover(after the uploader died) = %d, %v; want 1", n, err)
		}
		es, err = s2.Claim(ctx, 10)
		if err != nil || len(es) != 2 {
			t.Fatalf("Claim(10) = %d, %v; want 2 (the held board's enrollment is not handed out)", len(es), err)
		}
		var outs []enroll.Outcome
		for _, e := range es {
			outs = append(outs, enroll.Outcome{RegistrationID: e.RegistrationID, State: enroll.StateConflict, Error: "409"})
		}
		if err := s2.Settle(ctx, outs); err != nil {
			t.Fatal(err)
		}
		want = map[enroll.State]int{enroll.StateUploaded: 1, enroll.StateConflict: 2, records.StateHeld: 1}
		if c, _ := s2.Counts(ctx); !mapsEqual(c, want) {
			t.Errorf("Counts at the end = %v, want %v", c, want)
		}
		if es, err := s2.Claim(ctx, 10); err != nil || len(es) != 0 {
			t.Errorf("Claim(nothing pending) = %d, %v; want none", len(es), err)
		}
	})
}

func mapsEqual(a, b map[enroll.State]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// drainConcurrently drains the queue from several claimers at once and returns
// the registration IDs each claim handed out.
func drainConcurrently(t *testing.T, claimers []records.DB) []string {
	var mu sync.Mutex
	var got []string
	var wg sync.WaitGroup
	for i, c := range claimers {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					es, err := c.Claim(context.Background(), 7)
					if err != nil {
						t.Errorf("claimer %d: Claim: %v", i, err)
						return
					}
					if len(es) == 0 {
						return
					}
					var outs []enroll.Outcome
					mu.Lock()
					for _, e := range es {
						got = append(got, e.RegistrationID)
						outs = append(outs, enroll.Outcome{RegistrationID: e.RegistrationID, State: enroll.StateUploaded})
					}
					mu.Unlock()
					if err := c.Settle(context.Background(), outs); err != nil {
						t.Errorf("claimer %d: Settle: %v", i, err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	return got
}

func TestContractConcurrentClaimersNeverShare(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		const n = 150
		s := a.open(t)
		for i := range n {
			csave(t, s, tpmRecord(fmt.Sprintf("SN-%03d", i), i))
		}
		claimers := []records.DB{s} // a SQLite file has one writer
		if a.name == "postgres" {
			claimers = append(claimers, a.open(t), a.open(t))
		}
		got := drainConcurrently(t, claimers)
		seen := map[string]bool{}
		for _, id := range got {
			if seen[id] {
				t.Errorf("%s claimed twice", id)
			}
			seen[id] = true
		}
		if len(seen) != n {
			t.Errorf("claimed %d enrollments, want %d", len(seen), n)
		}
		if c, _ := s.Counts(context.Background()); c[enroll.StateUploaded] != n {
			t.Errorf("Counts = %v, want %d uploaded", c, n)
		}
	})
}

func TestContractNewerSchemaRefused(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		s := a.open(t)
		s.Close()
		q := `PRAGMA user_version = 99`
		if a.name == "postgres" {
			q = `INSERT INTO zerotouch_schema (version) VALUES (99)`
		}
		if err := a.exec(t, q); err != nil {
			t.Fatal(err)
		}
		for _, open := range []func(context.Context, string) (records.DB, error){records.OpenURL, records.OpenURLReadOnly} {
			if _, err := open(context.Background(), a.target); err == nil || !strings.Contains(err.Error(), "newer") {
				t.Errorf("open a database of schema version 99 = %v, want a 'newer' error", err)
			}
		}
	})
}

func TestContractMigrationsFromEmpty(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		ctx := context.Background()
		// Stations starting together on an empty database: each opens it,
		// it is migrated once.
		var wg sync.WaitGroup
		stores := make([]records.DB, 3)
		errs := make([]error, 3)
		n := 1
		if a.name == "postgres" {
			n = 3
		}
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stores[i], errs[i] = records.OpenURL(ctx, a.target)
			}()
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("OpenURL(empty database) #%d: %v", i, errs[i])
			}
			csave(t, stores[i], tpmRecord(fmt.Sprintf("SN-%d", i), i))
			stores[i].Close()
		}
		ro, err := records.OpenURLReadOnly(ctx, a.target)
		if err != nil {
			t.Fatalf("OpenURLReadOnly(migrated database): %v", err)
		}
		defer ro.Close()
		if all, err := ro.List(ctx, records.Filter{}); err != nil || len(all) != n {
			t.Errorf("List = %d records, %v; want %d", len(all), err, n)
		}
		if _, err := ro.Save(ctx, tpmRecord("SN-X", 99)); !errors.Is(err, records.ErrReadOnly) {
			t.Errorf("Save on a read-only store = %v, want ErrReadOnly", err)
		}
	})
}

func TestContractSearchAndPages(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		ctx := context.Background()
		s := a.open(t)
		names := []string{"AB-100", "ab-101", "XAB-7", "Q%_1", "ZZ-900"}
		for i, n := range names {
			csave(t, s, tpmRecord(n, i))
		}
		failed := &records.Record{Serial: "FF-1", Attestation: records.AttestationTPM, Result: records.ResultFailed, Message: "no answer"}
		csave(t, s, failed)
		regOfAB100 := tpmRecord("AB-100", 0).RegistrationID
		tests := []struct {
			f    records.Filter
			want []string // newest first
		}{
			{records.Filter{Search: "ab"}, []string{"ab-101", "AB-100"}},
			{records.Filter{Search: "AB-1"}, []string{"ab-101", "AB-100"}},
			{records.Filter{Search: "b-1"}, []string{"ab-101", "AB-100"}},
			{records.Filter{Search: "%_1"}, []string{"Q%_1"}},
			{records.Filter{Search: "_"}, nil},
			{records.Filter{Search: regOfAB100[:6]}, []string{"AB-100"}},
			{records.Filter{Search: strings.ToUpper(regOfAB100[:2])}, []string{"AB-100"}},
			{records.Filter{Result: records.ResultFailed}, []string{"FF-1"}},
			{records.Filter{UploadState: enroll.StatePending, Limit: 2}, []string{"ZZ-900", "Q%_1"}},
		}
		check := func(how string) {
			t.Helper()
			for _, tt := range tests {
				got, err := s.List(ctx, tt.f)
				if err != nil {
					t.Errorf("%s: List(%+v): %v", how, tt.f, err)
					continue
				}
				if g := serials(got); !slices.Equal(g, tt.want) && !(len(g) == 0 && len(tt.want) == 0) {
					t.Errorf("%s: List(%+v) = %v, want %v", how, tt.f, g, tt.want)
				}
				if tt.f.Limit != 0 {
					continue
				}
				p, err := s.Page(ctx, tt.f, "", 1)
				if err != nil || len(tt.want) > 0 && (len(p.Records) != 1 || p.Records[0].Serial != tt.want[0]) {
					t.Errorf("%s: Page(%+v, size 1) = %v, %v; want %.1v", how, tt.f, serials(p.Records), err, tt.want)
				}
			}
		}
		check("sparse")
		// Searches taken as dense: tested on the newest two records first.
		switch st := s.(type) {
		case *records.Store:
			records.SetDenseAt(st, 1)
			records.SetScanWindow(st, 2)
		case *records.PGStore:
			records.SetPGDenseAt(st, 1)
			records.SetPGScanWindow(st, 2)
		}
		check("dense")
		if _, err := s.List(ctx, records.Filter{Result: "maybe"}); !errors.Is(err, records.ErrInvalid) {
			t.Errorf("List(result maybe) = %v, want ErrInvalid", err)
		}
		// Pages of 2 walk every record once, newest first.
		var walked []string
		cursor := ""
		for {
			p, err := s.Page(ctx, records.Filter{}, cursor, 2)
			if err != nil {
				t.Fatalf("Page(%q): %v", cursor, err)
			}
			walked = append(walked, serials(p.Records)...)
			if p.Next == "" {
				break
			}
			cursor = p.Next
		}
		want := []string{"FF-1", "ZZ-900", "Q%_1", "XAB-7", "ab-101", "AB-100"}
		if !slices.Equal(walked, want) {
			t.Errorf("pages = %v, want %v", walked, want)
		}
		if _, err := s.Page(ctx, records.Filter{}, "r1.nonsense", 2); !errors.Is(err, records.ErrInvalid) {
			t.Errorf("Page(bad cursor) = %v, want ErrInvalid", err)
		}
		var buf bytes.Buffer
		if n, err := s.Export(ctx, &buf, records.FormatJSON, records.Filter{Search: "ab"}); err != nil || n != 2 {
			t.Errorf("Export(ab) = %d, %v; want 2", n, err)
		}
	})
}

// The multi-process test: several processes (this test binary, run
// again) save boards with the same EK at once; exactly one is recorded.

const (
	childEnv    = "ZT_CONTRACT_CHILD"
	childTarget = "ZT_CONTRACT_TARGET"
	childSerial = "ZT_CONTRACT_SERIAL"
	childStart  = "ZT_CONTRACT_START" // a file whose appearance starts the save
)

// Exit statuses of a child.
const (
	childSaved = 0
	childClone = 3
)

// TestContractHelperProcess is a child of TestContractConcurrentProcesses:
// it does nothing unless childEnv is set.
func TestContractHelperProcess(t *testing.T) {
	if os.Getenv(childEnv) != "save-ek" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var s records.DB
	var err error
	for { // a SQLite file has one writer at a time: wait for it
		s, err = records.OpenURL(ctx, os.Getenv(childTarget))
		if !errors.Is(err, records.ErrBusy) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		if _, err := os.Stat(os.Getenv(childStart)); err == nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	_, err = s.Save(ctx, tpmRecord(os.Getenv(childSerial), 42))
	s.Close()
	switch {
	case err == nil:
		os.Exit(childSaved)
	case errors.Is(err, records.ErrClone):
		fmt.Fprintln(os.Stderr, err)
		os.Exit(childClone)
	default:
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func TestContractConcurrentProcesses(t *testing.T) {
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		a.open(t).Close() // migrated before the race
		start := filepath.Join(t.TempDir(), "start")
		const n = 4
		cmds := make([]*exec.Cmd, n)
		outs := make([]*bytes.Buffer, n)
		for i := range n {
			cmd := exec.Command(os.Args[0], "-test.run=^TestContractHelperProcess$")
			cmd.Env = append(os.Environ(), childEnv+"=save-ek", childTarget+"="+a.target,
				childSerial+"=SN-P"+strconv.Itoa(i), childStart+"="+start)
			outs[i] = &bytes.Buffer{}
			cmd.Stdout, cmd.Stderr = outs[i], outs[i]
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds[i] = cmd
		}
		if err := os.WriteFile(start, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		saved, clones := 0, 0
		for i, cmd := range cmds {
			err := cmd.Wait()
			switch code := cmd.ProcessState.ExitCode(); code {
			case childSaved:
				saved++
			case childClone:
				clones++
			default:
				t.Errorf("process %d: %v (exit %d): %s", i, err, code, outs[i])
			}
		}
		if saved != 1 || clones != n-1 {
			t.Errorf("%d processes saved the EK and %d were refused as clones, want 1 and %d", saved, clones, n-1)
		}
		s := a.open(t)
		all, err := s.List(context.Background(), records.Filter{})
		if err != nil || len(all) != 1 {
			t.Errorf("List = %v, %v; want one record", serials(all), err)
		}
	})
}

// TestContractSameTranscript runs one script of a station's and an
// uploader's calls on each adapter and compares what they answer: the
// records, the audit events, the counts and the exports.
func TestContractSameTranscript(t *testing.T) {
	x2 := x509Record(t, "SN-2", "dev-2")
	x2b := x509Record(t, "SN-2", "dev-2") // a new certificate: a changed enrollment
	cp := func(r *records.Record) *records.Record { c := *r; return &c }
	transcripts := map[string][]string{}
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		ctx := context.Background()
		s := a.open(t)
		var out []string
		say := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
		errText := func(err error) string {
			var ce *records.CloneError
			switch {
			case err == nil:
				return "ok"
			case errors.As(err, &ce):
				return fmt.Sprintf("clone=%v %+v", errors.Is(err, records.ErrClone), *ce)
			case errors.Is(err, records.ErrNotFound):
				return "not found"
			default:
				return "error"
			}
		}
		saveSay := func(r *records.Record) {
			res, err := s.Save(ctx, r)
			say("save %s: %+v %s", r.Serial, res, errText(err))
		}
		claimSay := func() []enroll.Enrollment {
			es, err := s.Claim(ctx, 10)
			var ids []string
			for _, e := range es {
				ids = append(ids, e.RegistrationID+" etag="+e.ETag)
			}
			slices.Sort(ids)
			say("claim: %v %s", ids, errText(err))
			return es
		}
		b1 := &records.Record{Serial: "SN-1", Attestation: records.AttestationTPM, Station: "st-1", Line: "l1", Slot: "1"}
		say("begin: %s", errText(s.Begin(ctx, b1)))
		saveSay(tpmRecord("SN-1", 1))
		saveSay(cp(x2))
		saveSay(&records.Record{Serial: "SN-3", Attestation: records.AttestationX509Keygen, Result: records.ResultFailed, Message: "no answer",
			Cause: "read: timeout", FailedStep: "identify"})
		es := claimSay()
		saveSay(cp(x2b))
		var outs []enroll.Outcome
		for _, e := range es {
			outs = append(outs, enroll.Outcome{RegistrationID: e.RegistrationID, State: enroll.StateUploaded, ETag: "etag-" + e.RegistrationID[:4]})
		}
		say("settle: %s", errText(s.Settle(ctx, outs)))
		claimSay()
		say("begin again: %s", errText(s.Begin(ctx, cp(b1))))
		c, err := s.Counts(ctx)
		say("counts: %v %s", c, errText(err))
		saveSay(&records.Record{Serial: "SN-1", Attestation: records.AttestationTPM, Result: records.ResultFailed, Message: "flash failed"})
		say("registration: %s", errText(s.SetRegistration(ctx, "SN-2", records.Registration{State: "assigned", AssignedHub: "hub", DeviceID: "dev-2",
			At: time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)}, "ana")))
		say("registration of unknown: %s", errText(s.SetRegistration(ctx, "SN-9", records.Registration{State: "failed"}, "ana")))
		say("set aside: %s", errText(s.SetAside(ctx, "SN-3", "4", "ana")))
		clone := tpmRecord("SN-4", 1)
		clone.Station, clone.Line = "st-9", "l9"
		saveSay(clone)
		ip, err := s.InProgress(ctx)
		say("in progress: %v %s", serials(ip), errText(err))
		for _, f := range []string{records.FormatJSON, records.FormatCSV} {
			var buf bytes.Buffer
			n, err := s.Export(ctx, &buf, f, records.Filter{})
			say("export %s: %d %s\n%s", f, n, errText(err), buf.String())
		}
		all, err := s.List(ctx, records.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range all {
			r.ID, r.CreatedAt, r.UpdatedAt = 0, time.Time{}, time.Time{}
			if r.Enrollment != nil {
				r.Enrollment.RegistrationState = nil
			}
			j, err := json.Marshal(r)
			say("record %s %v", j, err)
			as, err := s.Audit(ctx, r.Serial)
			var ev []string
			for _, e := range as {
				ev = append(ev, e.Event)
			}
			say("audit %s: %v %s", r.Serial, ev, errText(err))
		}
		transcripts[a.name] = out
	})
	sq, pg := transcripts["sqlite"], transcripts["postgres"]
	if len(sq) == 0 || len(pg) == 0 {
		t.Fatal("a transcript is missing")
	}
	for i := range max(len(sq), len(pg)) {
		var a, b string
		if i < len(sq) {
			a = sq[i]
		}
		if i < len(pg) {
			b = pg[i]
		}
		if a != b {
			t.Errorf("step %d:\nsqlite:   %s\npostgres: %s", i, a, b)
		}
	}
}

// TestContractMigrationsFromEachSQLiteVersion makes a SQLite file at each
// earlier schema version, with a board and its audit row, and opens it:
// the schema is brought up to date with the board kept, found by search,
// and saved again as the same record.
func TestContractMigrationsFromEachSQLiteVersion(t *testing.T) {
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) < 2 {
		t.Fatalf("migrations: %v, %v", files, err)
	}
	slices.Sort(files)
	for v := 1; v < len(files); v++ {
		t.Run(fmt.Sprintf("from-%d", v), func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "zerotouch.db")
			db := rawDB(t, path)
			for _, f := range files[:v] {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := db.Exec(string(b)); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
			}
			r := tpmRecord("OLD-0001", 1)
			body, err := json.Marshal(r.Enrollment)
			if err != nil {
				t.Fatal(err)
			}
			at := "2025-03-04T05:06:07.000000000Z"
			if _, err := db.Exec(fmt.Sprintf(`PRAGMA user_version = %d;
				INSERT INTO records (serial, attestation, registration_id, ek_public, station, result, enrollment, upload_state, created_at, updated_at)
				VALUES ('OLD-0001', 'tpm', '%s', x'%x', 'st-old', 'passed', '%s', 'uploaded', '%s', '%s');
				INSERT INTO audit (time, record_id, serial, event) VALUES ('%s', 1, 'OLD-0001', 'created')`,
				v, r.RegistrationID, r.EKPublic, body, at, at, at)); err != nil {
				t.Fatal(err)
			}
			db.Close()
			s, err := records.OpenURL(ctx, path)
			if err != nil {
				t.Fatalf("OpenURL(a version %d file): %v", v, err)
			}
			defer s.Close()
			got, err := s.List(ctx, records.Filter{Search: "ld-00"})
			if err != nil || len(got) != 1 || got[0].Station != "st-old" || got[0].UploadState != enroll.StateUploaded {
				t.Fatalf("List(search ld-00) after migrating from version %d = %+v, %v; want the old board", v, got, err)
			}
			res, err := s.Save(ctx, tpmRecord("OLD-0001", 1))
			if err != nil || res.Created || !res.Updated || res.Queued {
				t.Errorf("Save(the old board again) = %+v, %v; want updated, its uploaded enrollment kept", res, err)
			}
			if _, err := s.Save(ctx, tpmRecord("NEW-0002", 1)); !errors.Is(err, records.ErrClone) {
				t.Errorf("Save(the old board's EK under a new serial) = %v, want ErrClone", err)
			}
			if as, err := s.Audit(ctx, "OLD-0001"); err != nil || len(as) != 3 {
				t.Errorf("Audit(old board) = %d rows, %v; want 3 (created, updated, clone suspected)", len(as), err)
			}
		})
	}
}

// The chain DPS issued at a board's registration is kept with the
// registration on each adapter, and a new run of the board clears it
// with the registration's other columns.
func TestContractIssuedChain(t *testing.T) {
	const chain = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	forEachAdapter(t, func(t *testing.T, a *adapter) {
		ctx := context.Background()
		s := a.open(t)
		csave(t, s, tpmRecord("SN-1", 1))
		reg := records.Registration{State: "assigned", AssignedHub: "hub", DeviceID: "dev-1", IssuedChain: chain,
			At: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}
		if err := s.SetRegistration(ctx, "SN-1", reg, "ana"); err != nil {
			t.Fatalf("SetRegistration: %v", err)
		}
		got, err := s.Get(ctx, "SN-1")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.Registration == nil || got.Registration.IssuedChain != chain {
			t.Errorf("Get(SN-1).Registration = %+v, want the issued chain %q", got.Registration, chain)
		}
		csave(t, s, tpmRecord("SN-1", 1))
		if got, err := s.Get(ctx, "SN-1"); err != nil || got.Registration != nil {
			t.Errorf("Get(SN-1) after a new run = %+v, %v; want no registration", got.Registration, err)
		}
		csave(t, s, tpmRecord("SN-2", 2))
		if err := s.SetRegistration(ctx, "SN-2", records.Registration{State: "assigned"}, "ana"); err != nil {
			t.Fatalf("SetRegistration(no chain): %v", err)
		}
		if got, err := s.Get(ctx, "SN-2"); err != nil || got.Registration == nil || got.Registration.IssuedChain != "" {
			t.Errorf("Get(SN-2).Registration = %+v, %v; want no issued chain", got.Registration, err)
		}
	})
}
