package station_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"zerotouch/board"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/internal/pgtest"
	"zerotouch/station"
	"zerotouch/station/records"
)

// The station process of TestSequenceSharedAcrossKills, run by the test
// binary itself when sequenceChildEnv names the records store.
const sequenceChildEnv = "ZT_SEQUENCE_STATION"

// TestSequenceHelperProcess is one station of TestSequenceSharedAcrossKills:
// two stock boards on two slots, provisioned again and again on a
// sequence line, each run printing "passed SERIAL" once its board has
// passed, until the process is killed.
func TestSequenceHelperProcess(t *testing.T) {
	target := os.Getenv(sequenceChildEnv)
	if target == "" {
		return
	}
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var store records.DB
	var err error
	for { // a SQLite file has one writer at a time: wait for it
		store, err = records.OpenURL(ctx, target)
		if !errors.Is(err, records.ErrBusy) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		fail(err)
	}
	var boards []*board.Board
	y := "station: " + os.Getenv("ZT_SEQUENCE_NAME") + "\nattestation: symmetric-key\nid_scope: 0ne0001A2B3\n" +
		"symmetric_key: {group_id: g}\nbaud: 2000000\n" + stockSequence + "slots:\n"
	dir, err := os.MkdirTemp(os.Getenv("ZT_SEQUENCE_DIR"), "boards-")
	if err != nil {
		fail(err)
	}
	for i := range 2 {
		b, err := board.Start(board.Config{Serial: fmt.Sprint("b", i), Profile: board.ProfileStock, TPM: board.TPMNone,
			Dir: filepath.Join(dir, fmt.Sprint(i)), Baud: 2_000_000, NoSync: true, BootTime: time.Millisecond})
		if err != nil {
			fail(err)
		}
		boards = append(boards, b)
		y += "  - port: " + b.Path() + "\n"
	}
	cfg, err := station.ParseConfig([]byte(y))
	if err != nil {
		fail(err)
	}
	tmpl, err := fwtemplates.Builtin("json")
	if err != nil {
		fail(err)
	}
	st, err := station.New(cfg, station.Deps{Store: store, Template: tmpl, GroupKey: groupKey, Headless: true})
	if err != nil {
		fail(err)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, b := range boards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				res, err := st.Provision(ctx, cfg.Slots[i], b.Path())
				if err != nil {
					fail(err)
				}
				mu.Lock()
				fmt.Println("passed", res.Record.Serial)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestSequenceSharedAcrossKills: two stations share one records store and
// provision 1,000 boards on a sequence line between them, one of them
// killed (SIGKILL) and started again every few dozen boards; no serial
// number is handed out twice. On PostgreSQL the two run at once; a SQLite
// file has one station at a time, so there they take turns, each killed
// in its turn.
func TestSequenceSharedAcrossKills(t *testing.T) {
	if testing.Short() {
		t.Skip("provisions 1,000 boards")
	}
	for _, store := range []struct {
		name     string
		target   func(t *testing.T) string
		together bool
	}{
		{"sqlite", func(t *testing.T) string { return filepath.Join(t.TempDir(), "records.db") }, false},
		{"postgres", func(t *testing.T) string { return pgtest.New(t) }, true},
	} {
		t.Run(store.name, func(t *testing.T) {
			target := store.target(t)
			s, err := records.OpenURL(context.Background(), target)
			if err != nil {
				t.Fatal(err)
			}
			s.Close()                   // migrated before the stations start
			boardsDir := t.TempDir()    // the stations' virtual boards' flash
			seen := map[string]string{} // serial -> the station that printed it
			kills := 0
			var mu sync.Mutex
			total := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }
			run := func(name string, upTo int) {
				cmd := exec.Command(os.Args[0], "-test.run=^TestSequenceHelperProcess$")
				cmd.Env = append(os.Environ(), sequenceChildEnv+"="+target, "ZT_SEQUENCE_NAME="+name, "ZT_SEQUENCE_DIR="+boardsDir)
				out, err := cmd.StdoutPipe()
				if err != nil {
					t.Error(err)
					return
				}
				var stderr strings.Builder
				cmd.Stderr = &stderr
				if err := cmd.Start(); err != nil {
					t.Error(err)
					return
				}
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					serial, ok := strings.CutPrefix(sc.Text(), "passed ")
					if !ok {
						continue
					}
					mu.Lock()
					if other, dup := seen[serial]; dup {
						t.Errorf("serial number %s handed out twice: to %s and to %s", serial, other, name)
					}
					seen[serial] = name
					n := len(seen)
					mu.Unlock()
					if n >= upTo {
						break
					}
				}
				cmd.Process.Signal(syscall.SIGKILL)
				err = cmd.Wait()
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
					t.Errorf("station %s ended on its own: %v\n%s", name, err, stderr.String())
				}
				mu.Lock()
				kills++
				mu.Unlock()
			}
			const boards = 1000
			if store.together {
				var wg sync.WaitGroup
				for _, name := range []string{"st-a", "st-b"} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for n := total(); n < boards && !t.Failed(); n = total() {
							run(name, min(boards, n+40+rand.IntN(80)))
						}
					}()
				}
				wg.Wait()
			} else {
				for i := 0; total() < boards && !t.Failed(); i++ {
					run([]string{"st-a", "st-b"}[i%2], min(boards, total()+40+rand.IntN(80)))
				}
			}
			if total() < boards {
				t.Fatalf("%d boards passed, want %d", total(), boards)
			}
			s, err = records.OpenURL(context.Background(), target)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			list, err := s.List(context.Background(), records.Filter{Result: records.ResultPassed, Limit: 2 * boards})
			if err != nil {
				t.Fatal(err)
			}
			if len(list) < total() {
				t.Errorf("%d passed records for %d boards that passed: boards shared a serial number", len(list), total())
			}
			t.Logf("%d boards, %d distinct serial numbers, %d passed records, %d stations killed", total(), len(seen), len(list), kills)
		})
	}
}
