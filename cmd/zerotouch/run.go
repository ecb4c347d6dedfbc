package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"zerotouch/ca"
	"zerotouch/enroll"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/internal/secret"
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
}

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
they queued, and exits. --count N stops after N boards.

Exit status: 0 when every board passed; 1 when a board failed (its event
says why); 2 when the configuration or the command line is wrong, before
any board is touched.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStation(cmd.Context(), g, &f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.config, "config", "station.yaml", "the station's configuration (YAML)")
	fs.BoolVar(&f.once, "once", false, "provision the boards present, then exit")
	fs.IntVar(&f.count, "count", 0, "stop after this many boards (0: no limit)")
	fs.StringVar(&f.operator, "operator", "", "the operator's name, put on every record")
	fs.StringVar(&f.workOrder, "work-order", "", "the work order, put on every record")
	return cmd
}

// stationSetup is what a station needs, opened from its configuration.
type stationSetup struct {
	cfg      *station.Config
	store    *records.Store
	issuer   ca.Issuer
	uploader *enroll.Uploader
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
	cfg, err := station.LoadConfig(file)
	if err != nil {
		return nil, nil, usageError{err}
	}
	set := &stationSetup{cfg: cfg}
	deps := station.Deps{Events: events, Logger: g.log}
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
	// Before anything is opened or created.
	if err := station.CheckTemplate(cfg, deps.Template); err != nil {
		return fail(usageError{fmt.Errorf("%s: %w", file, err)})
	}

	switch cfg.Attestation {
	case station.ModeX509TPM, station.ModeX509Keygen:
		f := caFlags{dir: cfg.CA.Dir, passwordFile: cfg.CA.PasswordFile, url: cfg.CA.URL, fingerprint: cfg.CA.Fingerprint,
			provisioner: cfg.CA.Provisioner, validity: cfg.CA.Validity, pwSetting: "ca.password_file"}
		if f.provisioner == "" {
			f.provisioner = "zerotouch"
		}
		if set.issuer, err = f.open(ctx, g); err != nil {
			return fail(fmt.Errorf("%s: ca: %w", file, err))
		}
		deps.Issuer = set.issuer
	case station.ModeSymmetricKey:
		k, err := secret.Read("symmetric_key.key_file", cfg.Group.KeyFile, envGroupKey)
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

	if set.store, err = records.Open(ctx, cfg.Records); err != nil {
		return fail(fmt.Errorf("%s: records: %w", file, err))
	}
	deps.Store = set.store

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
			set.uploader, err = enroll.NewUploader(enroll.UploaderConfig{Client: client, Queue: set.store,
				Quota: cfg.DPS.Quota, Share: cfg.DPS.Share, Logger: g.log})
			if err != nil {
				return fail(usageError{fmt.Errorf("%s: dps: %w", file, err)})
			}
		}
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
	return st, set, nil
}

// waitEnrolled nudges the background upload until the board's enrollment
// is in DPS (station.Deps.Enrolled).
func waitEnrolled(ctx context.Context, store *records.Store, bg *backgroundUpload, serial string) error {
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
	u    *enroll.Uploader
	log  *slog.Logger
	kick chan struct{}
	stop chan struct{} // closed to end the loop; a drain under way finishes first
	done chan struct{} // closed when the loop has ended
	mu   sync.Mutex
	last enroll.Stats
	err  error
}

// startUpload starts u's background loop; nil u gives nil.
func startUpload(ctx context.Context, u *enroll.Uploader, log *slog.Logger) *backgroundUpload {
	if u == nil {
		return nil
	}
	b := &backgroundUpload{u: u, log: log, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
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
		b.drain(ctx)
	}
}

// halt ends the loop, letting an upload under way finish (cancelling it
// could leave a batch DPS took marked pending).
func (b *backgroundUpload) halt() {
	if b == nil {
		return
	}
	close(b.stop)
	<-b.done
}

func (b *backgroundUpload) drain(ctx context.Context) {
	st, err := b.u.Run(ctx)
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

// LastError is the last drain's error (ui.Uploads).
func (b *backgroundUpload) LastError() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
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
	st, set, err := openStation(ctx, g, f.config, events)
	if err != nil {
		return err
	}
	defer set.Close()
	st.SetOperator(f.operator, f.workOrder)
	bg = startUpload(ctx, set.uploader, g.log)
	set.bg = bg

	sum, runErr := st.Run(ctx, station.RunOptions{Once: f.once, Count: f.count})

	bg.halt()
	if bg != nil && ctx.Err() == nil {
		// One last drain, so that --once leaves nothing queued.
		bg.drain(ctx)
	}
	upErr := bg.LastError()
	counts, _ := set.store.Counts(context.WithoutCancel(ctx))
	fmt.Fprintf(g.stderr, "%d boards passed, %d failed in %.1f s", sum.Passed, sum.Failed, sum.Elapsed)
	if len(sum.Empty) > 0 {
		fmt.Fprintf(g.stderr, "; empty slots: %v", sum.Empty)
	}
	fmt.Fprintf(g.stderr, "\nenrollments: %d uploaded, %d pending, %d failed, %d in conflict; records in %s\n",
		counts[enroll.StateUploaded], counts[enroll.StatePending]+counts[enroll.StateInFlight],
		counts[enroll.StateFailed], counts[enroll.StateConflict], set.cfg.Records)
	switch {
	case runErr != nil:
		return runErr
	case sum.Failed > 0:
		return fmt.Errorf("%d of %d boards failed: see their events", sum.Failed, sum.Passed+sum.Failed)
	case upErr != nil:
		g.log.Warn("upload incomplete; the enrollments stay queued for zerotouch upload", "err", upErr)
	}
	return nil
}
