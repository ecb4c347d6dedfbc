package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"zerotouch/board"
	"zerotouch/ca"
	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
	"zerotouch/flasher"
	"zerotouch/station"
	"zerotouch/station/records"
)

// killTargets are where the kills of TestStationSurvivesSIGKILL aim, in
// turn: a step a slot has just begun, plus up to so long into it ("" is
// anywhere from the start of the process).
var killTargets = []killTarget{
	{station.StepConnect, 60 * time.Millisecond},
	{station.StepIdentity, 80 * time.Millisecond},
	{station.StepCertificate, 10 * time.Millisecond},
	{station.StepWrite, 350 * time.Millisecond},
	{station.StepVerify, 20 * time.Millisecond},
	{station.StepCommit, 15 * time.Millisecond},
	{station.StepRecord, 10 * time.Millisecond},
	{uploading, 40 * time.Millisecond},
	{"", 900 * time.Millisecond},
}

// uploading aims a kill at the background upload, which a board's pass
// starts.
const uploading = "upload"

// killBed is a station's world for the kill tests: four boards making
// their own keys (x509-keygen) at 115200 baud, a local CA, and the DPS
// emulator, which cuts three answers in ten after doing the work, so
// that enrollments reach DPS with the station none the wiser, as a kill
// mid-upload also leaves them.
type killBed struct {
	dir    string
	config string
	db     string
	boards []*board.Board
	srv    *emulator.Server
	dps    *enroll.Client
}

func newKillBed(t *testing.T) *killBed {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	srv, connFile := startEmulator(t, emulator.Options{Faults: emulator.Faults{DropAfterRate: 0.3, Seed: 5}})
	pwFile := filepath.Join(dir, "ca-password")
	if err := os.WriteFile(pwFile, []byte("line password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := ca.Init(ctx, filepath.Join(dir, "ca"), ca.InitOptions{Password: []byte("line password")})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	const baud = 115200
	kb := &killBed{dir: dir, db: filepath.Join(dir, "records.db"), srv: srv, boards: make([]*board.Board, 4)}
	var y strings.Builder
	fmt.Fprintf(&y, "station: st-kill\nline: l1\nattestation: x509-keygen\nid_scope: 0ne0001A2B3\nbaud: %d\ntimeout: 500ms\n", baud)
	fmt.Fprintf(&y, "records: %s\nlabels: {dir: %s}\n", kb.db, filepath.Join(dir, "labels"))
	fmt.Fprintf(&y, "ca:\n  dir: %s\n  password_file: %s\n", filepath.Join(dir, "ca"), pwFile)
	fmt.Fprintf(&y, "dps:\n  connection_string_file: %s\n  ca_file: %s\n  quota: 60000\n", connFile, srv.CAFile)
	y.WriteString("slots:\n")
	for i := range kb.boards {
		b, err := board.Start(board.Config{Serial: fmt.Sprintf("KILL-%d", i+1), Dir: t.TempDir(), TPM: board.TPMNone, Baud: baud})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		kb.boards[i] = b
		fmt.Fprintf(&y, "  - port: %s\n", b.Path())
	}
	kb.config = filepath.Join(dir, "station.yaml")
	if err := os.WriteFile(kb.config, []byte(y.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cs, _ := enroll.ParseConnectionString(srv.ConnectionString)
	if kb.dps, err = enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: srv.CAFile}); err != nil {
		t.Fatal(err)
	}
	return kb
}

// killTarget is where a kill aims: a step a slot has just begun, plus up
// to delay into it ("" is anywhere from the start of the process).
type killTarget struct {
	step  string
	delay time.Duration
}

// kills runs `zerotouch run --once` and kills it with SIGKILL, aiming
// at targets in turn, until want kills have landed, checking the records,
// the boards and DPS after each (checkAfterKill). It returns the steps
// the slots were in at the kills.
func (kb *killBed) kills(t *testing.T, targets []killTarget, want int, seed uint64) map[string]int {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 42))
	landed := map[string]int{} // slots in each step at the kills
	states := map[string]int{} // boards in each state after the kills
	killed, uploading := 0, 0
	start := time.Now()
	for trial := 0; killed < want && trial < 2*want; trial++ {
		target := targets[trial%len(targets)]
		delay := time.Duration(rng.Int64N(int64(target.delay) + 1))
		k := startStation(t, kb.config)
		if target.step == "" {
			k.killAfter(delay)
		} else {
			k.killAt(target.step, delay)
		}
		if !k.killed {
			// Nothing to kill: the run was quicker than the delay. It
			// must have passed every board.
			if k.exit != nil {
				t.Fatalf("trial %d (%s +%v): the run ended before the kill: %v\n%s\nstderr:\n%s", trial, stepOr(target.step), delay, k.exit,
					strings.Join(k.failed, "\n"), k.stderr.String())
			}
			t.Logf("trial %d (%s +%v): the run passed every board before the kill", trial, stepOr(target.step), delay.Round(time.Millisecond))
			continue
		}
		killed++
		quiet(kb.boards)
		releasePorts(t, kb.boards)
		var where []string
		for _, slot := range slices.Sorted(maps.Keys(k.last)) {
			e := k.last[slot]
			if e.Result == station.Running {
				landed[e.Step]++
				where = append(where, fmt.Sprintf("%s %s %.0f%%", slot, e.Step, 100*e.Progress))
			} else {
				where = append(where, fmt.Sprintf("%s %s %s", slot, e.Step, e.Result))
			}
		}
		if len(k.last) == 0 {
			landed["start"]++
			where = append(where, "before the first event")
		}
		st, inFlight := checkAfterKill(t, kb)
		for _, s := range st {
			_, state, _ := strings.Cut(s, " ")
			states[state]++
		}
		if inFlight > 0 {
			uploading++
			where = append(where, fmt.Sprintf("%d enrollments in flight", inFlight))
		}
		t.Logf("trial %d (%s +%v): killed at %s; boards %s", trial, stepOr(target.step), delay.Round(time.Millisecond),
			strings.Join(where, ", "), strings.Join(st, ", "))
		if t.Failed() {
			t.Fatalf("child's stderr:\n%s", k.stderr.String())
		}
	}
	t.Logf("%d kills in %v; slots in each step at the kills: %v; kills with an upload in flight: %d; boards found after the kills: %v",
		killed, time.Since(start).Round(time.Millisecond), landed, uploading, states)
	if killed < want {
		t.Fatalf("only %d kills landed", killed)
	}
	return landed
}

