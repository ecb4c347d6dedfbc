package board

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"zerotouch/flasher"
)

// Faults are what can go wrong on purpose. Byte counts run from the moment
// the faults are set; each count-triggered fault fires once.
type Faults struct {
	// DropAfter drops the line once this many bytes have been received:
	// from then on the board hears nothing and says nothing (a cable
	// pulled mid-transfer), for DropFor, or until SetFaults if DropFor is
	// zero.
	DropAfter int64
	DropFor   time.Duration
	// CorruptTx flips a bit in each of the next CorruptTx frames the board
	// sends; CorruptRx loses the next CorruptRx requests to line noise.
	CorruptTx int
	CorruptRx int
	// Delay is added before every answer (a slow board).
	Delay time.Duration
	// RC answers the named commands ("fs.file", "prov.tpm"...) with this
	// result code instead of carrying them out: an SMP rc for version 1
	// requests, and the group rc for version 2 ones.
	RC map[string]int
	// ResetAfter reboots the board once this many bytes have been
	// received, mid-transfer.
	ResetAfter int64
	// NoReplay makes the board carry out a resent request again instead
	// of repeating its answer, as stock MCUmgr groups do.
	NoReplay bool
	// CorruptWrite flips a bit in the data of each of the next
	// CorruptWrite file system writes as it goes to flash (a bad flash
	// cell): the board answers as if all were well.
	CorruptWrite int
	// TPMGarbage answers the next TPMGarbage TPM commands with random
	// bytes instead of the TPM's response (a TPM on a bad bus), without
	// running them.
	TPMGarbage int
}

// SetFaults replaces the board's faults and restores a dropped line.
func (b *Board) SetFaults(f Faults) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults = f
	b.rxSince = 0
	b.dead = false
}

// Received returns how many bytes the board has received since its faults
// were last set.
func (b *Board) Received() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rxSince
}

func (b *Board) injectedRC(h flasher.Header) (*smpErr, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rc, ok := b.faults.RC[h.String()]
	if !ok || rc == 0 {
		return nil, false
	}
	return &smpErr{rc: flasher.RC(rc), group: h.Group, groupRC: rc}, true
}

// ParseFaults parses a fault list as the board command takes it:
// comma-separated terms among drop-after=N, drop-for=DURATION,
// corrupt-tx=N, corrupt-rx=N, delay=DURATION, reset-after=N,
// no-replay=true, corrupt-write=N, tpm-garbage=N and rc=COMMAND:CODE (rc
// may repeat).
func ParseFaults(spec string) (Faults, error) {
	var f Faults
	if strings.TrimSpace(spec) == "" {
		return f, nil
	}
	for term := range strings.SplitSeq(spec, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(term), "=")
		if !ok || val == "" {
			return f, fmt.Errorf("fault %q: want NAME=VALUE", term)
		}
		var err error
		switch key {
		case "drop-after":
			f.DropAfter, err = strconv.ParseInt(val, 10, 64)
		case "drop-for":
			f.DropFor, err = time.ParseDuration(val)
		case "corrupt-tx":
			f.CorruptTx, err = strconv.Atoi(val)
		case "corrupt-rx":
			f.CorruptRx, err = strconv.Atoi(val)
		case "delay":
			f.Delay, err = time.ParseDuration(val)
		case "reset-after":
			f.ResetAfter, err = strconv.ParseInt(val, 10, 64)
		case "no-replay":
			f.NoReplay, err = strconv.ParseBool(val)
		case "corrupt-write":
			f.CorruptWrite, err = strconv.Atoi(val)
		case "tpm-garbage":
			f.TPMGarbage, err = strconv.Atoi(val)
		case "rc":
			cmd, code, ok := strings.Cut(val, ":")
			var n int
			if ok {
				n, err = strconv.Atoi(code)
			}
			if !ok || err != nil || n <= 0 {
				return f, fmt.Errorf("fault %q: want rc=COMMAND:CODE, as rc=fs.file:3", term)
			}
			if f.RC == nil {
				f.RC = map[string]int{}
			}
			f.RC[cmd] = n
		default:
			return f, fmt.Errorf("fault %q: unknown (drop-after, drop-for, corrupt-tx, corrupt-rx, delay, reset-after, no-replay, corrupt-write, tpm-garbage, rc)", key)
		}
		if err != nil {
			return f, fmt.Errorf("fault %q: %w", term, err)
		}
	}
	return f, nil
}
