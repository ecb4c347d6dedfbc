package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"

	"zerotouch/flasher"
)

// checkResult is one step of a board's round trip.
type checkResult struct {
	Event  string  `json:"event"`
	Serial string  `json:"serial"`
	Port   string  `json:"port"`
	Step   string  `json:"step"`
	OK     bool    `json:"ok"`
	Detail string  `json:"detail,omitempty"`
	Error  string  `json:"error,omitempty"`
	MS     float64 `json:"ms"`
}

// checkBoards makes one round trip to each board, all at once, and fails
// if any step on any board fails.
func checkBoards(ctx context.Context, g *globals, infos []boardInfo, baud int) error {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed int
	)
	report := func(r checkResult) {
		mu.Lock()
		defer mu.Unlock()
		if !r.OK {
			failed++
		}
		if g.json {
			json.NewEncoder(g.stdout).Encode(r)
			return
		}
		mark := "ok  "
		text := r.Detail
		if !r.OK {
			mark, text = "FAIL", r.Error
		}
		fmt.Fprintf(g.stdout, "%s %s %-9s %7.1f ms  %s\n", mark, r.Serial, r.Step, r.MS, text)
	}
	for _, info := range infos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			checkBoard(ctx, info, baud, report)
		}()
	}
	wg.Wait()
	if failed > 0 {
		return fmt.Errorf("%d check(s) failed on %d board(s)", failed, len(infos))
	}
	if !g.json {
		fmt.Fprintf(g.stdout, "all checks passed on %d board(s)\n", len(infos))
	}
	return nil
}

// checkBoard runs the steps on one board and stops at the first failure:
// later steps depend on the link the earlier ones proved.
func checkBoard(ctx context.Context, info boardInfo, baud int, report func(checkResult)) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var c *flasher.Client
	step := func(name string, fn func() (string, error)) bool {
		start := time.Now()
		detail, err := fn()
		r := checkResult{Event: "check", Serial: info.Serial, Port: info.Port, Step: name, OK: err == nil, Detail: detail,
			MS: float64(time.Since(start).Microseconds()) / 1000}
		if err != nil {
			r.Error = err.Error()
		}
		report(r)
		return err == nil
	}
	ok := step("connect", func() (string, error) {
		var err error
		c, err = flasher.Open(ctx, info.Port, flasher.Options{Baud: baud})
		if err != nil {
			return "", err
		}
		p := c.Params()
		return fmt.Sprintf("buffer %d bytes x %d", p.BufSize, p.BufCount), nil
	})
	if !ok {
		return
	}
	defer c.Close()
	var id flasher.Identity
	steps := []struct {
		name string
		fn   func() (string, error)
	}{
		{"echo", func() (string, error) {
			want := "zerotouch " + info.Serial
			got, err := c.Echo(ctx, want)
			if err == nil && got != want {
				err = fmt.Errorf("board echoed %q, sent %q", got, want)
			}
			return got, err
		}},
		{"identity", func() (string, error) {
			var err error
			id, err = c.Identity(ctx)
			if err == nil && id.Serial != info.Serial {
				err = fmt.Errorf("board says it is %q, expected %q", id.Serial, info.Serial)
			}
			return fmt.Sprintf("%s %s hw %s fw %s caps %v", id.Serial, id.Model, id.HW, id.FW, id.Caps), err
		}},
		{"tpm", func() (string, error) {
			if !id.Has(flasher.CapTPM) {
				return "board has no TPM: skipped", nil
			}
			return checkTPM(ctx, c)
		}},
		{"files", func() (string, error) {
			data := make([]byte, 4096)
			rand.Read(data)
			if err := c.FileUpload(ctx, "/lfs/zerotouch/check.bin", data, false, nil); err != nil {
				return "", err
			}
			back, err := c.FileDownload(ctx, "/lfs/zerotouch/check.bin", nil)
			if err == nil && !bytes.Equal(back, data) {
				err = fmt.Errorf("%w: read back %d bytes that differ from the %d written", flasher.ErrVerify, len(back), len(data))
			}
			return "4096 bytes written, hashed and read back", err
		}},
		{"keygen", func() (string, error) {
			if !id.Has(flasher.CapKeygen) {
				return "board cannot make keys: skipped", nil
			}
			csr, err := c.Keygen(ctx, flasher.AlgECDSAP256, info.Serial)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("CSR for CN=%s, signature verified", csr.Subject.CommonName), nil
		}},
	}
	for _, s := range steps {
		if !step(s.name, s.fn) {
			return
		}
	}
}

// ekHandle is where the endorsement key is persisted (DESIGN, identity).
const ekHandle = tpm2.TPMHandle(0x81010001)

// checkTPM proves the TPM passthrough: it reads the TPM's manufacturer,
// and the public area of the persisted endorsement key if there is one.
// It creates nothing: making the EK is provisioning's job.
func checkTPM(ctx context.Context, c *flasher.Client) (string, error) {
	tpm := c.TPM(ctx)
	caps, err := tpm2.GetCapability{
		Capability:    tpm2.TPMCapTPMProperties,
		Property:      uint32(tpm2.TPMPTManufacturer),
		PropertyCount: 1,
	}.Execute(tpm)
	if err != nil {
		return "", fmt.Errorf("read TPM manufacturer: %w", err)
	}
	props, err := caps.CapabilityData.Data.TPMProperties()
	if err != nil || len(props.TPMProperty) == 0 {
		return "", fmt.Errorf("read TPM manufacturer: %w: no property in the answer", flasher.ErrProtocol)
	}
	v := props.TPMProperty[0].Value
	maker := strings.TrimRight(string([]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), "\x00 ")
	rp, err := tpm2.ReadPublic{ObjectHandle: ekHandle}.Execute(tpm)
	if errors.Is(err, tpm2.TPMRCHandle) {
		return fmt.Sprintf("TPM by %s; no EK persisted at %#x yet", maker, uint32(ekHandle)), nil
	}
	if err != nil {
		return "", fmt.Errorf("read EK at %#x: %w", uint32(ekHandle), err)
	}
	sum := sha256.Sum256(rp.OutPublic.Bytes())
	return fmt.Sprintf("TPM by %s; EK at %#x, public sha256 %x...", maker, uint32(ekHandle), sum[:8]), nil
}
