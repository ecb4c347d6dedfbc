package device_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"zerotouch/enroll"
	"zerotouch/enroll/device"
	"zerotouch/enroll/emulator"
)

// Scale runs: DPS's device registration quota, on a clock that runs
// faster than the wall's.
const (
	scaleQuota = 1000 // device registrations a minute, as DPS
	scaleSpeed = 20   // the emulator's clock runs this many times faster
)

// scaleFaults are injected on every request of a scale run.
var scaleFaults = emulator.Faults{ErrorRate: 0.05, DropRate: 0.03, DropAfterRate: 0.02, Seed: 11}

// scaleResult is what a scale run did.
type scaleResult struct {
	devices      int
	emulated     time.Duration // on the emulator's clock, from the first register to the last assignment
	wall         time.Duration
	stats        emulator.Stats
	repeated     int // devices whose register was carried out more than once (an answer lost after the work)
	clientErrors int
}

// perMinute is the registrations a minute achieved on the emulator's
// clock.
func (r scaleResult) perMinute() float64 { return float64(r.devices) / r.emulated.Minutes() }

// runScale registers n devices of one symmetric-key group, workers at a
// time, against an emulator with DPS's registration quota on a clock
// scaleSpeed times faster than the wall's and scaleFaults on, and checks
// that every device ends assigned, with one registration record whose
// state is the one its client was told.
func runScale(tb testing.TB, n, workers int) scaleResult {
	start := time.Now()
	now := func() time.Time { return start.Add(time.Since(start) * scaleSpeed) }
	dps := newTestDPS(tb, emulator.Options{Now: now, RegistrationQuota: scaleQuota, Synchronous: "NORMAL"})
	groupKey := []byte("scale group key")
	dps.put("/enrollmentGroups/scale", symGroup("scale", groupKey))
	dps.e.SetFaults(scaleFaults)

	client := &http.Client{Transport: dps.client.Transport}
	ids := make(chan string)
	results := make([]*device.Result, n)
	var errs atomic.Int64
	var wg sync.WaitGroup
	begin, wallBegin := now(), time.Now()
	for range workers {
		wg.Go(func() {
			for id := range ids {
				cfg := dps.config(id)
				cfg.SymmetricKey = device.DeriveKey(groupKey, id)
				cfg.HTTPClient = client
				cfg.MaxWait = time.Second / scaleSpeed // a second on the emulator's clock
				cfg.Attempts = 30
				res, err := device.Register(testCtx(tb), cfg)
				if err != nil {
					errs.Add(1)
					tb.Errorf("Register(%s): %v", id, err)
					continue
				}
				var i int
				fmt.Sscanf(id, "scale-%d", &i)
				results[i] = res
			}
		})
	}
	for i := range n {
		ids <- fmt.Sprintf("scale-%05d", i)
	}
	close(ids)
	wg.Wait()
	out := scaleResult{devices: n, emulated: now().Sub(begin), wall: time.Since(wallBegin), stats: dps.e.Stats(), clientErrors: int(errs.Load())}
	dps.e.SetFaults(emulator.Faults{})

	// Every device: assigned, one registration record, in the state its
	// client was told.
	status, b := dps.serviceWith(http.MethodPost, "/registrations/scale/query", nil, http.Header{"X-Ms-Max-Item-Count": {"1000"}})
	var states []enroll.RegistrationState
	if status != http.StatusOK || json.Unmarshal(b, &states) != nil {
		tb.Fatalf("registration query: %d %.200s", status, b)
	}
	byID := map[string]enroll.RegistrationState{}
	for _, st := range states {
		if _, dup := byID[st.RegistrationID]; dup {
			tb.Errorf("registration %s listed twice", st.RegistrationID)
		}
		byID[st.RegistrationID] = st
	}
	if len(byID) != n {
		tb.Errorf("%d registration records for %d devices", len(byID), n)
	}
	for i, res := range results {
		id := fmt.Sprintf("scale-%05d", i)
		st, ok := byID[id]
		switch {
		case res == nil:
			continue // reported above
		case res.Status != "assigned" || !ok || st.Status != "assigned":
			tb.Errorf("%s: client told %+v, service holds %+v", id, res, st)
		case st.ETag != res.ETag || st.AssignedHub != res.AssignedHub:
			tb.Errorf("%s: client told etag %s hub %s, service holds etag %s hub %s", id, res.ETag, res.AssignedHub, st.ETag, st.AssignedHub)
		}
		if dps.registrations(id) > 1 {
			out.repeated++
		}
	}
	return out
}

// TestRegisterAtScale pushes 1,000 registrations through the quota and
// the faults, and checks the outcome: every device assigned, once, as
// its client was told (never the time it took).
func TestRegisterAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 registrations; -short skips them")
	}
	r := runScale(t, 1000, 64)
	t.Logf("%d devices in %v (%v on the emulator's clock): %.0f registrations/min against a quota of %d/min; %d register requests carried out, %d throttled, %d injected errors, %d connections cut (%d after the work), %d devices registered twice after a lost answer",
		r.devices, r.wall.Round(time.Millisecond), r.emulated.Round(time.Second), r.perMinute(), scaleQuota,
		r.stats.Registrations, r.stats.Throttled, r.stats.Errors, r.stats.Drops+r.stats.DropsAfter, r.stats.DropsAfter, r.repeated)
	// Whether the quota throttles depends on how fast this machine
	// serves; faults are drawn per request whatever the speed.
	if r.stats.Errors == 0 || r.stats.Drops == 0 || r.stats.DropsAfter == 0 {
		t.Errorf("stats %+v: want faults of each kind on the way", r.stats)
	}
}

// BenchmarkRegister reports the registrations a minute achieved (on the
// emulator's clock) for 1,000 devices under DPS's quota of 1,000 a
// minute with faults injected.
func BenchmarkRegister(b *testing.B) {
	for range b.N {
		r := runScale(b, 1000, 64)
		b.ReportMetric(r.perMinute(), "regs/min")
		b.ReportMetric(scaleQuota, "quota/min")
		b.ReportMetric(r.perMinute()/scaleQuota, "of-quota")
		b.ReportMetric(float64(r.stats.Throttled), "throttled")
		b.ReportMetric(float64(r.stats.Errors+r.stats.Drops+r.stats.DropsAfter), "faults")
		b.ReportMetric(float64(r.repeated), "repeated")
	}
}
