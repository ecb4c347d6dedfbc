package station_test

import (
	"context"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/board/hostile"
	"zerotouch/flasher"
	"zerotouch/internal/textsafe"
	"zerotouch/station"
	"zerotouch/station/records"
)

// hostileCase is one way a board can lie to the station.
type hostileCase struct {
	name string
	// set makes the board hostile.
	set func(b *hostile.Board)
	// extra is station.yaml added for this case.
	extra string
	// pass: the station takes the lie in its stride (a value it clamps)
	// and the board passes. Otherwise its run fails, and its cause says
	// want (a sentinel's text, or another error's).
	pass bool
	want string
	// silent: nothing answers on the port at all, so with Once the slot
	// is reported empty (EmptySilent) rather than a board failed.
	silent bool
}

// identity is an honest identity answer but for the fields given.
func identity(fields map[string]any) hostile.Reply {
	body := map[string]any{"serial": "HOSTILE-1", "model": "hostile", "hw": "1", "fw": "1.0.0", "caps": []string{"fs"}}
	for k, v := range fields {
		body[k] = v
	}
	return hostile.Answer(body)
}

// framedGarbage answers with a well-framed packet whose SMP body is not
// CBOR.
func framedGarbage(n int) hostile.Reply {
	return func(_ <-chan struct{}, req flasher.Message, w io.Writer) {
		h := req.Header
		h.Op = h.Op.Response()
		body := make([]byte, n)
		rand.NewChaCha8([32]byte{7}).Read(body)
		h.Len = uint16(len(body))
		msg, _ := h.AppendBinary(nil)
		w.Write(hostile.FrameRaw(append(msg, body...)))
	}
}

// staleFlood answers with everything but the right sequence number.
func staleFlood() hostile.Reply {
	return func(stop <-chan struct{}, req flasher.Message, w io.Writer) {
		for i := range 200 {
			m := req
			m.Seq = req.Seq + 1 + uint8(i%200)
			w.Write(hostile.Frame(m, map[string]any{"off": 0}))
		}
	}
}

// slowly delays the honest answer of a command by d.
func slowly(d time.Duration, r hostile.Reply) hostile.Reply {
	return func(stop <-chan struct{}, req flasher.Message, w io.Writer) {
		select {
		case <-stop:
			return
		case <-time.After(d):
		}
		r(stop, req, w)
	}
}

// announceHuge starts a packet announcing 65,535 bytes and then sends
// its lines one every interval, forever.
func announceHuge(every time.Duration) hostile.Reply {
	return func(stop <-chan struct{}, req flasher.Message, w io.Writer) {
		frame := hostile.FrameRaw(make([]byte, flasher.MaxMessage))
		for len(frame) > 0 {
			i := strings.IndexByte(string(frame), '\n') + 1
			if _, err := w.Write(frame[:i]); err != nil {
				return
			}
			frame = frame[i:]
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
		}
	}
}

