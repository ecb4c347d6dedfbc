//go:build unix

package emulator

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The slow-body test runs its server in a child process (this test
// binary again) whose open-file limit is lowered to slowFileLimit: 250
// connections and the server's own files are more than that.
const (
	slowChildEnv  = "ZEROTOUCH_EMULATOR_SLOW_CHILD" // the child's folder; set in the child only
	slowPrefix    = "slow-child: "                  // the child's lines for its parent
	slowFileLimit = 256
	slowConns     = 250
	slowDrip      = 2 * time.Second // between two bytes of a slow body
	slowAnswer    = time.Second     // a legitimate request is answered within
)

var slowReconnect = flag.Bool("slow-reconnect", false, "TestSlowBodies: a slow connection cut by the server connects again (a harsher test, whose answer times depend more on the machine's load)")

// slowChild is what the child tells its parent once it serves.
type slowChild struct {
	URL, CAFile, ConnectionString, IDScope string
	FileLimit                              uint64
}

// TestSlowBodies: with slowConns connections each sending a register
// request's header and then one byte of its body every slowDrip (a TPM
// device's first register request, whose body the emulator reads before
// any credential; with -slow-reconnect, connecting again when cut), to a
// server that may open only slowFileLimit files, a legitimate request on
// a new connection is still answered within slowAnswer.
func TestSlowBodies(t *testing.T) {
	if dir := os.Getenv(slowChildEnv); dir != "" {
		slowBodiesServer(t, dir)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSlowBodies$", "-test.count=1")
	cmd.Env = append(os.Environ(), slowChildEnv+"="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the server's process: %v", err)
	}
	lines := bufio.NewScanner(stdout)
	childLine := func() string {
		for lines.Scan() {
			if l, ok := strings.CutPrefix(lines.Text(), slowPrefix); ok {
				return l
			}
		}
		return ""
	}
	stopped := false
	stopChild := func() string {
		if stopped {
			return ""
		}
		stopped = true
		stdin.Close()
		last := childLine()
		io.Copy(io.Discard, stdout)
		if err := cmd.Wait(); err != nil {
			t.Errorf("the server's process: %v\n%s", err, stderr.Bytes())
		}
		return last
	}
	defer stopChild()
	var info slowChild
	if err := json.Unmarshal([]byte(childLine()), &info); err != nil || info.URL == "" {
		stdin.Close()
		cmd.Wait()
		t.Fatalf("the server's process did not say where it serves (%v):\n%s", err, stderr.Bytes())
	}
	t.Logf("server at %s, open-file limit %d", info.URL, info.FileLimit)

	c := newRawClient(t, info.URL, info.CAFile, info.ConnectionString, info.IDScope)
	fresh := func() *http.Client {
		return &http.Client{Timeout: slowAnswer, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: c.pool}, DisableKeepAlives: true}}
	}
	legit := func() (int, time.Duration, error) {
		req, _ := http.NewRequest("GET", info.URL+servicePath("/enrollments/slow-tpm"), nil)
		req.Header.Set("Authorization", c.token())
		start := time.Now()
		resp, err := fresh().Do(req)
		if err != nil {
			return 0, time.Since(start), err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, time.Since(start), nil
	}
	body, _ := json.Marshal(tpmEnrollment("slow-tpm"))
	req, _ := http.NewRequest("PUT", info.URL+servicePath("/enrollments/slow-tpm"), bytes.NewReader(body))
	req.Header.Set("Authorization", c.token())
	req.Header.Set("Content-Type", "application/json")
	if resp, err := fresh().Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT the enrollment: %v %v", resp, err)
	}
	if st, took, err := legit(); err != nil || st != 200 {
		t.Fatalf("GET before the slow connections: %d %v", st, err)
	} else {
		t.Logf("GET before the slow connections: answered after %v", took.Round(time.Millisecond))
	}

	// The slow connections: each sends its header and a first byte, then
	// a byte every slowDrip until the server cuts it (with
	// -slow-reconnect, it then connects again) or the test ends.
	ctx, cancel := context.WithCancel(context.Background())
	var wg, started sync.WaitGroup
	var sending, refused, cut atomic.Int64
	head := c.head("PUT", c.devicePath("slow-tpm/register"), "", 4096)
	drip := func(first func()) {
		conn, err := c.dial()
		if err != nil {
			refused.Add(1)
			first()
			return
		}
		defer conn.Close()
		_, err = io.WriteString(conn, head+"{")
		first()
		if err != nil {
			cut.Add(1)
			return
		}
		sending.Add(1)
		defer sending.Add(-1)
		tick := time.NewTicker(slowDrip)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if _, err := io.WriteString(conn, " "); err != nil {
				cut.Add(1)
				return
			}
		}
	}
	for range slowConns {
		wg.Add(1)
		started.Add(1)
		go func() {
			defer wg.Done()
			drip(started.Done)
			for *slowReconnect && ctx.Err() == nil {
				drip(func() {})
			}
		}()
	}
	started.Wait()
	t.Logf("%d slow connections sent their header (%d could not connect)", slowConns-int(refused.Load()), refused.Load())
	time.Sleep(2*slowDrip + slowDrip/2)

	for i := range 3 {
		st, took, err := legit()
		t.Logf("GET %d under %d slow connections: %d after %v (%v); %d slow ones sending, %d cut so far, %d refused", i+1, slowConns, st, took.Round(time.Millisecond), err, sending.Load(), cut.Load(), refused.Load())
		if err != nil || st != 200 {
			t.Errorf("GET %d under %d slow connections: %d %v; want 200 within %v", i+1, slowConns, st, err, slowAnswer)
		}
		time.Sleep(slowDrip / 2)
	}
	cancel()
	wg.Wait()
	if stats := stopChild(); stats != "" {
		t.Logf("server: %s", stats)
	}
}

// slowBodiesServer is the child's part: it serves with an open-file
// limit of slowFileLimit until its standard input closes, then prints
// its stats.
func slowBodiesServer(t *testing.T, dir string) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	rl.Cur = slowFileLimit
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatalf("lower the open-file limit: %v", err)
	}
	s, err := Start(context.Background(), "127.0.0.1:0", dir, Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	b, _ := json.Marshal(slowChild{URL: s.URL, CAFile: s.CAFile, ConnectionString: s.ConnectionString, IDScope: s.IDScope, FileLimit: uint64(rl.Cur)})
	fmt.Println(slowPrefix + string(b))
	io.Copy(io.Discard, os.Stdin)
	b, _ = json.Marshal(s.Emulator.Stats())
	fmt.Println(slowPrefix + string(b))
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
