package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"zerotouch/board"
	"zerotouch/ca"
	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/internal/tpmdev"
	"zerotouch/labels"
	"zerotouch/station"
	"zerotouch/station/records"
)

// demoMarker marks a folder the demo made, and may empty on its next run.
const demoMarker = ".zerotouch-demo"

// demoLine is one attestation mode of the demo and the boards it runs.
type demoLine struct {
	mode   string
	boards int
	tpm    bool // the mode needs a TPM on the board
	// stock: the line's boards run stock MCUmgr (board profile stock),
	// their serial numbers from a sequence in the records.
	stock bool
}

// name is the line's name, and its slots' prefix: short enough for a
// slot's title on the smallest screen.
func (dl demoLine) name() string {
	if dl.stock {
		return "stock"
	}
	return dl.mode
}

var demoLines = []demoLine{
	{station.ModeTPM, 2, true, false},
	{station.ModeX509TPM, 1, true, false},
	{station.ModeX509Keygen, 2, false, false},
	{station.ModeSymmetricKey, 2, false, false},
	{station.ModeSymmetricKey, 1, false, true},
}

// demoTPMBoards is how many of the demo's boards have a TPM.
func demoTPMBoards() (n int, modes []string) {
	for _, dl := range demoLines {
		if dl.tpm {
			n += dl.boards
			modes = append(modes, dl.mode)
		}
	}
	return n, modes
}

// demoNoTPM says why the TPM modes were left out, and what brings them in.
const demoNoTPM = "no TPM for their boards (--tpm none, or a zerotouch built without the TPM simulator); give --tpm sim, or one swtpm per board (--tpm tcp:HOST:PORT,...)"

// How the demo reaches its virtual boards (--boards).
const (
	demoBoardsPty = "pty" // a pseudo-terminal per board, as a USB serial port
	demoBoardsTCP = "tcp" // a TCP port per board on loopback, as a serial device server
)

// defaultDemoBoards is pty where the system has pseudo-terminals.
func defaultDemoBoards() string {
	if runtime.GOOS == "windows" {
		return demoBoardsTCP
	}
	return demoBoardsPty
}

// demoFlags are the demo's command line.
type demoFlags struct {
	dir        string
	records    string // a records database instead of DIR/records.db: a file, or a postgres:// URL
	baud       int
	headless   bool
	closeAfter time.Duration // close the window this long after the demo is done; 0 leaves it open
	boards     string        // pty or tcp
	tpms       []string      // the TPM boards' TPMs, in order; nil: none
}