// finish runs the station to completion and checks the end state.
func (kb *killBed) finish(t *testing.T) {
	t.Helper()
	k := startStation(t, kb.config)
	k.wait(2 * time.Minute)
	if k.exit != nil {
		t.Fatalf("run to completion: %v\nstderr:\n%s", k.exit, k.stderr.String())
	}
	t.Logf("run to completion: %s", strings.TrimSpace(k.stderr.String()))
	checkFinal(t, kb)
}

// TestStationSurvivesSIGKILL is acceptance 4 of the station: `zerotouch
// run --once` over four boards at 115200 baud (X.509 with board-made
// keys, a local CA, enrollments uploaded to the DPS emulator) is killed
// with SIGKILL at random points, at least 20 times, each kill aimed at a
// step in turn, and started again (boards that passed in an earlier run
// are provisioned again in the next). After every kill the records open,
// no board is committed with anything but a whole configuration of its
// own, no record says passed unless its board holds that configuration
// committed, and DPS holds no enrollment for a key its board did not hold
// when it was written. A last run to completion leaves each board with
// exactly one passed record whose configuration hash is that of the file
// on the board, and DPS with exactly one enrollment per board: the one
// its record holds, uploaded, with no conflict.
func TestStationSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the station 20 times")
	}
	kb := newKillBed(t)
	landed := kb.kills(t, killTargets, 20, 41)
	for _, s := range []string{station.StepConnect, station.StepWrite, station.StepCommit, station.StepRecord} {
		if landed[s] == 0 {
			t.Errorf("no kill landed in step %s", s)
		}
	}
	kb.finish(t)
}

// reprovisionTargets aim at the steps that change a board that passed
// before: its new key, the write of its new configuration, the commit,
// and the record.
var reprovisionTargets = killTargets[1:8] // identity to upload

// TestReprovisionSurvivesSIGKILL is issue 17's acceptance 3: every board
// passes and is enrolled first; then the station provisions them again
// and is killed at 20 points during the new key, the write, the commit
// and the record. After each restart no record is passed unless its
// board's configuration verifies, and no enrollment reaches DPS for a key
// the board does not hold; a run to completion then leaves every board
// passed and enrolled with the key it holds.
func TestReprovisionSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("kills the station 20 times")
	}
	kb := newKillBed(t)
	kb.finish(t)
	landed := kb.kills(t, reprovisionTargets, 20, 17)
	for _, s := range []string{station.StepWrite, station.StepCommit, station.StepRecord} {
		if landed[s] == 0 {
			t.Errorf("no kill landed in step %s", s)
		}
	}
	kb.finish(t)
}

