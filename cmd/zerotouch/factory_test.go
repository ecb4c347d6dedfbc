package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"zerotouch/internal/pgtest"
	"zerotouch/internal/swtpm"
	"zerotouch/station"
	"zerotouch/station/records"
)

// boardSet is a `zerotouch board` process and its boards' ports.
type boardSet struct {
	cmd   *exec.Cmd
	ports []string
	once  sync.Once
}

// stop ends the boards, once.
func (b *boardSet) stop() {
	b.once.Do(func() {
		b.cmd.Process.Signal(syscall.SIGTERM)
		b.cmd.Wait()
	})
}

// startBoards runs zerotouch board with args (this test binary standing
// in for zerotouch) until the test ends, and waits for its n boards.
func startBoards(t *testing.T, n int, args ...string) *boardSet {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{"board", "--json"}, args...)...)
	cmd.Env = append(os.Environ(), "ZEROTOUCH_TEST_AS_MAIN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &boardSet{cmd: cmd}
	t.Cleanup(b.stop)
	sc := bufio.NewScanner(out)
	for len(b.ports) < n && sc.Scan() {
		var info boardInfo
		if json.Unmarshal(sc.Bytes(), &info) == nil && info.Port != "" {
			b.ports = append(b.ports, info.Port)
		}
	}
	if len(b.ports) < n {
		t.Fatalf("board %s: %d of %d boards came up\n%s", strings.Join(args, " "), len(b.ports), n, errOut.String())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	return b
}

// factoryStation writes a station.yaml for a station of line on ports,
// with its records in the factory database db, and no DPS.
func factoryStation(t *testing.T, dir, name, line, db string, ports []string) string {
	t.Helper()
	var y strings.Builder
	fmt.Fprintf(&y, "station: %s\nline: %s\nattestation: tpm\nid_scope: 0ne0001A2B3\nbaud: 1000000\nrecords: %s\n", name, line, db)
	fmt.Fprintf(&y, "dps: {upload: false}\nlabels: {dir: %s}\nslots:\n", filepath.Join(dir, name+"-labels"))
	for _, p := range ports {
		fmt.Fprintf(&y, "  - port: %s\n", p)
	}
	file := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(file, []byte(y.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// runFactoryStation runs zerotouch run --once as a process of its own.
func runFactoryStation(ctx context.Context, config string) (code int, stdout, stderr string) {
	self, _ := os.Executable()
	cmd := exec.CommandContext(ctx, self, "run", "--config", config, "--once")
	cmd.Env = append(os.Environ(), "ZEROTOUCH_TEST_AS_MAIN=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code = cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		code = -1
	}
	return code, out.String(), errOut.String()
}

// TestFactoryStations: four zerotouch run processes, 8 slots each, record
// their boards in one PostgreSQL at once: every board once. Then a board
// on another line whose TPM (one swtpm) is a board's of the first
// station is refused as a possible clone, naming that board, station and
// line.
func TestFactoryStations(t *testing.T) {
	if testing.Short() {
		t.Skip("32 virtual boards with simulated TPMs and four stations")
	}
	db := pgtest.New(t)
	dir := t.TempDir()
	tpm, err := swtpm.Start(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()

	var configs []string
	var shared *boardSet // the board on the swtpm
	for i := range 4 {
		var ports []string
		if i == 0 {
			// Seven boards with simulators, and one on the swtpm.
			ports = startBoards(t, 7, "--count", "7", "--first", "1", "--serial-prefix", "ZTF", "--baud", "1000000").ports
			shared = startBoards(t, 1, "--first", "900", "--serial-prefix", "ZTF", "--baud", "1000000", "--tpm", "tcp:"+tpm.Addr)
			ports = append(ports, shared.ports...)
		} else {
			ports = startBoards(t, 8, "--count", "8", "--first", fmt.Sprint(100*i+1), "--serial-prefix", "ZTF", "--baud", "1000000").ports
		}
		configs = append(configs, factoryStation(t, dir, fmt.Sprintf("st-%d", i+1), fmt.Sprintf("line-%d", i%2+1), db, ports))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	codes := make([]int, len(configs))
	errs := make([]string, len(configs))
	for i, c := range configs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _, errs[i] = runFactoryStation(ctx, c)
		}()
	}
	wg.Wait()
	t.Logf("4 stations × 8 boards on PostgreSQL in %.1f s", time.Since(start).Seconds())
	for i, code := range codes {
		if code != exitOK || !strings.Contains(errs[i], "8 boards passed, 0 failed") {
			t.Errorf("station st-%d: exit %d\n%s", i+1, code, tail(errs[i], 15))
		}
	}

	s, err := records.OpenURLReadOnly(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rs, err := s.List(context.Background(), records.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range rs {
		seen[r.Serial]++
		if r.Result != records.ResultPassed {
			t.Errorf("board %s: %s, want passed", r.Serial, r.Result)
		}
	}
	if len(rs) != 32 || len(seen) != 32 {
		t.Errorf("the factory database has %d records of %d boards, want 32 boards once each", len(rs), len(seen))
	}

	// A board on line 9 with the swtpm that ZTF000900 of st-1 has (swtpm
	// serves one board at a time: that one goes first).
	shared.stop()
	clone := startBoards(t, 1, "--first", "990", "--serial-prefix", "ZTF", "--baud", "1000000", "--tpm", "tcp:"+tpm.Addr)
	code, out, errOut := runFactoryStation(ctx, factoryStation(t, dir, "st-9", "line-9", db, clone.ports))
	if code != exitFailed {
		t.Fatalf("the clone's station: exit %d, want %d\n%s", code, exitFailed, tail(errOut, 15))
	}
	var failed *station.Event
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var e station.Event
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Result == station.Failed {
			failed = &e
		}
	}
	if failed == nil || !failed.Clone || failed.Serial != "ZTF000990" ||
		!strings.Contains(failed.Message, "(board ZTF000900 at station st-1, line line-1)") {
		t.Errorf("the clone's failure = %+v, want a clone naming ZTF000900 at station st-1, line line-1", failed)
	}
}