func hostileCases() []hostileCase {
	params := func(size, count any) func(*hostile.Board) {
		return func(b *hostile.Board) {
			b.On(hostile.Params, hostile.Answer(map[string]any{"buf_size": size, "buf_count": count}))
		}
	}
	on := func(k hostile.Key, r hostile.Reply) func(*hostile.Board) {
		return func(b *hostile.Board) { b.On(k, r) }
	}
	serial := func(s any) func(*hostile.Board) { return on(hostile.Identity, identity(map[string]any{"serial": s})) }
	return []hostileCase{
		// Buffer parameters: clamped when too large, refused when absurd.
		{name: "buf_size 65540", set: params(65540, 4), pass: true},
		{name: "buf_size 70000", set: params(70000, 4), pass: true},
		{name: "buf_size 1e6", set: params(1_000_000, 4), pass: true},
		{name: "buf_size 2^62", set: params(uint64(1)<<62, 4), pass: true},
		{name: "buf_size 2^64-1", set: params(uint64(math.MaxUint64), 4), want: flasher.ErrProtocol.Error()},
		{name: "buf_size negative", set: params(-5, 4), want: flasher.ErrProtocol.Error()},
		{name: "buf_size tiny", set: params(10, 4), want: flasher.ErrProtocol.Error()},
		{name: "buf_count negative", set: params(1024, -1), want: flasher.ErrProtocol.Error()},
		{name: "buf_size a string", set: params("big", 4), want: flasher.ErrProtocol.Error()},
		// Serial numbers of every class of special character.
		{name: "serial path", set: serial("../../etc/passwd"), want: flasher.ErrBadIdentity.Error()},
		{name: "serial backslash", set: serial(`SN\1`), want: flasher.ErrBadIdentity.Error()},
		{name: "serial dotdot", set: serial(".."), want: flasher.ErrBadIdentity.Error()},
		{name: "serial newline", set: serial("SN-9\nFAKE LOG LINE: board SN-9 passed"), want: flasher.ErrBadIdentity.Error()},
		{name: "serial CR", set: serial("SN-9\rOVERWRITE"), want: flasher.ErrBadIdentity.Error()},
		{name: "serial ANSI", set: serial("\x1b[31mRED\x1b[0m"), want: flasher.ErrBadIdentity.Error()},
		{name: "serial C1 CSI", set: serial("SN\u009b2J"), want: flasher.ErrBadIdentity.Error()},
		{name: "serial NUL", set: serial("SN\x00"), want: flasher.ErrBadIdentity.Error()},
		{name: "serial tab", set: serial("SN\t1"), want: flasher.ErrBadIdentity.Error()},
		{name: "serial space", set: serial("SN 1"), want: flasher.ErrBadIdentity.Error()},
		{name: "serial bidi", set: serial("SN\u202e1"), want: flasher.ErrBadIdentity.Error()},
		{name: "serial not UTF-8", set: serial("SN\xff\xfe"), want: "invalid UTF-8"},
		{name: "serial 10 KB", set: serial(strings.Repeat("A", 10_000)), want: flasher.ErrBadIdentity.Error()},
		{name: "serial empty", set: serial(""), want: flasher.ErrBadIdentity.Error()},
		{name: "serial not text", set: serial(12345), want: flasher.ErrProtocol.Error()},
		{name: "serial off pattern", set: serial("OTHER-7"), extra: "serial_pattern: '(HOSTILE|HONEST)-[0-9]+'\n", want: flasher.ErrBadIdentity.Error()},
		{name: "device ID IoT Hub refuses", set: on(hostile.Identity, identity(map[string]any{"model": "zt+1"})),
			extra: "device_id: '{{.Model}}-{{.Serial}}'\n", want: "invalid device ID"},
		{name: "model 10 KB", set: on(hostile.Identity, identity(map[string]any{"model": strings.Repeat("m", 10_000)})), want: flasher.ErrBadIdentity.Error()},
		{name: "firmware escape", set: on(hostile.Identity, identity(map[string]any{"fw": "1.0\x1b]0;pwned\x07"})), want: flasher.ErrBadIdentity.Error()},
		{name: "4000 caps", set: on(hostile.Identity, identity(map[string]any{"caps": make([]string, 4000)})), want: flasher.ErrBadIdentity.Error()},
		{name: "caps over the CBOR limit", set: on(hostile.Identity, identity(map[string]any{"caps": make([]string, 5000)})), want: flasher.ErrProtocol.Error()},
		// Answers that never come, or never end.
		{name: "silent", set: func(b *hostile.Board) { b.OnAny(hostile.Silent()) }, want: flasher.ErrTimeout.Error(), silent: true},
		{name: "endless line", set: on(hostile.Identity, hostile.Endless([]byte("\x06\x09AAAA"))), want: flasher.ErrTimeout.Error()},
		{name: "endless console", set: on(hostile.Identity, hostile.Endless([]byte("*** booting ***\r\n"))), want: flasher.ErrTimeout.Error()},
		{name: "slow drip", set: on(hostile.Identity, hostile.Drip(identity(nil), 20*time.Millisecond)), want: flasher.ErrTimeout.Error()},
		{name: "huge packet dripped", set: on(hostile.Identity, announceHuge(30*time.Millisecond)), want: flasher.ErrTimeout.Error()},
		{name: "stale flood", set: on(hostile.Identity, staleFlood()), want: flasher.ErrTimeout.Error()},
		// Garbage in the middle of the transfer.
		{name: "garbage mid-transfer", set: on(hostile.File, hostile.Raw([]byte("\x06\x09!!!not base64!!!\n\x04\x14????\n"))), want: flasher.ErrTimeout.Error()},
		{name: "framed garbage", set: on(hostile.File, framedGarbage(300)), want: flasher.ErrProtocol.Error()},
		{name: "offset 2^40", set: on(hostile.File, hostile.Answer(map[string]any{"off": int64(1) << 40})), want: flasher.ErrProtocol.Error()},
		{name: "offset negative", set: on(hostile.File, hostile.Answer(map[string]any{"off": -1})), want: flasher.ErrProtocol.Error()},
		{name: "offset stalls", set: on(hostile.File, hostile.Answer(map[string]any{"off": 0})), want: flasher.ErrProtocol.Error()},
		{name: "no offset", set: on(hostile.File, hostile.Answer(map[string]any{})), want: flasher.ErrProtocol.Error()},
		{name: "hash of 1 MB", set: on(hostile.Hash, hostile.Answer(map[string]any{"type": "sha256", "len": 1, "output": make([]byte, 60_000)})), want: flasher.ErrProtocol.Error()},
		{name: "hash lies", set: on(hostile.Hash, hostile.Answer(map[string]any{"type": "sha256", "len": 5, "output": make([]byte, 32)})), want: flasher.ErrVerify.Error()},
		{name: "commit refused", set: on(hostile.Commit, hostile.Answer(map[string]any{"err": map[string]any{"group": 64, "rc": 3}})), want: "stored config does not match the hash"},
		{name: "answer with the wrong op", set: func(b *hostile.Board) {
			b.On(hostile.Commit, func(_ <-chan struct{}, req flasher.Message, w io.Writer) {
				m := req
				m.Op = flasher.OpReadRsp
				msg, _ := flasher.EncodeMessage(m.Header, map[string]any{})
				w.Write(hostile.FrameRaw(msg))
			})
		}, want: flasher.ErrProtocol.Error()},
		{name: "deep nesting", set: on(hostile.Identity, func(_ <-chan struct{}, req flasher.Message, w io.Writer) {
			h := req.Header
			h.Op = h.Op.Response()
			body := append([]byte(strings.Repeat("\x81", 30_000)), 0)
			body = body[:min(len(body), 60_000)]
			h.Len = uint16(len(body))
			msg, _ := h.AppendBinary(nil)
			w.Write(hostile.FrameRaw(append(msg, body...)))
		}), want: flasher.ErrProtocol.Error()},
		// Honest but slow: only the board's deadline ends it.
		{name: "slow board", set: func(b *hostile.Board) {
			b.On(hostile.Params, hostile.Answer(map[string]any{"buf_size": 64, "buf_count": 1}))
			b.On(hostile.File, func(stop <-chan struct{}, req flasher.Message, w io.Writer) {
				select {
				case <-stop:
				case <-time.After(200 * time.Millisecond):
					var rq struct {
						Off  int    `cbor:"off"`
						Data []byte `cbor:"data"`
					}
					flasher.DecodeBody(req.Body, &rq)
					w.Write(hostile.Frame(req, map[string]any{"off": rq.Off + len(rq.Data)}))
				}
			})
		}, extra: "board_timeout: 2s\n", want: station.ErrBoardTimeout.Error()},
	}
}

