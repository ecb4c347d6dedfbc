package flasher_test

import (
	"bytes"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"zerotouch/board"
	"zerotouch/flasher"
)

// startSwtpm runs swtpm with its TPM on a free TCP port and returns the
// board's TPM spec for it.
func startSwtpm(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		t.Skip("swtpm is not installed (the README's install step installs it)")
	}
	var ports [2]int
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	cmd := exec.Command(bin, "socket", "--tpm2",
		"--server", fmt.Sprintf("type=tcp,bindaddr=127.0.0.1,port=%d", ports[0]),
		"--ctrl", fmt.Sprintf("type=tcp,bindaddr=127.0.0.1,port=%d", ports[1]),
		"--tpmstate", "dir="+t.TempDir(),
		"--flags", "not-need-init,startup-clear")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start swtpm: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("swtpm did not listen on %s: %v\n%s", addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "tcp:" + addr
}

// TestTPMSwtpm runs the passthrough against swtpm over TCP, as a station
// without the simulator's cgo would.
func TestTPMSwtpm(t *testing.T) {
	spec := startSwtpm(t)
	b := newTestBoard(t, board.Config{TPM: spec})
	c := newTestClient(t, b.Path(), testBaud, flasher.Options{})
	tpm := c.TPM(testCtx(t))
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tpm2.ECCEKTemplate),
	}.Execute(tpm)
	if err != nil {
		t.Fatalf("CreatePrimary through the board to swtpm: %v", err)
	}
	tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tpm)
	pub, err := rsp.OutPublic.Contents()
	if err != nil || pub.Type != tpm2.TPMAlgECC {
		t.Errorf("EK public = %v, %v; want an ECC key", pub, err)
	}
	id, err := c.Identity(testCtx(t))
	if err != nil || !id.Has(flasher.CapTPM) {
		t.Errorf("Identity = %+v, %v; want the tpm capability", id, err)
	}
}

// lockedBuffer collects a child process's output for a failure message.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