func stepOr(step string) string {
	if step == "" {
		return "any time"
	}
	return step
}

// killRun is one `zerotouch run --once` in a child process.
type killRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	events chan station.Event
	last   map[string]station.Event // by slot
	failed []string                 // failure events
	stderr bytes.Buffer
	killed bool
	exit   error
}

// startStation starts `zerotouch run --config config --once` as a child
// process: the test binary as zerotouch (see TestMain).
func startStation(t *testing.T, config string) *killRun {
	t.Helper()
	k := &killRun{t: t, events: make(chan station.Event, 256), last: map[string]station.Event{}}
	k.cmd = exec.Command(os.Args[0], "run", "--config", config, "--once")
	k.cmd.Env = append(os.Environ(), "ZEROTOUCH_TEST_AS_MAIN=1")
	k.cmd.Stderr = &k.stderr
	out, err := k.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(k.events)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var e station.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("stdout line %q is not an event: %v", sc.Text(), err)
				continue
			}
			k.events <- e
		}
	}()
	return k
}

// killAt kills the run once a slot begins step, after delay; or not at
// all, if the run ends first.
func (k *killRun) killAt(step string, delay time.Duration) {
	timeout := time.After(time.Minute)
	for {
		select {
		case e, ok := <-k.events:
			if !ok {
				k.wait(time.Minute)
				return
			}
			k.note(e)
			if e.Step == step && e.Result == station.Running || step == uploading && e.Result == station.Passed {
				k.killAfter(delay)
				return
			}
		case <-timeout:
			k.cmd.Process.Kill()
			k.cmd.Wait()
			k.t.Fatalf("no slot began %s in a minute\nstderr:\n%s", step, k.stderr.String())
		}
	}
}

// killAfter kills the run after d, unless it ends first.
func (k *killRun) killAfter(d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case e, ok := <-k.events:
			if !ok {
				k.wait(time.Minute)
				return
			}
			k.note(e)
		case <-timer.C:
			k.cmd.Process.Signal(syscall.SIGKILL)
			k.wait(time.Minute)
			return
		}
	}
}

// note keeps an event: the last of each slot, and every failure.
func (k *killRun) note(e station.Event) {
	k.last[e.Slot] = e
	if e.Result == station.Failed {
		k.failed = append(k.failed, fmt.Sprintf("%s %s at %s: %s (%s)", e.Slot, e.Serial, e.Step, e.Message, e.Error))
	}
}

// wait reads the rest of the events and waits for the process to end.
func (k *killRun) wait(limit time.Duration) {
	timeout := time.After(limit)
	for done := false; !done; {
		select {
		case e, ok := <-k.events:
			if !ok {
				done = true
				break
			}
			k.note(e)
		case <-timeout:
			k.cmd.Process.Kill()
			k.cmd.Wait()
			k.t.Fatalf("the station did not end in %v\nstderr:\n%s", limit, k.stderr.String())
		}
	}
	k.exit = k.cmd.Wait()
	if ws, ok := k.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		k.killed = true
	}
}

// quiet waits until the boards have taken in what the killed station
// left on their lines: they go on reading, and acting on, requests
// already written to the port.
func quiet(boards []*board.Board) {
	received := func() (n int64) {
		for _, b := range boards {
			n += b.Received()
		}
		return n
	}
	for last, deadline := int64(-1), time.Now().Add(5*time.Second); time.Now().Before(deadline); {
		n := received()
		if n == last {
			return
		}
		last = n
		time.Sleep(100 * time.Millisecond)
	}
}