// TestHostileBoards runs a station of three slots, a hostile board on the
// first, once for each lie: the hostile slot ends in a clear error within
// its deadline (or passes, where the station clamps the lie), the honest
// boards of the other slots pass, the process goes on, memory stays
// bounded, and nothing the board sent reaches an event or a record
// unescaped.
func TestHostileBoards(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a station per hostile board")
	}
	var peak atomic.Uint64
	stopSampling := sampleHeap(&peak)
	defer stopSampling()
	var mu sync.Mutex
	var longest time.Duration
	var longestName string
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			d := runHostile(t, tc)
			mu.Lock()
			if d > longest {
				longest, longestName = d, tc.name
			}
			mu.Unlock()
		})
	}
	t.Logf("%d hostile boards; longest run %v (%s); peak heap %.1f MB", len(hostileCases()), longest.Round(time.Millisecond),
		longestName, float64(peak.Load())/(1<<20))
	if p := peak.Load(); p > 256<<20 {
		t.Errorf("peak heap %d MB: hostile boards made the station hold more than 256 MB", p>>20)
	}
}

// runHostile runs one case and returns how long the hostile slot took.
func runHostile(t *testing.T, tc hostileCase) time.Duration {
	ctx := context.Background()
	l := newLine(t)
	l.extra = "timeout: 300ms\nboard_timeout: 10s\n"
	if tc.extra != "" {
		l.extra = strings.Replace(l.extra, "board_timeout: 10s\n", "", 1) + tc.extra
		if !strings.Contains(tc.extra, "board_timeout") {
			l.extra += "board_timeout: 10s\n"
		}
	}
	hb, err := hostile.Start("HOSTILE-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hb.Close() })
	tc.set(hb)
	good := []*board.Board{startBoard(t, "HONEST-1", board.TPMNone), startBoard(t, "HONEST-2", board.TPMNone)}
	st := l.stationAt(t, station.ModeSymmetricKey, hb.Path(), good[0].Path(), good[1].Path())

	start := time.Now()
	sum, err := st.Run(ctx, station.RunOptions{Once: true})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if !good[0].Provisioned() || !good[1].Provisioned() {
		t.Errorf("the honest boards beside the hostile one were not provisioned: %+v", sum)
	}
	var last station.Event
	l.mu.Lock()
	events := append([]station.Event(nil), l.events...)
	l.mu.Unlock()
	for _, e := range events {
		if e.Slot == "slot-1" && (e.Result == station.Passed || e.Result == station.Failed) {
			last = e
		}
		for _, f := range []string{e.Serial, e.Message, e.Error, e.RegistrationID} {
			if !textsafe.Printable(f) {
				t.Errorf("event %+v carries unescaped board text %q", e, f)
			}
		}
	}
	if tc.pass {
		if sum.Passed != 3 || last.Result != station.Passed {
			t.Errorf("Run = %+v; the hostile slot ended %+v; want all three passed", sum, last)
		}
	} else if tc.silent {
		if sum.Passed != 2 || sum.Failed != 0 || len(sum.Empty) != 1 || sum.Empty[0].Reason != station.EmptySilent ||
			!strings.Contains(sum.Empty[0].Error, tc.want) {
			t.Errorf("Run = %+v; want the silent slot reported empty (silent) and the others passed", sum)
		}
	} else {
		if sum.Passed != 2 || sum.Failed != 1 || last.Result != station.Failed {
			t.Fatalf("Run = %+v; the hostile slot ended %+v; want it failed and the others passed", sum, last)
		}
		if last.Message == "" || last.Error == "" || last.Step == "" {
			t.Errorf("the failure %+v lacks the operator's message, the cause or the step", last)
		}
		if !strings.Contains(last.Error, tc.want) {
			t.Errorf("the failure's cause %q does not say %q", last.Error, tc.want)
		}
		if hb.Committed() {
			t.Errorf("the hostile board was committed though its run failed")
		}
	}
	if limit := 10*time.Second + 5*time.Second; took > limit {
		t.Errorf("the run took %v, past the board's deadline", took)
	}
	// Whatever is recorded has a serial that keeps the rule.
	recs, err := l.store.List(ctx, records.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := flasher.CheckSerial(r.Serial); err != nil {
			t.Errorf("a record was made for a serial that breaks the rule: %v", err)
		}
		if r.Serial == "HOSTILE-1" && r.Result == records.ResultPassed && !tc.pass {
			t.Errorf("the hostile board's record says passed")
		}
	}
	return took
}

// sampleHeap records the highest heap in use until stopped.
func sampleHeap(peak *atomic.Uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// A board left in progress by a station that stopped mid-run is named in
// a warning when the station starts again, and provisioned again (its
// record passed once more) when it is back on a fixture.
func TestInProgressProvisionedAgain(t *testing.T) {
	ctx := context.Background()
	l := newLine(t)
	var logs strings.Builder
	var mu sync.Mutex
	l.log = slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	b := startBoard(t, "ZT-AGAIN", board.TPMNone)
	st := l.station(t, station.ModeSymmetricKey, b)
	if sum, err := st.Run(ctx, station.RunOptions{Once: true}); err != nil || sum.Passed != 1 {
		t.Fatalf("first run = %+v, %v", sum, err)
	}
	// The station stops while provisioning it again.
	if err := l.store.Begin(ctx, &records.Record{Serial: "ZT-AGAIN", Attestation: records.AttestationSymmetricKey}); err != nil {
		t.Fatal(err)
	}
	st = l.station(t, station.ModeSymmetricKey, b)
	if sum, err := st.Run(ctx, station.RunOptions{Once: true}); err != nil || sum.Passed != 1 {
		t.Fatalf("run after the stop = %+v, %v", sum, err)
	}
	mu.Lock()
	text := logs.String()
	mu.Unlock()
	if !strings.Contains(text, "1 boards were being provisioned") || !strings.Contains(text, "ZT-AGAIN") {
		t.Errorf("no warning naming the board in progress:\n%s", text)
	}
	r, err := l.store.Get(ctx, "ZT-AGAIN")
	if err != nil || r.Result != records.ResultPassed {
		t.Errorf("record after the board was provisioned again = %+v, %v; want passed", r, err)
	}
	audit, _ := l.store.Audit(ctx, "ZT-AGAIN")
	interrupted := false
	for _, a := range audit {
		interrupted = interrupted || a.Event == records.EventBegun && strings.Contains(a.Detail, "did not finish")
	}
	if !interrupted {
		t.Errorf("the audit does not say the earlier run was interrupted: %+v", audit)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A fault in the station's own code on one board (here a panic in the
// events consumer as the board's write begins) fails that board alone,
// recorded with the operator's words; the other slots pass and the
// process goes on.
func TestPanicFailsOneBoard(t *testing.T) {
	ctx := context.Background()
	l := newLine(t)
	bad := startBoard(t, "ZT-PANIC", board.TPMNone)
	good := startBoard(t, "ZT-CALM", board.TPMNone)
	// The line's events go through a consumer that panics once.
	var once sync.Once
	l.onEvent = func(e station.Event) {
		if e.Serial == "ZT-PANIC" && e.Step == station.StepWrite && e.Result == station.Running {
			once.Do(func() { panic("consumer bug") })
		}
		l.event(e)
	}
	st := l.stationAt(t, station.ModeSymmetricKey, bad.Path(), good.Path())
	sum, err := st.Run(ctx, station.RunOptions{Once: true})
	if err != nil || sum.Passed != 1 || sum.Failed != 1 {
		t.Fatalf("Run = %+v, %v; want one passed, one failed", sum, err)
	}
	r, err := l.store.Get(ctx, "ZT-PANIC")
	if err != nil || r.Result != records.ResultFailed || !strings.Contains(r.Message, "internal error") {
		t.Errorf("the board hit by the fault is recorded %+v, %v; want failed with an internal error", r, err)
	}
	if r, err := l.store.Get(ctx, "ZT-CALM"); err != nil || r.Result != records.ResultPassed {
		t.Errorf("the other board is recorded %+v, %v; want passed", r, err)
	}
	if bad.Provisioned() {
		t.Errorf("the board hit by the fault was committed")
	}
}

// A fault in the station's own code on a slot outside a board's run (a
// panic as the slot reports a board set aside) restarts that slot, with
// an event saying so; the process goes on and the slot takes boards
// again.
func TestPanicRestartsSlot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l := newLine(t)
	b := startBoard(t, "ZT-SKIPPED", board.TPMNone)
	b.SetFaults(board.Faults{CorruptWrite: 1})
	l.onEvent = func(e station.Event) {
		l.event(e)
		if e.Result == station.Skipped {
			panic("consumer bug")
		}
	}
	st := l.stationAt(t, station.ModeSymmetricKey, b.Path())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := st.Run(ctx, station.RunOptions{Poll: 20 * time.Millisecond}); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitEvent := func(what string, match func(e station.Event) bool) station.Event {
		t.Helper()
		for ctx.Err() == nil {
			l.mu.Lock()
			for _, e := range l.events {
				if match(e) {
					l.mu.Unlock()
					return e
				}
			}
			l.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatalf("no %s event; events: %+v", what, l.events)
		return station.Event{}
	}
	waitEvent("failure", func(e station.Event) bool { return e.Result == station.Failed && e.Serial == "ZT-SKIPPED" })
	for st.Skip("slot-1") != nil && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	e := waitEvent("internal error", func(e station.Event) bool { return strings.Contains(e.Error, "internal error") })
	if e.Slot != "slot-1" || e.Result != station.Failed || e.Message == "" {
		t.Errorf("the slot's fault is reported as %+v", e)
	}
	// Started again, the slot provisions the board on it.
	waitEvent("pass", func(e station.Event) bool { return e.Result == station.Passed && e.Serial == "ZT-SKIPPED" })
	cancel()
	<-done
}
