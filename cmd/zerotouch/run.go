package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"zerotouch/ca"
	"zerotouch/enroll"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/internal/secret"
	"zerotouch/labels"
	"zerotouch/station"
	"zerotouch/station/records"
	"zerotouch/tpm"
)

// envGroupKey holds the symmetric-key enrollment group's primary key when
// the configuration names no file.
const envGroupKey = "ZEROTOUCH_GROUP_KEY"

type runFlags struct {
	config    string
	once      bool
	count     int
	operator  string
	workOrder string
	// supervisorFile holds the supervisor's password (else the
	// environment's envSupervisorPassword): boards refused as possible
	// clones may then run again.
	supervisorFile string
	// scan is where a stock line's scanned serial numbers come from (a
	// file, or - for standard input, which is stdin).
	scan  string
	stdin io.Reader
}

// envSupervisorPassword holds the supervisor's password for a headless
// run (see run --help).
const envSupervisorPassword = "ZEROTOUCH_SUPERVISOR_PASSWORD"

func runCmd(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --config station.yaml",
		Short: "Run the station headless: provision the boards on the fixture ports",
		Long: `Run the station without a window, for line automation: every slot of the
configuration in parallel; a board that appears on a slot is provisioned
(identity, configuration written and verified, committed, recorded and
queued for enrollment), and the queue is uploaded to DPS in the background
when a DPS connection string is configured.

Each event (slot, board, step, progress, result, the operator's message) is
a JSON line on stdout; a summary goes to stderr.

--once provisions the boards present now, one run per slot, uploads what
they queued, and exits. --count N stops after N boards. The upload after
the last board takes at most 15 s: what DPS has not taken by then stays
queued in the records for zerotouch upload, and an error no retry can mend
(the DPS server's certificate not trusted, its host name unknown, its key
or policy refused) ends it at once.

Exit status: 0 when every board passed and no enrollment is left pending
(or no DPS is configured: dps.upload: false, or no connection string, so
enrollments are only queued); 1 when a board failed (its event says why);
2 when the configuration or the command line is wrong, before any board is
touched; 3 when the CA cannot be used (no CA in ca.dir, a wrong or missing
CA password, a step-ca that cannot be trusted or reached), or the line's
DPS enrollment group is missing (and not to be created) or does not take
the line's boards, before any board is touched; 4 when every board passed but enrollments are still pending
(DPS did not take them, or cannot as set up: the message says which, and
how many): run zerotouch upload --records RECORDS later; 5 when no board
ran at all: every slot was empty (no-port: its port missing or mistyped;
silent: nothing answering on it; port-error: a port rule matching several
ports: the summary names each slot and why), or the run was stopped
before a board came. A board that answers, even with nonsense, is a board
that failed (1).

With --json the summary on stderr is a JSON line too (msg "run ended").

A board refused as a possible clone (its TPM's EK recorded under another
serial number) is refused again, untouched, when it is put back on a
fixture, unless the supervisor's password is given
(--supervisor-password-file, or $` + envSupervisorPassword + `), checked against
gui.supervisor_password_hash.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.stdin = cmd.InOrStdin()
			return runStation(cmd.Context(), g, &f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.config, "config", "station.yaml", "the station's configuration (YAML)")
	fs.BoolVar(&f.once, "once", false, "provision the boards present, then exit")
	fs.IntVar(&f.count, "count", 0, "stop after this many boards (0: no limit)")
	fs.StringVar(&f.operator, "operator", "", "the operator's name, put on every record")
	fs.StringVar(&f.workOrder, "work-order", "", "the work order, put on every record")
	fs.StringVar(&f.scan, "scan", "", "a stock line whose serial numbers are scanned (board.serial.source: scan): read them from this file, or - for standard input, one a line, as SLOT SERIAL or SERIAL (the slots in turn)")
	fs.StringVar(&f.supervisorFile, "supervisor-password-file", "", "a file holding the supervisor's password (else $"+envSupervisorPassword+"): boards refused as possible clones may run again")
	return cmd
}

// scans opens --scan: nil when the line takes no scans. A line that
// takes scans needs it, and one that takes none refuses it.
func (f *runFlags) scans(cfg *station.Config) (io.ReadCloser, error) {
	scanned := cfg.Board.Profile == station.ProfileStock && cfg.Board.Serial.Source == station.SerialScan
	switch {
	case f.scan == "" && scanned:
		return nil, usageError{errors.New("the line's serial numbers are scanned (board.serial.source: scan): give --scan FILE, or --scan - to read them from standard input")}
	case f.scan == "":
		return nil, nil
	case !scanned:
		return nil, usageError{fmt.Errorf("--scan %s: the line takes no scanned serial numbers (board.serial.source is not scan)", f.scan)}
	case f.scan == "-":
		return io.NopCloser(f.stdin), nil
	}
	r, err := os.Open(f.scan)
	if err != nil {
		return nil, usageError{fmt.Errorf("--scan: %w", err)}
	}
	return r, nil
}

// stationSetup is what a station needs, opened from its configuration.
type stationSetup struct {
	cfg      *station.Config
	store    records.DB
	issuer   ca.Issuer
	uploader *enroll.Uploader
	dps      dpsSettings       // where the DPS settings are, for messages
	bg       *backgroundUpload // the uploader's loop, once started; before Run
}

func (s *stationSetup) Close() {
	if s.issuer != nil {
		s.issuer.Close()
	}
	if s.store != nil {
		s.store.Close()
	}
}

// openStation loads the configuration and opens everything it names, so
// that a mistake stops the station before the first board.
func openStation(ctx context.Context, g *globals, file string, events func(station.Event)) (*station.Station, *stationSetup, error) {
	return openStationAs(ctx, g, file, events, false)
}

// openStationAs is openStation; headless words the operator's messages
// for a station with no window.
func openStationAs(ctx context.Context, g *globals, file string, events func(station.Event), headless bool) (*station.Station, *stationSetup, error) {
	cfg, err := station.LoadConfig(file)
	if err != nil {
		return nil, nil, usageError{err}
	}
	set := &stationSetup{cfg: cfg}
	deps := station.Deps{Events: events, Logger: g.log, Headless: headless}
	fail := func(err error) (*station.Station, *stationSetup, error) {
		set.Close()
		return nil, nil, err
	}

	if cfg.Template.File != "" {
		deps.Template, err = fwtemplates.Load(cfg.Template.File)
	} else {
		deps.Template, err = fwtemplates.Builtin(cfg.Template.Name)
	}
	if err != nil {
		return fail(usageError{fmt.Errorf("%s: template: %w", file, err)})
	}
	if deps.Printer, err = labels.NewPrinter(cfg.Labels); err != nil {
		return fail(setupError{fmt.Errorf("%s: labels: %w", file, err)})
	}
	// Before anything is opened or created.
	if err := station.CheckTemplate(cfg, deps.Template); err != nil {
		return fail(usageError{fmt.Errorf("%s: %w", file, err)})
	}

	switch cfg.Attestation {
	case station.ModeX509TPM, station.ModeX509Keygen, station.ModeX509StationKey:
		f := caFlags{dir: cfg.CA.Dir, passwordFile: cfg.CA.PasswordFile, url: cfg.CA.URL, fingerprint: cfg.CA.Fingerprint,
			provisioner: cfg.CA.Provisioner, validity: cfg.CA.Validity, pwSetting: "ca.password_file"}
		if set.issuer, err = f.open(ctx, g); err != nil {
			return fail(fmt.Errorf("%s: ca: %w", file, err))
		}
		deps.Issuer = set.issuer
	case station.ModeSymmetricKey:
		k, err := secret.Read(g.log, "symmetric_key.key_file", cfg.Group.KeyFile, envGroupKey)
		if err != nil {
			return fail(usageError{fmt.Errorf("%s: the enrollment group's key: %w", file, err)})
		}
		if deps.GroupKey, err = base64.StdEncoding.DecodeString(string(k)); err != nil || len(deps.GroupKey) == 0 {
			return fail(usageError{fmt.Errorf("%s: the enrollment group's key is not base64 (copy the group's primary key from DPS)", file)})
		}
	}
	if len(cfg.TPM.EKRoots) > 0 {
		if deps.Vendors, err = tpm.LoadVendors(cfg.TPM.EKRoots...); err != nil {
			return fail(usageError{fmt.Errorf("%s: tpm.ek_roots: %w", file, err)})
		}
	}
	if cfg.Firmware != nil {
		if deps.Firmware, err = os.ReadFile(cfg.Firmware.Image); err != nil {
			return fail(usageError{fmt.Errorf("%s: firmware.image: %w", file, err)})
		}
	}
	if deps.IssuerRoots, err = station.ReadIssuerRoots(cfg); err != nil {
		return fail(usageError{fmt.Errorf("%s: %w", file, err)})
	}

	if records.IsPostgresURL(cfg.Records) {
		// A factory database: the line keeps running into a local
		// buffer beside station.yaml (station.buffer.db) when it does
		// not answer.
		buf, err := records.OpenBuffered(ctx, cfg.Records, records.BufferBeside(file), records.BufferOptions{Logger: g.log})
		if err != nil {
			return fail(fmt.Errorf("%s: records: %w", file, storeError(err, true)))
		}
		set.store, deps.Offline = buf, buf.OfflineText
	} else if set.store, err = openStore(ctx, cfg.Records); err != nil {
		return fail(fmt.Errorf("%s: records: %w", file, err))
	}
	deps.Store = set.store

	var dpsClient *enroll.Client // nil: no upload
	if up := cfg.DPS.Upload; up == nil || *up {
		dcfg, err := dpsConfig(g, "dps.connection_string_file", cfg.DPS.ConnectionStringFile, cfg.DPS.CAFile)
		switch {
		case errors.Is(err, secret.ErrMissing) && up == nil:
			g.log.Warn("no DPS connection string: enrollments are recorded and queued, not uploaded; run zerotouch upload later")
		case err != nil:
			return fail(usageError{fmt.Errorf("%s: dps: %w", file, err)})
		default:
			client, err := enroll.NewClient(dcfg)
			if err != nil {
				return fail(usageError{fmt.Errorf("%s: dps: %w", file, err)})
			}
			set.dps = dpsSettings{caSetting: "dps.ca_file", connSetting: "dps.connection_string_file",
				connFile: cfg.DPS.ConnectionStringFile, host: client.HostName()}
			dpsClient = client
			var pacer enroll.Pacer // nil: this station's own pace
			if buf, ok := set.store.(*records.Buffered); ok && buf.Factory() != nil {
				// One DPS quota for the factory's uploaders.
				pacer, err = factoryPacer(ctx, g, buf.Factory(), client.HostName(), float64(cfg.DPS.Quota)*cfg.DPS.Share)
				if errors.Is(err, records.ErrOffline) || records.Unreachable(err) {
					g.log.Warn("the factory database is offline: this station's uploads are paced on their own until it restarts", "err", err)
					pacer, err = nil, nil
				}
				if err != nil {
					return fail(fmt.Errorf("%s: records: %w", file, err))
				}
			}
			set.uploader, err = enroll.NewUploader(enroll.UploaderConfig{Client: client, Queue: set.store,
				Quota: cfg.DPS.Quota, Share: cfg.DPS.Share, Pacer: pacer, Logger: g.log})
			if err != nil {
				return fail(usageError{fmt.Errorf("%s: dps: %w", file, err)})
			}
		}
	}

	// The line's enrollment group, when it enrolls by group: in DPS
	// before the first board.
	if err := checkLineGroup(ctx, g, file, cfg, &deps, dpsClient); err != nil {
		return fail(err)
	}

	if cfg.VerifyRegistration.Enabled {
		deps.Enrolled = func(ctx context.Context, serial string) error {
			return waitEnrolled(ctx, set.store, set.bg, serial)
		}
	}
	st, err := station.New(cfg, deps)
	if err != nil {
		return fail(usageError{fmt.Errorf("%s: %w", file, err)})
	}
	go st.WatchOffline(ctx) // "factory database offline: N boards buffered" while it lasts
	return st, set, nil
}

// openStore opens for writing the records target names: a SQLite file, or
// the factory's PostgreSQL by a postgres:// URL (records.OpenURL).
func openStore(ctx context.Context, target string) (records.DB, error) {
	s, err := records.OpenURL(ctx, target)
	if err != nil {
		return nil, storeError(err, records.IsPostgresURL(target))
	}
	return s, nil
}

// storeError types a records database that cannot be opened: a URL that
// cannot be used as written (a password in it, a malformed one) or a file
// that is no records database is a mistake in the setting (exit 2); a
// factory database that cannot be reached, refuses the station's role or
// its rights, or has a newer schema is a set-up that cannot work until
// mended (exit 3).
func storeError(err error, postgres bool) error {
	switch {
	case errors.Is(err, records.ErrInvalid), errors.Is(err, records.ErrNotRecords):
		return usageError{err}
	case postgres, errors.Is(err, records.ErrNewerSchema):
		return setupError{err}
	}
	return err
}

// waitEnrolled nudges the background upload until the board's enrollment
// is in DPS (station.Deps.Enrolled).
func waitEnrolled(ctx context.Context, store records.DB, bg *backgroundUpload, serial string) error {
	if bg == nil {
		return errors.New("no DPS connection string: the board's enrollment cannot reach DPS (dps.connection_string_file)")
	}
	for {
		bg.Now()
		r, err := store.Get(ctx, serial)
		if err != nil {
			return err
		}
		switch r.UploadState {
		case enroll.StateUploaded:
			return nil
		case enroll.StateFailed, enroll.StateConflict:
			return fmt.Errorf("enrollment upload %s: %s", r.UploadState, r.UploadError)
		}
		if err := bg.LastError(); enroll.Permanent(err) {
			// Nudging again would only meet the same refusal.
			return fmt.Errorf("enrollment still %s: %w", r.UploadState, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("enrollment still %s: %w", r.UploadState, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// backgroundUpload drains the queue whenever nudged, and every 30 s,
// until halted. A nil *backgroundUpload (no DPS configured) does nothing.
type backgroundUpload struct {
	u      *enroll.Uploader
	dps    dpsSettings
	log    *slog.Logger
	kick   chan struct{}
	stop   chan struct{}      // closed to end the loop; a drain under way finishes first, within halt's bound
	cancel context.CancelFunc // ends a drain under way
	done   chan struct{}      // closed when the loop has ended
	halted sync.Once
	mu     sync.Mutex
	last   enroll.Stats
	err    error
}

// Bounds of the upload when a station stops: a drain under way may finish
// within haltGrace (DPS answers a bulk request in well under a second; one
// still going is waiting out an outage), then the last one sends each
// batch at most lastAttempts times, all within uploadGrace of the stop.
const (
	haltGrace    = 2 * time.Second
	uploadGrace  = 15 * time.Second
	lastAttempts = 5
)

// startUpload starts u's background loop; nil u gives nil.
func startUpload(ctx context.Context, u *enroll.Uploader, dps dpsSettings, log *slog.Logger) *backgroundUpload {
	if u == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	b := &backgroundUpload{u: u, dps: dps, log: log, kick: make(chan struct{}, 1), stop: make(chan struct{}),
		cancel: cancel, done: make(chan struct{})}
	go b.loop(ctx)
	return b
}

func (b *backgroundUpload) loop(ctx context.Context) {
	defer close(b.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.stop:
			return
		case <-b.kick:
		case <-time.After(30 * time.Second):
		}
		b.drain(ctx, enroll.RunOptions{})
	}
}

// halt ends the loop. An upload under way may finish until by (cutting
// it short leaves what it had in flight pending, for the next drain to
// re-check); after that it is cut short. halt may be called more than
// once.
func (b *backgroundUpload) halt(by time.Time) {
	if b == nil {
		return
	}
	b.halted.Do(func() { close(b.stop) })
	t := time.NewTimer(time.Until(by))
	defer t.Stop()
	select {
	case <-b.done:
	case <-t.C:
		b.log.Warn("upload: stopping the upload under way; what it had in flight stays queued and is checked on the next upload")
		b.cancel()
		<-b.done
	}
	b.cancel()
}

// finish halts the loop and makes one last drain, bounded by
// uploadGrace and lastAttempts, so that the enrollments of the boards just
// provisioned go up if DPS takes them now. It returns the last drain's
// error, nil when nothing is left pending.
func (b *backgroundUpload) finish(ctx context.Context) error {
	if b == nil {
		return nil
	}
	by := time.Now().Add(uploadGrace)
	b.halt(time.Now().Add(haltGrace))
	if err := b.LastError(); enroll.Permanent(err) || ctx.Err() != nil {
		return err // a last drain would meet the same refusal
	}
	if time.Until(by) < time.Second {
		return b.LastError()
	}
	ctx, cancel := context.WithDeadline(ctx, by)
	defer cancel()
	b.drain(ctx, enroll.RunOptions{Attempts: lastAttempts})
	return b.LastError()
}

func (b *backgroundUpload) drain(ctx context.Context, o enroll.RunOptions) {
	st, err := b.u.RunWith(ctx, o)
	if advice := b.dps.advice(err); advice != "" {
		err = fmt.Errorf("%s: %w", advice, err)
	}
	b.mu.Lock()
	b.last, b.err = st, err
	b.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		b.log.Warn("upload: enrollments left queued", "err", err)
	}
}

// Event asks for a drain when a board has passed: its enrollment is
// queued. It is chained onto the station's events.
func (b *backgroundUpload) Event(e station.Event) {
	if e.Result == station.Passed {
		b.Now()
	}
}

// Now asks for a drain at once, without waiting for it (ui.Uploads).
func (b *backgroundUpload) Now() {
	if b == nil {
		return
	}
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// LastError is the last drain's error (ui.Uploads). One no retry can
// mend (enroll.Permanent) leads with what to mend.
func (b *backgroundUpload) LastError() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// pending says how many enrollments the last drain left pending, why,
// and what to do.
func (b *backgroundUpload) pending(n int, records string) error {
	b.mu.Lock()
	permanent := enroll.Permanent(b.err)
	b.mu.Unlock()
	if permanent {
		return pendingError{fmt.Errorf("%d enrollments still pending, for zerotouch upload --records %s once this is mended: %s",
			n, records, b.pendingCause())}
	}
	return pendingError{fmt.Errorf("%d enrollments still pending, for zerotouch upload --records %s later: %s", n, records, b.pendingCause())}
}

// pendingCause says why the last drain left enrollments pending.
func (b *backgroundUpload) pendingCause() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.err == nil:
		return "they were queued after the last upload"
	case enroll.Permanent(b.err):
		return b.err.Error()
	case errors.Is(b.err, context.DeadlineExceeded) || errors.Is(b.err, context.Canceled):
		if b.last.LastError != "" {
			return fmt.Sprintf("DPS did not take them within %v, last: %s", uploadGrace, b.last.LastError)
		}
		return fmt.Sprintf("DPS did not take them within %v", uploadGrace)
	}
	return fmt.Sprintf("DPS did not take them: %v", b.err)
}

// exitNoBoard is run's exit status when no board ran at all: every slot
// was empty (no port, no answer, or a board it cannot provision), or the
// run was stopped before a board came.
const exitNoBoard = 5

// noBoardError is a run in which no board ran.
type noBoardError struct{ error }

func (e noBoardError) Unwrap() error { return e.error }

// printSummary prints the run's summary on stderr: a line of text, with
// each empty slot and why, or with --json one JSON line.
func printSummary(g *globals, sum station.Summary, counts map[enroll.State]int, pending int, recordsPath string, store records.DB) {
	// Boards kept in the station's buffer while the factory database
	// does not answer: forwarded when it does, at this station's next
	// start if not before.
	buffered, bufferPath := 0, ""
	if b, ok := store.(*records.Buffered); ok {
		if n, _, off := b.Offline(); off {
			buffered, bufferPath = n, b.Buffer().Path()
		}
	}
	if g.json {
		attrs := []any{"passed", sum.Passed, "failed", sum.Failed, "seconds", sum.Elapsed,
			"emptySlots", sum.Empty, "uploaded", counts[enroll.StateUploaded], "pending", pending,
			"held", counts[records.StateHeld], "uploadFailed", counts[enroll.StateFailed],
			"conflict", counts[enroll.StateConflict], "records", recordsPath}
		if bufferPath != "" {
			attrs = append(attrs, "buffered", buffered, "buffer", bufferPath)
		}
		g.log.Info("run ended", attrs...)
		return
	}
	fmt.Fprintf(g.stderr, "%d boards passed, %d failed in %.1f s\n", sum.Passed, sum.Failed, sum.Elapsed)
	for _, e := range sum.Empty {
		fmt.Fprintf(g.stderr, "empty slot %s (%s): %s: %s\n", e.Slot, e.Port, e.Reason, e.Message)
	}
	fmt.Fprintf(g.stderr, "enrollments: %d uploaded, %d pending, %d held, %d failed, %d in conflict; records in %s\n",
		counts[enroll.StateUploaded], pending, counts[records.StateHeld], counts[enroll.StateFailed], counts[enroll.StateConflict], recordsPath)
	if bufferPath != "" {
		fmt.Fprintf(g.stderr, "factory database offline: %d boards kept in %s, forwarded to it when it answers (at this station's next start, if not before)\n",
			buffered, bufferPath)
	}
}

// emptyText names each empty slot and why, for an error.
func emptyText(empty []station.EmptySlot) string {
	if len(empty) == 0 {
		return "no board came before the run stopped"
	}
	parts := make([]string, len(empty))
	for i, e := range empty {
		parts[i] = fmt.Sprintf("slot %s (%s) %s", e.Slot, e.Port, e.Reason)
	}
	return strings.Join(parts, "; ")
}

func runStation(ctx context.Context, g *globals, f *runFlags) error {
	if f.count < 0 {
		return usageError{fmt.Errorf("--count %d: want 0 (no limit) or more", f.count)}
	}
	enc := json.NewEncoder(g.stdout)
	var bg *backgroundUpload
	events := func(e station.Event) {
		enc.Encode(e) // g.stdout is safe for concurrent use
		bg.Event(e)
	}
	st, set, err := openStationAs(ctx, g, f.config, events, true)
	if err != nil {
		return err
	}
	defer set.Close()
	if f.supervisorFile != "" || os.Getenv(envSupervisorPassword) != "" {
		pw, err := secret.Read(g.log, "--supervisor-password-file", f.supervisorFile, envSupervisorPassword)
		if err == nil {
			err = st.Unlock(pw)
		}
		if err != nil {
			return usageError{fmt.Errorf("supervisor: %w", err)}
		}
		g.log.Warn("run with the supervisor's password: boards refused as possible clones run again when put on a fixture")
	}
	scans, err := f.scans(set.cfg)
	if err != nil {
		return err
	}
	if scans != nil {
		defer scans.Close()
		go func() {
			if err := st.ReadScans(ctx, scans); err != nil {
				g.log.Warn("reading the scanned serial numbers stopped", "from", f.scan, "err", err)
			}
		}()
	}
	st.SetOperator(f.operator, f.workOrder)
	bg = startUpload(ctx, set.uploader, set.dps, g.log)
	set.bg = bg

	sum, runErr := st.Run(ctx, station.RunOptions{Once: f.once, Count: f.count})

	// One last drain, so that --once leaves nothing queued that DPS
	// takes now; bounded, so that an outage does not hold the line.
	upErr := bg.finish(ctx)
	counts, _ := set.store.Counts(context.WithoutCancel(ctx))
	pending := counts[enroll.StatePending] + counts[enroll.StateInFlight]
	printSummary(g, sum, counts, pending, set.cfg.Records, set.store)
	switch {
	case runErr != nil:
		return runErr
	case sum.Passed == 0 && sum.Failed == 0:
		return noBoardError{fmt.Errorf("no board was provisioned: %s", emptyText(sum.Empty))}
	case sum.Failed > 0:
		return fmt.Errorf("%d of %d boards failed: see their events", sum.Failed, sum.Passed+sum.Failed)
	case bg != nil && pending > 0:
		// With no DPS configured, queueing is all that was asked.
		return bg.pending(pending, set.cfg.Records)
	case upErr != nil:
		g.log.Warn("upload incomplete; the enrollments stay queued for zerotouch upload", "err", upErr)
	}
	return nil
}
