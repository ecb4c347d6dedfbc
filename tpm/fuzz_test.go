package tpm_test

import (
	"context"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"zerotouch/board/hostile"
	"zerotouch/flasher"
	"zerotouch/internal/textsafe"
	"zerotouch/tpm"
)

// recorder keeps every response a TPM gives.
type recorder struct {
	t    transport.TPM
	rsps [][]byte
}

func (r *recorder) Send(cmd []byte) ([]byte, error) {
	rsp, err := r.t.Send(cmd)
	if err == nil {
		r.rsps = append(r.rsps, append([]byte(nil), rsp...))
	}
	return rsp, err
}

// identitySteps is what the station asks of a board's TPM in the TPM and
// X.509-TPM modes.
func identitySteps(ctx context.Context, d *tpm.Device) error {
	ek, err := d.EK(ctx)
	if err != nil {
		return err
	}
	if _, err := d.SRK(ctx); err != nil {
		return err
	}
	if _, err := d.EKCertificate(ctx, ek, nil); err != nil {
		return err
	}
	signer, err := d.SigningKey(ctx, tpm.ECDSAP256, tpm2.TPMHandle(0x81000002))
	if err != nil {
		return err
	}
	_, err = tpm.CSR(signer, "fuzz-board")
	return err
}

// FuzzTPMAnswers runs the station's TPM steps through the flasher's TPM
// passthrough to a board whose TPM answers as a real one did (the
// simulator's answers, recorded), but for one answer, which the fuzzer
// replaces: go-tpm and this package must turn any answer into an error,
// never a panic or a hang, and the error carries no raw answer bytes.
func FuzzTPMAnswers(f *testing.F) {
	rec := &recorder{t: newSim(f, 11)}
	if err := identitySteps(testCtx(f), tpm.New(rec, tpm.Options{})); err != nil {
		f.Fatalf("the steps against the simulator: %v", err)
	}
	recorded := rec.rsps
	for i, r := range recorded {
		f.Add(uint8(i), r)
	}
	f.Add(uint8(0), []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, at uint8, rsp []byte) {
		// A hang is a failure too: past its context's 5 s, crash with
		// every goroutine's stack, so that the fuzzer keeps the input.
		watchdog := time.AfterFunc(30*time.Second, func() {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			panic("hang:\n" + string(buf[:n]))
		})
		defer watchdog.Stop()
		station, boardSide := net.Pipe()
		b := hostile.New("FUZZ-TPM", boardSide)
		defer b.Close()
		var mu sync.Mutex
		n := 0
		b.On(hostile.TPM, func(_ <-chan struct{}, req flasher.Message, w io.Writer) {
			mu.Lock()
			i := n
			n++
			mu.Unlock()
			answer := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01} // TPM_RC_FAILURE once the script runs out
			switch {
			case i == int(at)%len(recorded):
				answer = rsp
			case i < len(recorded):
				answer = recorded[i]
			}
			w.Write(hostile.Frame(req, map[string]any{"rsp": answer}))
		})
		c, err := flasher.NewClient(context.Background(), station, flasher.Options{Baud: 4_000_000, Timeout: 50 * time.Millisecond,
			Retries: -1, SkipParams: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = identitySteps(ctx, tpm.New(c.TPM(ctx), tpm.Options{Board: "FUZZ-TPM"}))
		if err != nil && !textsafe.Printable(err.Error()) {
			t.Fatalf("error carries unescaped text: %q", err)
		}
	})
}