// releasePorts does for the boards' pseudo-terminals what the kernel
// does for a real port when the last process that has it open dies: it
// clears the exclusive mode (TIOCEXCL) go.bug.st/serial sets on every
// port it opens. A virtual board holds its terminal open itself, so the
// terminal outlives the killed station with the mode still set, and a
// station not running as root could not open it again ("Serial port
// busy"). The boards run in this process: their terminals' descriptors
// are found among its own.
func releasePorts(t *testing.T, boards []*board.Board) {
	t.Helper()
	paths := map[string]bool{}
	for _, b := range boards {
		paths[b.Path()] = true
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil || !paths[target] {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := unix.IoctlSetInt(fd, unix.TIOCNXCL, 0); err != nil {
			t.Fatalf("release %s: %v", target, err)
		}
	}
}

// boardConfig is what the built-in json template writes to a board, as
// far as these tests look at it.
type boardConfig struct {
	Provisioning struct {
		RegistrationID string `json:"registrationId"`
		Attestation    struct {
			Type             string `json:"type"`
			CertificateChain string `json:"certificateChain"`
		} `json:"attestation"`
	} `json:"provisioning"`
	Device struct {
		Serial string `json:"serial"`
	} `json:"device"`
}

// checkAfterKill checks the records, the boards and DPS after a kill. It
// returns, for each board, its serial number and the state it was found
// in, and how many enrollments the kill left in flight.
func checkAfterKill(t *testing.T, kb *killBed) (found []string, inFlight int) {
	t.Helper()
	ctx := context.Background()
	store, err := records.Open(ctx, kb.db)
	if err != nil {
		t.Fatalf("the records do not open after a kill: %v", err)
	}
	defer store.Close()
	list, err := store.List(ctx, records.Filter{})
	if err != nil {
		t.Fatalf("the records cannot be listed after a kill: %v", err)
	}
	bySerial := map[string]*records.Record{}
	for i := range list {
		r := &list[i]
		if bySerial[r.Serial] != nil {
			t.Errorf("two records of board %s", r.Serial)
		}
		bySerial[r.Serial] = r
	}
	for _, b := range kb.boards {
		r := bySerial[b.Serial()]
		delete(bySerial, b.Serial())
		conf, err := b.ReadFile(station.DefaultConfigPath)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		sum := sha256.Sum256(conf)
		passed := r != nil && r.Result == records.ResultPassed
		state := ""
		switch {
		case b.Provisioned():
			// Committed: the board took the commit only for the hash of
			// what it holds, which must be a whole configuration of its
			// own.
			var c boardConfig
			if err := json.Unmarshal(conf, &c); err != nil || c.Device.Serial != b.Serial() ||
				c.Provisioning.RegistrationID != strings.ToLower(b.Serial()) || !strings.Contains(c.Provisioning.Attestation.CertificateChain, "BEGIN CERTIFICATE") {
				t.Errorf("board %s is committed with a configuration that is not its own whole one (%v):\n%s", b.Serial(), err, conf)
			}
			state = "committed"
		case conf == nil:
			state = "untouched"
		default:
			state = "written, not committed"
		}
		// No record says passed unless its board's configuration
		// verifies: committed, and the very one the record names, whose
		// certificate is for the key the board holds.
		if passed {
			if !b.Provisioned() || !bytes.Equal(r.ConfigSHA256, sum[:]) {
				t.Errorf("board %s: its record says passed, but the board is %s with a configuration of sha256 %x, not %x",
					b.Serial(), state, sum, r.ConfigSHA256)
			}
			if k := certKey(t, r.CertificateChain); k == nil || !k.Equal(b.DeviceKey(flasher.AlgECDSAP256)) {
				t.Errorf("board %s: its record says passed with a certificate for a key the board does not hold", b.Serial())
			}
		}
		switch {
		case r == nil:
			state += ", no record"
		case r.Result == records.ResultInProgress:
			state += ", in progress (was " + cmp.Or(r.PreviousResult, "new") + ")"
		case passed:
			state += ", recorded"
		default:
			t.Errorf("board %s has a record with result %s: %s", b.Serial(), r.Result, r.Message)
		}
		found = append(found, b.Serial()+" "+state)
	}
	for serial := range bySerial {
		t.Errorf("a record of board %s, which is on no slot", serial)
	}
	checkDPSKeys(t, kb)
	counts, err := store.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return found, counts[enroll.StateInFlight]
}

// checkDPSKeys checks that DPS holds nothing but the boards' enrollments,
// each for the key its board held when DPS wrote it: no enrollment
// reached DPS for a key its board had already replaced.
func checkDPSKeys(t *testing.T, kb *killBed) {
	t.Helper()
	bySerial := map[string]*board.Board{}
	for _, b := range kb.boards {
		bySerial[strings.ToLower(b.Serial())] = b
	}
	for e, err := range kb.dps.Enrollments(context.Background(), 100) {
		if err != nil {
			t.Fatal(err)
		}
		b := bySerial[strings.ToLower(e.RegistrationID)]
		if b == nil {
			t.Errorf("DPS holds an enrollment %s of no board", e.RegistrationID)
			continue
		}
		var chain string
		if x := e.Attestation.X509; x != nil && x.ClientCertificates != nil && x.ClientCertificates.Primary != nil {
			chain = x.ClientCertificates.Primary.Certificate
		}
		if e.LastUpdatedDateTimeUTC == nil {
			t.Errorf("DPS's enrollment %s has no time of writing", e.RegistrationID)
			continue
		}
		at := *e.LastUpdatedDateTimeUTC
		var held crypto.PublicKey
		for _, k := range b.KeysMade() {
			if !k.At.After(at) {
				held = k.Public
			}
		}
		got := certKey(t, chain)
		if got == nil || held == nil || !got.Equal(held) {
			t.Errorf("DPS wrote enrollment %s at %s for a key board %s did not hold then", e.RegistrationID, at.Format(time.RFC3339Nano), b.Serial())
		}
	}
}

// certKey is the public key of the first certificate of a PEM chain.
func certKey(t *testing.T, chain string) interface{ Equal(crypto.PublicKey) bool } {
	t.Helper()
	block, _ := pem.Decode([]byte(chain))
	if block == nil {
		return nil
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Errorf("a certificate does not parse: %v", err)
		return nil
	}
	k, _ := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return k
}

// checkFinal checks the end state: every board committed with one passed
// record of what it holds, and DPS holding exactly that record's
// enrollment, uploaded. A board with a problem has its audit trail logged.
func checkFinal(t *testing.T, kb *killBed) {
	t.Helper()
	ctx := context.Background()
	boards, dps, srv := kb.boards, kb.dps, kb.srv
	store, err := records.Open(ctx, kb.db)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	list, err := store.List(ctx, records.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(boards) {
		t.Errorf("%d records, want one per board: %d", len(list), len(boards))
	}
	held := map[string]*enroll.Enrollment{}
	for e, err := range dps.Enrollments(ctx, 100) {
		if err != nil {
			t.Fatal(err)
		}
		id := strings.ToLower(e.RegistrationID)
		if held[id] != nil {
			t.Errorf("DPS holds enrollment %s twice", id)
		}
		held[id] = e
	}
	if len(held) != len(boards) {
		t.Errorf("DPS holds %d enrollments, want one per board: %d", len(held), len(boards))
	}
	checkDPSKeys(t, kb)
	for _, b := range boards {
		var problems []string
		bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
		rs, err := store.List(ctx, records.Filter{Search: b.Serial()})
		if err != nil || len(rs) != 1 {
			t.Errorf("board %s has %d records (%v), want 1", b.Serial(), len(rs), err)
			continue
		}
		r := rs[0]
		conf, err := b.ReadFile(station.DefaultConfigPath)
		if err != nil {
			t.Errorf("board %s: %v", b.Serial(), err)
			continue
		}
		sum := sha256.Sum256(conf)
		if !b.Provisioned() || r.Result != records.ResultPassed || !bytes.Equal(r.ConfigSHA256, sum[:]) {
			bad("committed %v, record %s with config hash %x; the board holds %x", b.Provisioned(), r.Result, r.ConfigSHA256, sum)
		}
		if k := certKey(t, r.CertificateChain); k == nil || !k.Equal(b.DeviceKey(flasher.AlgECDSAP256)) {
			bad("its record's certificate is for a key the board does not hold")
		}
		switch got := held[r.RegistrationID]; {
		case r.Enrollment == nil || r.UploadState != enroll.StateUploaded:
			bad("enrollment %v in state %q (%s), want uploaded", r.Enrollment != nil, r.UploadState, r.UploadError)
		case got == nil:
			bad("DPS holds no enrollment %s", r.RegistrationID)
		default:
			if d := enroll.Differences(r.Enrollment, got); len(d) > 0 {
				bad("DPS's enrollment differs from the record's in %v", d)
			}
		}
		audit, err := store.Audit(ctx, b.Serial())
		if err != nil {
			t.Fatal(err)
		}
		saves := 0
		for _, a := range audit {
			if a.Event == records.EventCreated || a.Event == records.EventUpdated {
				saves++
			}
		}
		// A new certificate replaces the enrollment in DPS (mode update),
		// and an update sent again after a lost answer writes the same
		// one again: DPS's write count is at least one, and is shown.
		writes, err := srv.Emulator.Writes(ctx, r.RegistrationID)
		if err != nil || writes < 1 {
			bad("DPS wrote its enrollment %d times (%v)", writes, err)
		}
		if len(problems) == 0 {
			t.Logf("board %s: saved %d times, its enrollment written %d times in DPS", b.Serial(), saves, writes)
			continue
		}
		t.Errorf("board %s: %s", b.Serial(), strings.Join(problems, "; "))
		for _, a := range audit {
			t.Logf("  %s %s: %s", a.Time.Format("15:04:05.000"), a.Event, a.Detail)
		}
	}
}
