package main

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"
)

// board --listen serves each board on a TCP port of its own, which the
// check (and any station) reaches as tcp://HOST:PORT.
func TestBoardListen(t *testing.T) {
	t.Setenv("ZEROTOUCH_TEST_AS_MAIN", "1")
	// With the TPM simulator each board runs in a process of its own.
	code, out, errOut := run(t, "board", "--listen", "tcp://127.0.0.1:0", "--count", "2", "--baud", "2000000", "--check", "--json")
	if code != exitOK {
		t.Fatalf("board --listen --check exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	ports := map[string]string{} // serial: port
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r checkResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("stdout line %q is not JSON: %v", sc.Text(), err)
		}
		if !r.OK {
			t.Errorf("step %s on %s failed: %s", r.Step, r.Serial, r.Error)
		}
		if !strings.HasPrefix(r.Port, "tcp://127.0.0.1:") {
			t.Errorf("board %s on %q, want tcp://127.0.0.1:PORT", r.Serial, r.Port)
		}
		ports[r.Serial] = r.Port
	}
	if len(ports) != 2 || ports["ZTV000001"] == ports["ZTV000002"] {
		t.Errorf("boards on %v, want two boards on two ports", ports)
	}
	for _, args := range [][]string{
		{"board", "--listen", "udp://127.0.0.1:0"},
		{"board", "--listen", "127.0.0.1:4001"},
		{"board", "--listen", "tcp://127.0.0.1:65535", "--count", "2", "--tpm", "none"},
	} {
		code, _, errOut := run(t, args...)
		if code != exitUsage || !strings.Contains(errOut, "--listen") {
			t.Errorf("%q: exit %d (stderr %q), want %d naming --listen", args, code, errOut, exitUsage)
		}
	}
}