func demoCmd(g *globals) *cobra.Command {
	var f demoFlags
	cmd := &cobra.Command{
		Use:   "demo [--dir ./zerotouch-demo]",
		Short: "Provision virtual boards in every attestation mode against a local DPS emulator",
		Long: `Run the whole station with no hardware and no cloud: a DPS emulator on
loopback, virtual boards on pseudo-terminals (their TPMs simulated), a
throwaway local CA and the records, all in --dir. Boards are provisioned in
each attestation mode (tpm, x509-tpm, x509-keygen, symmetric-key), their
enrollments uploaded to the emulator, and what happened is printed with
where to look.

On Windows, which has no pseudo-terminals, the boards listen on loopback
TCP ports (--boards tcp, also on Linux and macOS), and the TPM boards need
a TPM each, as the Windows build has no simulator: --tpm names three
swtpm instances (tcp:HOST:PORT,tcp:HOST:PORT,tcp:HOST:PORT). Without, the
demo leaves the tpm and x509-tpm modes out and says so.

With a display (DISPLAY or WAYLAND_DISPLAY set), the operator's window
opens, signed in as "demo", and runs the lines; close it to end the demo
(--close-after closes it once the lines are done and the enrollments
uploaded). --headless (or --json) keeps to the terminal.

Running it again empties the folder it made before (it refuses a folder
it did not make). The CA's password lives only in memory: the demo CA
cannot sign again after the run.

Exit status: 0 when every board passed and its registration was
assigned; 1 when one failed (the summary names it); 2 when the command
line is wrong or --dir holds files the demo did not make.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), g, f)
		},
	}
	cmd.Flags().StringVar(&f.dir, "dir", "zerotouch-demo", "work folder for the emulator, the CA, the boards and the records")
	cmd.Flags().StringVar(&f.records, "records", "", "records database instead of DIR/records.db: a SQLite file, or the factory's PostgreSQL as postgres://USER@HOST/DB (password from PGPASSFILE or PGPASSWORD)")
	cmd.Flags().IntVar(&f.baud, "baud", 115200, "the virtual boards' line rate")
	cmd.Flags().BoolVar(&f.headless, "headless", false, "no window, even with a display")
	cmd.Flags().StringVar(&f.boards, "boards", defaultDemoBoards(), "how the station reaches the virtual boards: pty (a pseudo-terminal each, as a USB serial port) or tcp (a loopback TCP port each, as a serial device server)")
	cmd.Flags().StringSliceVar(&f.tpms, "tpm", defaultDemoTPMs(), "the TPMs of the tpm and x509-tpm boards: sim (the simulator, one board process each), or one tcp:HOST:PORT (swtpm) or device per board, comma-separated; none leaves those modes out")
	cmd.Flags().DurationVar(&f.closeAfter, "close-after", 0, "with the window: close it this long after the lines are done and the enrollments uploaded (0: leave it open)")
	return cmd
}

// defaultDemoTPMs is the simulator where this build has it, else none:
// the TPM modes then need --tpm.
func defaultDemoTPMs() []string {
	if tpmdev.HasSimulator {
		return []string{tpmdev.Sim}
	}
	return []string{tpmdev.None}
}

func checkDemoBoards(boards string) error {
	switch boards {
	case demoBoardsTCP:
		return nil
	case demoBoardsPty:
		if runtime.GOOS == "windows" {
			return fmt.Errorf("--boards pty: Windows has no pseudo-terminals; use --boards tcp")
		}
		return nil
	}
	return fmt.Errorf("--boards %q: want pty or tcp", boards)
}

// demoTPMs checks --tpm and gives a TPM per TPM board, in demoLines'
// order, or nil when those modes are left out.
func demoTPMs(specs []string) ([]string, error) {
	n, modes := demoTPMBoards()
	example := "swtpm instances: --tpm tcp:127.0.0.1:2321,tcp:127.0.0.1:2323,tcp:127.0.0.1:2325"
	switch {
	case len(specs) == 1 && specs[0] == tpmdev.None:
		return nil, nil
	case len(specs) == 1 && specs[0] == tpmdev.Sim:
		if !tpmdev.HasSimulator {
			return nil, fmt.Errorf("--tpm sim: %w; give %d, e.g. %s", tpmdev.ErrNoSimulator, n, example)
		}
		return slices.Repeat(specs, n), nil
	case len(specs) != n:
		return nil, fmt.Errorf("--tpm: the demo's %s boards need %d TPMs, one each (or sim, or none); got %d: give e.g. %s",
			strings.Join(modes, " and "), n, len(specs), example)
	}
	seen := map[string]bool{}
	for _, spec := range specs {
		switch {
		case spec == tpmdev.Sim || spec == tpmdev.None:
			return nil, fmt.Errorf("--tpm %s: give it alone, not in a list", spec)
		case seen[spec]:
			return nil, fmt.Errorf("--tpm: %s is named twice: each board needs a TPM of its own", spec)
		}
		if err := tpmdev.Check(spec); err != nil {
			return nil, fmt.Errorf("--tpm: %w", err)
		}
		seen[spec] = true
	}
	return specs, nil
}

// prepareDemoDir makes dir, or empties one an earlier demo made.
func prepareDemoDir(dir string) error {
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("demo folder: %w", err)
	case len(ents) > 0:
		if _, err := os.Stat(filepath.Join(dir, demoMarker)); err != nil {
			return usageError{fmt.Errorf("--dir %s holds files the demo did not make: give an empty or new folder", dir)}
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("empty the last demo's folder: %w", err)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo folder: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, demoMarker), []byte("made by zerotouch demo; emptied by its next run\n"), 0o600)
}

// demoRun is what a demo sets up: the emulator, the CA, the records and a
// station per attestation mode, over boards already started.
type demoRun struct {
	g         *globals
	dir       string
	dps       *emulator.Server
	client    *enroll.Client
	issuer    ca.Issuer
	store     records.DB
	recordsAt string // the records, as records --db takes them
	uploader  *enroll.Uploader
	bg        *backgroundUpload // the uploader's loop while the lines run
	lines     demoStation
	skipped   []string        // modes left out: no TPM for their boards
	window    *station.Config // every line's slots, for the window
	events    atomic.Pointer[func(station.Event)]
	closers   []func()
}

func (d *demoRun) Close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// event passes a station's event to whoever shows them.
func (d *demoRun) event(e station.Event) {
	if f := d.events.Load(); f != nil {
		(*f)(e)
	}
}

func runDemo(ctx context.Context, g *globals, f demoFlags) error {
	if f.baud < 1200 {
		return usageError{fmt.Errorf("--baud %d: want 1200 or more", f.baud)}
	}
	window := withWindow && !f.headless && !g.json && hasDisplay()
	f.headless = !window
	if f.closeAfter < 0 {
		return usageError{fmt.Errorf("--close-after %v: want 0 or more", f.closeAfter)}
	}
	if err := checkDemoBoards(f.boards); err != nil {
		return usageError{err}
	}
	tpms, err := demoTPMs(f.tpms)
	if err != nil {
		return usageError{err}
	}
	f.tpms = tpms
	if err := prepareDemoDir(f.dir); err != nil {
		return err
	}
	start := time.Now()
	d, err := setUpDemo(ctx, g, f)
	if err != nil {
		return err
	}
	defer d.Close()

	d.bg = startUpload(ctx, d.uploader, dpsSettings{caSetting: "the emulator's " + d.dps.CAFile, host: d.client.HostName()}, g.log)
	halt := func() { d.bg.halt(time.Now().Add(uploadGrace)) }
	defer halt()
	var sum station.Summary
	var upErr error
	if window {
		sum, err = demoWindow(ctx, d, f.closeAfter)
		if err != nil {
			return err
		}
	} else {
		show := func(e station.Event) {
			demoEvent(g, e)
			d.bg.Event(e)
		}
		d.events.Store(&show)
		d.lines.SetOperator("demo", "WO-DEMO")
		if sum, err = d.lines.Run(ctx, station.RunOptions{}); err != nil {
			return err
		}
	}
	// Whatever the background upload left.
	halt()
	_, upErr = d.uploader.Run(ctx)
	if err := d.report(start, sum); err != nil {
		return err
	}
	switch {
	case sum.Failed > 0:
		return fmt.Errorf("demo: %d boards failed", sum.Failed)
	case upErr != nil:
		return fmt.Errorf("demo: upload: %w", upErr)
	}
	return nil
}

// say prints a line for a person (nothing with --json).
func (d *demoRun) say(format string, args ...any) {
	if !d.g.json {
		fmt.Fprintf(d.g.stdout, format+"\n", args...)
	}
}

func setUpDemo(ctx context.Context, g *globals, f demoFlags) (_ *demoRun, err error) {
	d := &demoRun{g: g, dir: f.dir, lines: demoStation{finished: make(chan struct{})}}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()

	// The cloud: a DPS emulator on loopback.
	if d.dps, err = emulator.Start(ctx, "127.0.0.1:0", filepath.Join(f.dir, "dps"), emulator.Options{Logger: g.log}); err != nil {
		return nil, fmt.Errorf("demo: start the DPS emulator: %w", err)
	}
	d.closers = append(d.closers, func() { d.dps.Close() })
	cs, err := enroll.ParseConnectionString(d.dps.ConnectionString)
	if err != nil {
		return nil, err
	}
	if d.client, err = enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: d.dps.CAFile, Logger: g.log}); err != nil {
		return nil, err
	}
	d.say("DPS emulator on %s (CA %s)", d.dps.URL, d.dps.CAFile)

	// The factory: a CA whose password never leaves memory, and the
	// records.
	pw := make([]byte, 24)
	rand.Read(pw)
	issuer, err := ca.Init(ctx, filepath.Join(f.dir, "ca"), ca.InitOptions{Name: "zerotouch demo", Password: []byte(base64.StdEncoding.EncodeToString(pw)), Logger: g.log})
	if err != nil {
		return nil, fmt.Errorf("demo: make the CA: %w", err)
	}
	d.issuer = issuer
	d.closers = append(d.closers, func() { issuer.Close() })
	dbPath := filepath.Join(f.dir, "records.db")
	if f.records != "" {
		dbPath = f.records
	}
	if d.store, err = openStore(ctx, dbPath); err != nil {
		return nil, fmt.Errorf("demo: records: %w", err)
	}
	d.recordsAt = dbPath
	if !records.IsPostgresURL(dbPath) {
		d.recordsAt, _ = filepath.Abs(dbPath)
	}
	d.closers = append(d.closers, func() { d.store.Close() })
	var pacer enroll.Pacer // nil: the demo's own pace
	if pg, ok := d.store.(*records.PGStore); ok {
		// Recorded in a factory database: paced by the quota that the
		// factory's uploaders share there.
		if pacer, err = factoryPacer(ctx, g, pg, d.client.HostName(), 1000); err != nil {
			return nil, fmt.Errorf("demo: records: %w", err)
		}
	}
	if d.uploader, err = enroll.NewUploader(enroll.UploaderConfig{Client: d.client, Queue: d.store, Quota: 1000, Pacer: pacer, Logger: g.log}); err != nil {
		return nil, err
	}
	tmpl, err := fwtemplates.Builtin("json")
	if err != nil {
		return nil, err
	}
	groupKey := make([]byte, 64)
	rand.Read(groupKey)

	// The boards, and a station per attestation mode over them.
	boardsDir := filepath.Join(f.dir, "boards")
	serial := 1
	tpms := f.tpms
	for _, dl := range demoLines {
		var boardTPMs []string
		if dl.tpm {
			if tpms == nil {
				if len(d.skipped) == 0 {
					d.say("The tpm and x509-tpm boards are left out: %s", demoNoTPM)
					g.log.Warn("demo: TPM modes left out", "why", demoNoTPM)
				}
				d.skipped = append(d.skipped, dl.mode)
				serial += dl.boards
				continue
			}
			boardTPMs, tpms = tpms[:dl.boards], tpms[dl.boards:]
		}
		ports, stop, err := startDemoBoards(ctx, g, dl, demoBoardSet{root: boardsDir, baud: f.baud, first: serial, dpsCA: d.dps.CAFile, tcp: f.boards == demoBoardsTCP, tpms: boardTPMs})
		d.closers = append(d.closers, stop)
		serial += dl.boards
		if err != nil {
			return nil, fmt.Errorf("demo: start the %s boards: %w", dl.name(), err)
		}
		var y strings.Builder
		fmt.Fprintf(&y, "station: demo\nline: demo-%s\nattestation: %s\nid_scope: %s\nglobal_endpoint: %s\nbaud: %d\n",
			dl.name(), dl.mode, d.dps.IDScope, d.dps.HostName, f.baud)
		y.WriteString("verify_registration: {enabled: true}\n")
		if dl.stock {
			y.WriteString("board: {profile: stock, serial: {source: sequence, prefix: ZTS-}}\n")
		}
		fmt.Fprintf(&y, "ca:\n  dir: %s\nsymmetric_key:\n  group_id: demo-symmetric-key\nslots:\n", filepath.Join(f.dir, "ca"))
		for i, p := range ports {
			fmt.Fprintf(&y, "  - {name: %s-%d, port: %s}\n", dl.name(), i+1, p)
		}
		cfg, err := station.ParseConfig([]byte(y.String()))
		if err != nil {
			return nil, err
		}
		cfg.Records = dbPath
		cfg.Labels = labels.PrinterConfig{Dir: filepath.Join(f.dir, "labels")}
		printer, err := labels.NewPrinter(cfg.Labels)
		if err != nil {
			return nil, err
		}
		deps := station.Deps{Store: d.store, Template: tmpl, Issuer: issuer, GroupKey: groupKey, Logger: g.log,
			Headless: f.headless, Printer: printer, Events: d.event, Enrolled: func(ctx context.Context, serial string) error { return waitEnrolled(ctx, d.store, d.bg, serial) }}
		// The DPS side of a line enrolled by group, as zerotouch run
		// makes it at start.
		if err := ensureGroup(ctx, g.log, d.client, cfg, &deps); err != nil {
			return nil, fmt.Errorf("demo: the %s line's enrollment group: %w", dl.name(), err)
		}
		st, err := station.New(cfg, deps)
		if err != nil {
			return nil, err
		}
		d.lines.lines = append(d.lines.lines, demoLineRun{mode: dl.name(), st: st})
		if d.window == nil {
			c := *cfg
			c.Slots = nil
			c.Line = "demo (every attestation mode)"
			c.GUI.Labels = filepath.Join(f.dir, "labels")
			d.window = &c
		}
		d.window.Slots = append(d.window.Slots, cfg.Slots...)
	}
	return d, nil
}

// report prints the records and where to look.
func (d *demoRun) report(start time.Time, sum station.Summary) error {
	for _, l := range d.lines.lines {
		d.say("%-14s %d passed, %d failed", l.mode, l.sum.Passed, l.sum.Failed)
	}
	for _, mode := range d.skipped {
		d.say("%-14s left out: %s", mode, demoNoTPM)
	}
	counts, err := d.store.Counts(context.Background())
	if err != nil {
		return err
	}
	uploaded := counts[enroll.StateUploaded]
	d.say("%d individual enrollments uploaded to the DPS emulator", uploaded)
	list, err := d.store.List(context.Background(), records.Filter{})
	if err != nil {
		return err
	}
	d.say("\n%-10s %-14s %-54s %-26s %s", "SERIAL", "ATTESTATION", "REGISTRATION ID", "ENROLLMENT", "FIRST BOOT")
	for i := len(list) - 1; i >= 0; i-- {
		r := list[i]
		en := "group " + map[string]string{station.ModeSymmetricKey: "demo-symmetric-key"}[r.Attestation]
		if r.Enrollment != nil {
			en = string(r.UploadState)
		}
		boot := "-"
		if reg := r.Registration; reg != nil {
			boot = reg.State
			if reg.AssignedHub != "" {
				boot += " to " + reg.AssignedHub
			}
		}
		d.say("%-10s %-14s %-54s %-26s %s", r.Serial, r.Attestation, r.RegistrationID, en, boot)
	}
	abs, _ := filepath.Abs(d.dir)
	d.say("\n%d boards passed, %d failed in %.1f s.", sum.Passed, sum.Failed, time.Since(start).Seconds())
	d.say("Records:        zerotouch records list --db %s", d.recordsAt)
	d.say("DPS emulator:   zerotouch dps-emulator --data %s   (serves the same enrollments again)", filepath.Join(abs, "dps"))
	d.say("Board configs:  %s", filepath.Join(abs, "boards", "SERIAL", "fs", filepath.FromSlash(station.DefaultConfigPath)))
	if d.g.json {
		res := map[string]any{"passed": sum.Passed, "failed": sum.Failed, "uploaded": uploaded, "dir": abs, "records": d.recordsAt}
		if len(d.skipped) > 0 {
			res["skipped"] = d.skipped
		}
		printResult(d.g, res)
	}
	return nil
}

// demoStation runs the demo's lines one after the other, each once over
// the boards present, as one station to whoever drives it (the window
// takes it for a station). Retry and Skip go to the line running.
type demoStation struct {
	lines  []demoLineRun
	mu     sync.Mutex
	cur    *station.Station
	op, wo string
	// finished is closed when a Run has gone through every line; total
	// is that run's summary.
	finished chan struct{}
	once     sync.Once
	total    station.Summary
}

type demoLineRun struct {
	mode string
	st   *station.Station
	sum  station.Summary
}

func (s *demoStation) Run(ctx context.Context, _ station.RunOptions) (station.Summary, error) {
	var total station.Summary
	for i := range s.lines {
		l := &s.lines[i]
		s.mu.Lock()
		s.cur = l.st
		l.st.SetOperator(s.op, s.wo)
		s.mu.Unlock()
		sum, err := l.st.Run(ctx, station.RunOptions{Once: true})
		s.mu.Lock()
		l.sum = sum
		s.mu.Unlock()
		total.Passed += sum.Passed
		total.Failed += sum.Failed
		total.Empty = append(total.Empty, sum.Empty...)
		total.Elapsed += sum.Elapsed
		if err != nil {
			return total, fmt.Errorf("the %s line: %w", l.mode, err)
		}
		if ctx.Err() != nil {
			return total, nil
		}
	}
	s.once.Do(func() {
		s.mu.Lock()
		s.total = total
		s.mu.Unlock()
		close(s.finished)
	})
	return total, nil
}

// summary is the first complete run's summary, else the lines' so far.
func (s *demoStation) summary() station.Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.finished:
		return s.total
	default:
	}
	var sum station.Summary
	for _, l := range s.lines {
		sum.Passed += l.sum.Passed
		sum.Failed += l.sum.Failed
	}
	return sum
}

func (s *demoStation) line() (*station.Station, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return nil, station.ErrNotWaiting
	}
	return s.cur, nil
}

func (s *demoStation) Retry(slot string) error {
	st, err := s.line()
	if err != nil {
		return err
	}
	return st.Retry(slot)
}

func (s *demoStation) Skip(slot string) error {
	st, err := s.line()
	if err != nil {
		return err
	}
	return st.Skip(slot)
}

func (s *demoStation) SetOperator(op, wo string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.op, s.wo = op, wo
	if s.cur != nil {
		s.cur.SetOperator(op, wo)
	}
}

// demoBoardSet is where and how a demo line's boards run.
type demoBoardSet struct {
	root  string // the boards' folders are here
	baud  int
	first int    // the first board's serial number index
	dpsCA string // the DPS emulator's CA, for the boards' first boot
	tcp   bool   // serve each board on a loopback TCP port, not a pty
	tpms  []string
}

// startDemoBoards starts a demo line's boards: with the TPM simulator
// each in a process of its own (the simulator is one per process), else
// in this one. stop ends them.
func startDemoBoards(ctx context.Context, g *globals, dl demoLine, set demoBoardSet) (ports []string, stop func(), err error) {
	root, baud, first, dpsCA := set.root, set.baud, set.first, set.dpsCA
	var stops []func()
	stop = func() {
		for _, s := range stops {
			s()
		}
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, stop, err
	}
	for i := range dl.boards {
		tpm := board.TPMNone
		if dl.tpm {
			tpm = set.tpms[i]
		}
		listen := ""
		if set.tcp {
			listen = "tcp://127.0.0.1:0"
		}
		f := boardFlags{count: 1, prefix: "ZTD", index: first + i, baud: baud, tpm: tpm, bufSize: 4096, fw: "1.0.0", dpsCA: dpsCA, listen: listen}
		serial := f.serial(0)
		if tpm == board.TPMSim {
			cctx, cancel := context.WithCancel(ctx)
			c, err := spawnBoard(cctx, g, f, 0, root)
			stops = append(stops, func() { cancel(); c.wait() })
			if err != nil {
				return nil, stop, fmt.Errorf("board %s: %w", serial, err)
			}
			ports = append(ports, c.info.Port)
			continue
		}
		bdir := filepath.Join(root, serial)
		if err := os.MkdirAll(bdir, 0o700); err != nil {
			return nil, stop, err
		}
		bc := board.Config{Serial: serial, Dir: bdir, TPM: tpm, Baud: baud, DPSRoots: dpsCA, Listen: listen, Logger: g.log}
		if dl.stock {
			// Stock MCUmgr: the station gives it its serial number; it
			// registers with DPS at boot, as its firmware would.
			bc.Profile, bc.RegisterAtBoot = board.ProfileStock, true
		}
		b, err := board.Start(bc)
		if err != nil {
			return nil, stop, fmt.Errorf("board %s: %w", serial, err)
		}
		stops = append(stops, func() { b.Close() })
		ports = append(ports, b.Path())
	}
	return ports, stop, nil
}

// demoEvent prints a board's passes and failures (every event with
// --json).
func demoEvent(g *globals, e station.Event) {
	if g.json {
		printResult(g, e)
		return
	}
	switch e.Result {
	case station.Passed:
		fmt.Fprintf(g.stdout, "  %s %s: passed (%s)\n", e.Slot, e.Serial, e.RegistrationID)
	case station.Failed:
		fmt.Fprintf(g.stdout, "  %s %s: FAILED at %s: %s (%s)\n", e.Slot, e.Serial, e.Step, e.Message, e.Error)
	}
}
