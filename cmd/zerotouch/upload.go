package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"zerotouch/enroll"
	"zerotouch/internal/pause"
	"zerotouch/internal/secret"
	"zerotouch/station"
	"zerotouch/station/records"
)

// envDPSConnectionString holds the DPS service connection string when
// --connection-string-file is not given.
const envDPSConnectionString = "ZEROTOUCH_DPS_CONNECTION_STRING"

// dpsFlags say how to reach the DPS service API.
type dpsFlags struct {
	connFile string
	caFile   string
	timeout  time.Duration
	// connSetting and caSetting name, for messages, where connFile and
	// caFile come from; "" for the flags.
	connSetting, caSetting string
}

func (f *dpsFlags) add(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.connFile, "connection-string-file", "", "file holding the DPS service connection string (HostName=...;SharedAccessKeyName=...;SharedAccessKey=...); default $"+envDPSConnectionString)
	fs.StringVar(&f.caFile, "ca-file", "", "PEM file of a CA to trust for the DPS endpoint, besides the system's (an emulator, a proxy)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long to wait for each DPS answer")
}

func (f *dpsFlags) config(g *globals) (enroll.Config, error) {
	if f.timeout <= 0 {
		return enroll.Config{}, usageError{fmt.Errorf("--timeout %v: want a positive duration", f.timeout)}
	}
	cfg, err := dpsConfig(g, f.connWhere(), f.connFile, f.caFile)
	if err != nil {
		return cfg, usageError{err}
	}
	cfg.Timeout = f.timeout
	return cfg, nil
}

// dpsSettings name, for messages, where the DPS settings come from: the
// flags of zerotouch upload or the station configuration's dps section.
type dpsSettings struct {
	caSetting   string // "--ca-file" or "dps.ca_file"
	connSetting string // "--connection-string-file" or "dps.connection_string_file"
	connFile    string // the connection string's file; "" for the environment
	host        string // the service's host name
}

func (f *dpsFlags) settings(host string) dpsSettings {
	return dpsSettings{caSetting: f.caWhere(), connSetting: f.connWhere(), connFile: f.connFile, host: host}
}

func (f *dpsFlags) connWhere() string {
	if f.connSetting != "" {
		return f.connSetting
	}
	return "--connection-string-file"
}

func (f *dpsFlags) caWhere() string {
	if f.caSetting != "" {
		return f.caSetting
	}
	return "--ca-file"
}

// advice says, in the operator's words, what to mend for an error no
// retry can mend (enroll.Permanent), or "" for another error.
func (d dpsSettings) advice(err error) string {
	conn := "the connection string in $" + envDPSConnectionString
	if d.connFile != "" {
		conn = fmt.Sprintf("the connection string in %s (%s)", d.connFile, d.connSetting)
	}
	switch {
	case errors.Is(err, enroll.ErrUntrusted):
		return fmt.Sprintf("the DPS server's certificate is not trusted: give its CA with %s", d.caSetting)
	case errors.Is(err, enroll.ErrNoHost):
		return fmt.Sprintf("the DPS host name %s does not resolve: check HostName in %s", d.host, conn)
	case errors.Is(err, enroll.ErrUnauthorized):
		return fmt.Sprintf("DPS refused the key (401): check %s: its SharedAccessKeyName and SharedAccessKey must be one of this DPS's shared access policies", conn)
	case errors.Is(err, enroll.ErrForbidden):
		return fmt.Sprintf("DPS refused the access policy (403): %s must name a policy with enrollment read and write permissions", conn)
	}
	return ""
}

// dpsConfig reads the DPS connection string from connFile (the setting
// named where) or $ZEROTOUCH_DPS_CONNECTION_STRING. An absent one is an
// error wrapping secret.ErrMissing.
func dpsConfig(g *globals, where, connFile, caFile string) (enroll.Config, error) {
	s, err := secret.Read(g.log, where, connFile, envDPSConnectionString)
	if err != nil {
		return enroll.Config{}, fmt.Errorf("DPS connection string: %w", err)
	}
	cs, err := enroll.ParseConnectionString(string(s))
	if err != nil {
		return enroll.Config{}, err
	}
	return enroll.Config{ConnectionString: cs, CAFile: caFile, Logger: g.log}, nil
}

type uploadFlags struct {
	dps       dpsFlags
	config    string
	from      string
	records   string
	state     string
	quota     int
	share     float64
	workers   int
	batch     int
	checkOnly bool
	follow    bool
	poll      time.Duration
	lease     time.Duration
	// Filled in by fromStation: the station configuration read, the
	// settings taken from it, and where records came from.
	station        string
	taken          []string
	recordsSetting string
}

func uploadCmd(g *globals) *cobra.Command {
	var f uploadFlags
	cmd := &cobra.Command{
		Use:   "upload [--from FILE | --records DB]",
		Short: "Upload enrollments to DPS in bulk, within its quota, exactly once",
		Long: `Upload individual enrollments to the DPS service API in bulk requests of
up to 10, paced at a share of the DPS quota, with retries.

Without --from, the enrollments the station queued in its records
(--records, default ./zerotouch.db) go up: those pending, and those an
interrupted upload left in flight.

In a station's folder, the station's configuration gives what the command
line does not, as zerotouch run reads it: ./station.yaml when it exists and
--connection-string-file is not given, or the file --config names. The
connection string comes from dps.connection_string_file (else
$` + envDPSConnectionString + `), the DPS server's CA from dps.ca_file, the records
from records (without --from), the pace from dps.quota and dps.share. The
summary names the file and the settings taken from it.

--from names a JSON array of enrollments (the DPS REST shape) or a CSV with
a header row: registrationId, attestation (tpm, x509, symmetricKey),
endorsementKey, storageRootKey, certificate, primaryKey, secondaryKey,
deviceId, iotHubHostName, provisioningStatus, iotEdge, iotHubs,
allocationPolicy. The whole file is checked before anything is sent.

Progress is kept in a state file (--state, default FILE.upload.db): run
the same command again after a failure or a crash and it carries on,
re-checking what was in flight; nothing is enrolled twice. An enrollment
DPS already holds with other content is a conflict, left for a person.

An answer that no retry can mend stops the upload at once, unretried: the
server's certificate is not trusted (give its CA with --ca-file), its host
name does not resolve, or it refuses the key (401) or the policy (403).

With records in a factory's PostgreSQL (--records postgres://...), any
number of uploaders drain its one queue, on one machine or many: each
claims what it sends under a lease (--lease) that it renews while it
lives, and the claims of one that died are taken over once their lease
runs out. Together they keep to one DPS quota: the database paces their
requests at --quota × --share for the whole factory (give every uploader
the same figures; the last one started sets them). --follow keeps the
uploader running as a service: it drains the queue as boards arrive,
looking at an empty queue again after up to --poll, logs each batch,
rides out DPS's and the database's outages, and stops cleanly on
SIGTERM or an interrupt (what it had in flight goes back to pending),
exiting 0.

Exit status: 0 when every enrollment is in DPS (with --follow: when
stopped by SIGTERM or an interrupt); 1 when some failed or are
in conflict; 2 when the command line, the connection string or the file is
wrong (nothing was sent); 3 when DPS cannot be used as set up: its
certificate is not trusted, its host name does not resolve, or it refused
the connection string's key or policy (mend that, then run again); 4 when
enrollments are still pending because DPS kept failing or the upload was
interrupted (run the same command again later).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.fromStation(g, cmd.Flags().Changed); err != nil {
				return err
			}
			return runUpload(cmd.Context(), g, &f)
		},
	}
	f.dps.add(cmd)
	fs := cmd.Flags()
	fs.StringVar(&f.config, "config", "", "the station's configuration (YAML) whose dps and records settings apply (default ./station.yaml when it exists and --connection-string-file is not given)")
	fs.StringVar(&f.from, "from", "", "JSON or CSV file of enrollments to upload")
	fs.StringVar(&f.records, "records", "", "the station's records (default ./zerotouch.db when --from is not given)")
	fs.StringVar(&f.state, "state", "", "upload state file (default FILE.upload.db beside --from)")
	fs.IntVar(&f.quota, "quota", 1000, "the DPS service quota, in operations a minute")
	fs.Float64Var(&f.share, "share", 0.97, "share of the quota to use, in (0, 1]")
	fs.IntVar(&f.workers, "workers", 4, "requests in flight at once")
	fs.IntVar(&f.batch, "batch", enroll.MaxBulk, "enrollments per bulk request (1 to 10)")
	fs.BoolVar(&f.checkOnly, "check", false, "check the file and the connection string, send nothing")
	fs.BoolVar(&f.follow, "follow", false, "keep running: drain the factory's queue (--records postgres://...) as boards arrive, until SIGTERM or an interrupt")
	fs.DurationVar(&f.poll, "poll", 5*time.Second, "with --follow, the longest wait before an empty queue is looked at again")
	fs.DurationVar(&f.lease, "lease", records.DefaultLease, "with --records postgres://..., how long this uploader's claims outlive it if it dies before others take them over")
	return cmd
}

// uploadSummary is what upload prints at the end (one JSON object with
// --json).
type uploadSummary struct {
	// Config is the station configuration that gave the settings in
	// Settings (fromStation); empty when none did.
	Config            string           `json:"config,omitempty"`
	Settings          []string         `json:"settings,omitempty"`
	File              string           `json:"file"`
	State             string           `json:"state"`
	Total             int              `json:"total"`
	Uploaded          int              `json:"uploaded"`
	Failed            int              `json:"failed"`
	Conflicts         int              `json:"conflicts"`
	Pending           int              `json:"pending"`
	Requests          int              `json:"requests"`
	Throttled         int              `json:"throttled"`
	Seconds           float64          `json:"seconds"`
	PerMinute         float64          `json:"enrollmentsPerMinute"`
	Recovered         int              `json:"recovered,omitempty"`
	AlreadyInDPS      int              `json:"alreadyInDps,omitempty"`
	Problems          []enroll.Outcome `json:"problems,omitempty"`
	Error             string           `json:"error,omitempty"`
	Advice            string           `json:"advice,omitempty"` // what to mend before running again
	AllUploaded       bool             `json:"allUploaded"`
	UnchangedFromLast int              `json:"unchangedFromLastRun,omitempty"`
}

func runUpload(ctx context.Context, g *globals, f *uploadFlags) error {
	if f.from != "" && f.records != "" {
		return usageError{errors.New("give --from FILE or --records DB, not both")}
	}
	switch {
	case f.quota <= 0:
		return usageError{fmt.Errorf("--quota %d: want the DPS quota in operations a minute", f.quota)}
	case f.share <= 0 || f.share > 1:
		return usageError{fmt.Errorf("--share %v: want a share of the quota in (0, 1]", f.share)}
	case f.workers < 1 || f.workers > 64:
		return usageError{fmt.Errorf("--workers %d: want 1 to 64", f.workers)}
	case f.batch < 1 || f.batch > enroll.MaxBulk:
		return usageError{fmt.Errorf("--batch %d: DPS takes 1 to %d enrollments a request", f.batch, enroll.MaxBulk)}
	case f.poll <= 0:
		return usageError{fmt.Errorf("--poll %v: want a positive duration", f.poll)}
	case f.lease < time.Second:
		return usageError{fmt.Errorf("--lease %v: want at least 1s", f.lease)}
	case f.follow && f.from != "":
		return usageError{errors.New("--follow drains the factory's queue (--records postgres://...), not a --from file: give one or the other")}
	}
	cfg, err := f.dps.config(g)
	if err != nil {
		return err
	}
	if f.from == "" {
		return uploadRecords(ctx, g, f, cfg)
	}
	file, err := os.Open(f.from)
	if err != nil {
		return usageError{fmt.Errorf("--from: %w", err)}
	}
	es, err := enroll.ReadFile(file, f.from)
	file.Close()
	if err != nil {
		return usageError{err}
	}
	client, err := enroll.NewClient(cfg)
	if err != nil {
		return usageError{err}
	}
	if f.checkOnly {
		if g.json {
			return printResult(g, struct {
				Config      string   `json:"config,omitempty"`
				Settings    []string `json:"settings,omitempty"`
				File        string   `json:"file"`
				Enrollments int      `json:"enrollments"`
				Valid       bool     `json:"valid"`
				DPS         string   `json:"dps"`
			}{f.station, f.taken, f.from, len(es), true, client.HostName()})
		}
		if f.station != "" {
			fmt.Fprintf(g.stderr, "settings from %s: %s\n", f.station, strings.Join(f.taken, ", "))
		}
		fmt.Fprintf(g.stderr, "%s: %d enrollments, all valid; DPS %s\n", f.from, len(es), client.HostName())
		return nil
	}
	statePath := f.state
	if statePath == "" {
		statePath = f.from + ".upload.db"
	}
	// Cut short (Ctrl-C, SIGTERM, a deadline) while the state file is
	// read or written: nothing is lost, the enrollments are pending.
	interrupted := func(err error) error {
		if ctx.Err() != nil {
			return pendingError{fmt.Errorf("upload interrupted: %w; nothing is lost: run the same command again (state %s)", err, statePath)}
		}
		return err
	}
	st, err := enroll.OpenStateFile(ctx, statePath)
	if err != nil {
		return interrupted(err)
	}
	defer st.Close()
	added, err := st.Add(ctx, es)
	if err != nil {
		return interrupted(err)
	}
	g.log.Info("upload: queued", "file", f.from, "state", statePath, "new", added.New, "changed", added.Changed,
		"retried", added.Retried, "unchanged", added.Unchanged, "dps", client.HostName())
	counts, err := st.Counts(ctx)
	if err != nil {
		return interrupted(err)
	}
	stats, runErr, err := f.drain(ctx, g, client, st, nil, counts[enroll.StatePending]+counts[enroll.StateInFlight])
	if err != nil {
		return interrupted(err)
	}

	sum := newUploadSummary(f.from, statePath, stats, runErr)
	sum.Config, sum.Settings = f.station, f.taken
	sum.Total, sum.UnchangedFromLast = len(es), added.Unchanged
	// Count this file's enrollments only: the state file may hold others.
	ids := make([]string, len(es))
	for i := range es {
		ids[i] = es[i].RegistrationID
	}
	outs, err := st.OutcomesOf(context.WithoutCancel(ctx), ids)
	if err != nil {
		return err
	}
	for _, o := range outs {
		switch o.State {
		case enroll.StateUploaded:
			sum.Uploaded++
		case enroll.StateFailed:
			sum.Failed++
		case enroll.StateConflict:
			sum.Conflicts++
		default:
			sum.Pending++
		}
		if (o.State == enroll.StateFailed || o.State == enroll.StateConflict) && len(sum.Problems) < 100 {
			sum.Problems = append(sum.Problems, o)
		}
	}
	sort.Slice(sum.Problems, func(i, j int) bool { return sum.Problems[i].RegistrationID < sum.Problems[j].RegistrationID })
	return finishUpload(g, sum, runErr, "see above", f.dps.settings(client.HostName()))
}

// newUploadSummary starts a summary with what the run did.
func newUploadSummary(file, state string, stats enroll.Stats, runErr error) *uploadSummary {
	sum := &uploadSummary{File: file, State: state, Requests: stats.Requests, Throttled: stats.Throttled,
		Seconds: stats.Elapsed.Seconds(), Recovered: stats.Recovered, AlreadyInDPS: stats.Already}
	if stats.Elapsed > 0 {
		sum.PerMinute = float64(stats.Uploaded) / stats.Elapsed.Minutes()
	}
	if runErr != nil {
		sum.Error = runErr.Error()
	}
	return sum
}

// finishUpload prints the summary, its counts filled in, and returns the
// command's error: nil only when every enrollment is in DPS; a setupError
// when DPS cannot be used as set up; a pendingError when enrollments are
// only pending; another error when some failed or are in conflict.
func finishUpload(g *globals, sum *uploadSummary, runErr error, where string, dps dpsSettings) error {
	sum.AllUploaded = runErr == nil && sum.Uploaded == sum.Total && sum.Failed+sum.Conflicts+sum.Pending == 0
	if enroll.Permanent(runErr) {
		sum.Advice = dps.advice(runErr)
	}
	printUploadSummary(g, sum)
	switch {
	case sum.Advice != "":
		return setupError{fmt.Errorf("%s; %d enrollments still pending: run the same command again once that is mended: %w", sum.Advice, sum.Pending, runErr)}
	case runErr != nil && sum.Failed+sum.Conflicts > 0:
		return fmt.Errorf("%w; %d enrollments still pending: run the same command again; %d failed, %d in conflict: %s",
			runErr, sum.Pending, sum.Failed, sum.Conflicts, where)
	case runErr != nil:
		return pendingError{fmt.Errorf("%w; %d enrollments still pending: run the same command again", runErr, sum.Pending)}
	case sum.Failed+sum.Conflicts > 0:
		return fmt.Errorf("%d of %d enrollments not uploaded (%d failed, %d in conflict, %d pending): %s",
			sum.Total-sum.Uploaded, sum.Total, sum.Failed, sum.Conflicts, sum.Pending, where)
	case !sum.AllUploaded:
		return pendingError{fmt.Errorf("%d of %d enrollments still pending: run the same command again", sum.Pending, sum.Total)}
	}
	return nil
}

func printUploadSummary(g *globals, s *uploadSummary) {
	if g.json {
		printResult(g, s)
		return
	}
	w := g.stderr
	if s.Config != "" {
		fmt.Fprintf(w, "settings from %s: %s\n", s.Config, strings.Join(s.Settings, ", "))
	}
	for _, p := range s.Problems {
		fmt.Fprintf(w, "  %-10s %s: %s\n", p.State, p.RegistrationID, p.Error)
	}
	throttled := 0.0
	if s.Requests > 0 {
		throttled = 100 * float64(s.Throttled) / float64(s.Requests)
	}
	fmt.Fprintf(w, "%s: %d enrollments: %d uploaded, %d failed, %d in conflict, %d pending\n",
		s.File, s.Total, s.Uploaded, s.Failed, s.Conflicts, s.Pending)
	fmt.Fprintf(w, "this run: %d requests, %d throttled (%.1f%%), %.1f s, %.0f enrollments a minute",
		s.Requests, s.Throttled, throttled, s.Seconds, s.PerMinute)
	if s.AlreadyInDPS > 0 {
		fmt.Fprintf(w, "; %d were in DPS already, as queued", s.AlreadyInDPS)
	}
	fmt.Fprintf(w, "\nstate: %s\n", s.State)
}

// countBar draws a count of items done on a terminal, nothing elsewhere.
type countBar struct {
	p   *mpb.Progress
	bar *mpb.Bar
}

func newCountBar(g *globals, name string, total int) *countBar {
	if g.json || !g.term || total == 0 {
		return &countBar{}
	}
	p := mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(40))
	bar := p.AddBar(int64(total),
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.CountersNoUnit("%d / %d")),
		mpb.AppendDecorators(decor.AverageSpeed(nil, "%.0f/s"), decor.Name(" "), decor.Percentage()),
	)
	return &countBar{p: p, bar: bar}
}

func (b *countBar) set(n int) {
	if b.bar != nil {
		b.bar.SetCurrent(int64(n))
	}
}

func (b *countBar) done(err error) {
	if b.bar == nil {
		return
	}
	if err != nil {
		b.bar.Abort(false)
	} else {
		b.bar.SetTotal(-1, true)
	}
	b.p.Wait()
}

// uploadRecords uploads what the station's records have queued.
func uploadRecords(ctx context.Context, g *globals, f *uploadFlags, cfg enroll.Config) error {
	path := f.records
	if path == "" {
		path = defaultRecordsDB
	}
	if f.follow && !records.IsPostgresURL(path) {
		where := "--records " + path
		if f.recordsSetting != "" && f.records == path {
			where = f.recordsSetting + ": " + path
		}
		return usageError{fmt.Errorf("--follow needs the factory's records database (--records postgres://...); %s is a station's file, which its station uploads from (zerotouch run) or zerotouch upload drains once", where)}
	}
	if _, err := os.Stat(path); err != nil && !records.IsPostgresURL(path) {
		if f.recordsSetting != "" {
			return usageError{fmt.Errorf("%s: %w (the station has no records yet: give --records or --from)", f.recordsSetting, err)}
		}
		return usageError{fmt.Errorf("--records: %w (no station records here: give --records or --from)", err)}
	}
	client, err := enroll.NewClient(cfg)
	if err != nil {
		return usageError{err}
	}
	store, err := openStore(ctx, path)
	if err != nil {
		return err
	}
	defer store.Close()
	var pacer enroll.Pacer // nil: this process's own, at --quota × --share
	name := path
	if pg, ok := store.(*records.PGStore); ok {
		name = pg.Name() // no query: it may name files
		pg.SetLease(f.lease)
		if pacer, err = f.sharedQuota(ctx, g, pg, client.HostName()); err != nil {
			return err
		}
	}
	if f.follow {
		return f.followQueue(ctx, g, client, store, pacer, name)
	}
	counts, err := store.Counts(ctx)
	if err != nil {
		return err
	}
	stats, runErr, err := f.drain(ctx, g, client, store, pacer, counts[enroll.StatePending]+counts[enroll.StateInFlight])
	if err != nil {
		return err
	}
	if counts, err = store.Counts(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	sum := newUploadSummary(path, path, stats, runErr)
	sum.Config, sum.Settings = f.station, f.taken
	sum.Uploaded, sum.Failed, sum.Conflicts = counts[enroll.StateUploaded], counts[enroll.StateFailed], counts[enroll.StateConflict]
	sum.Pending = counts[enroll.StatePending] + counts[enroll.StateInFlight]
	sum.Total = sum.Uploaded + sum.Failed + sum.Conflicts + sum.Pending
	return finishUpload(g, sum, runErr, "zerotouch records list --state failed (or conflict) shows them", f.dps.settings(client.HostName()))
}

// drain runs an Uploader over q with the flags' pacing (or pacer's, when
// not nil) and a progress bar of todo enrollments. err is a mistake in
// the flags; runErr the upload's own outcome.
func (f *uploadFlags) drain(ctx context.Context, g *globals, client *enroll.Client, q enroll.Queue, pacer enroll.Pacer, todo int) (stats enroll.Stats, runErr, err error) {
	bar := newCountBar(g, "upload", todo)
	u, err := enroll.NewUploader(enroll.UploaderConfig{
		Client: client, Queue: q, Quota: f.quota, Share: f.share, Pacer: pacer, Workers: f.workers, BatchSize: f.batch,
		Logger: g.log, Progress: func(s enroll.Stats) { bar.set(s.Uploaded + s.Failed + s.Conflicts) },
	})
	if err != nil {
		bar.done(err)
		return stats, nil, usageError{err}
	}
	stats, runErr = u.Run(ctx)
	bar.done(runErr)
	return stats, runErr, nil
}

// uploadStationConfig is the station configuration zerotouch upload reads
// in a station's folder, the default of zerotouch run --config.
const uploadStationConfig = "station.yaml"

// fromStation fills in what the command line leaves unset from the
// station's configuration, as zerotouch run reads it: the file --config
// names, or ./station.yaml when it exists and --connection-string-file is
// not given. changed reports whether a flag was given. A configuration
// that does not load is a usageError naming it.
func (f *uploadFlags) fromStation(g *globals, changed func(string) bool) error {
	file := f.config
	if file == "" {
		if f.dps.connFile != "" {
			return nil
		}
		if _, err := os.Stat(uploadStationConfig); err != nil {
			return nil
		}
		file = uploadStationConfig
	}
	cfg, err := station.LoadConfig(file)
	if err != nil {
		if f.config == "" {
			return usageError{fmt.Errorf("%w (zerotouch upload takes its DPS settings from it: mend it, or give --connection-string-file)", err)}
		}
		return usageError{fmt.Errorf("--config: %w", err)}
	}
	f.station = file
	in := " in " + file
	if f.dps.connFile == "" {
		if cfg.DPS.ConnectionStringFile != "" {
			f.dps.connFile = cfg.DPS.ConnectionStringFile
			f.dps.connSetting = "dps.connection_string_file" + in
			f.taken = append(f.taken, "dps.connection_string_file")
		} else {
			f.dps.connSetting = "--connection-string-file or dps.connection_string_file" + in
		}
	}
	if f.dps.caFile == "" {
		f.dps.caSetting = "--ca-file or dps.ca_file" + in
		if cfg.DPS.CAFile != "" {
			f.dps.caFile = cfg.DPS.CAFile
			f.taken = append(f.taken, "dps.ca_file")
		}
	}
	if f.from == "" && f.records == "" {
		f.records = cfg.Records
		f.recordsSetting = "records" + in
		f.taken = append(f.taken, "records")
	}
	if !changed("quota") && cfg.DPS.Quota > 0 {
		f.quota = cfg.DPS.Quota
		f.taken = append(f.taken, "dps.quota")
	}
	if !changed("share") && cfg.DPS.Share > 0 {
		f.share = cfg.DPS.Share
		f.taken = append(f.taken, "dps.share")
	}
	g.log.Info("upload: settings from the station's configuration", "config", file, "settings", strings.Join(f.taken, ","))
	return nil
}

// sharedQuota is the DPS quota of host that the factory's uploaders share
// through their records database, paced at --quota × --share.
func (f *uploadFlags) sharedQuota(ctx context.Context, g *globals, pg *records.PGStore, host string) (enroll.Pacer, error) {
	return factoryPacer(ctx, g, pg, host, float64(f.quota)*f.share)
}

// factoryPacer paces an uploader by the DPS quota of host that all the
// factory's uploaders share through the factory database pg (stations'
// background uploads and zerotouch upload alike), at perMinute requests
// a minute.
func factoryPacer(ctx context.Context, g *globals, pg *records.PGStore, host string, perMinute float64) (enroll.Pacer, error) {
	q, previous, err := pg.SharedQuota(ctx, host, perMinute)
	if err != nil {
		return nil, storeError(err, true)
	}
	if previous != 0 && previous != perMinute {
		g.log.Warn("upload: the factory's uploaders were paced at another rate; this uploader's replaces it for all of them: give every uploader the same quota and share",
			"dps", host, "was_per_minute", previous, "per_minute", perMinute)
	}
	g.log.Info("upload: pacing by the factory's shared DPS quota", "dps", host, "per_minute", perMinute, "records", pg.Name())
	return q, nil
}

// firstPoll is how soon --follow looks at the queue again after it has
// drained it; the wait doubles up to --poll while the queue stays empty.
const firstPoll = 250 * time.Millisecond

// followQueue runs an uploader over the factory's queue as a service
// until ctx ends (SIGTERM, an interrupt): it drains what is pending,
// logging each batch, then looks again after a wait that grows to
// --poll while the queue stays empty. DPS's and the database's outages
// are waited out with back-off. Stopped, it prints what it did and
// returns nil; it returns a setupError when DPS cannot be used as set up
// (enroll.Permanent), a usageError for flags the uploader refuses.
func (f *uploadFlags) followQueue(ctx context.Context, g *globals, client *enroll.Client, store records.DB, pacer enroll.Pacer, name string) error {
	u, err := enroll.NewUploader(enroll.UploaderConfig{
		Client: client, Queue: store, Quota: f.quota, Share: f.share, Pacer: pacer, Workers: f.workers, BatchSize: f.batch,
		Logger: g.log, LogBatches: true,
	})
	if err != nil {
		return usageError{err}
	}
	g.log.Info("upload: following the queue", "records", name, "dps", client.HostName(), "poll", f.poll)
	start := time.Now()
	var total enroll.Stats
	idle, failures := firstPoll, 0
	for {
		stats, runErr := u.Run(ctx)
		addStats(&total, stats)
		if ctx.Err() != nil {
			break
		}
		if enroll.Permanent(runErr) {
			return setupError{fmt.Errorf("%s; the uploader stopped: %w", f.dps.settings(client.HostName()).advice(runErr), runErr)}
		}
		wait := idle
		switch {
		case runErr != nil:
			failures++
			wait = enroll.Backoff(failures)
			g.log.Warn("upload: the queue could not be drained; trying again", "wait", wait, "err", runErr)
		case stats.Requests > 0:
			failures, idle = 0, firstPoll
			g.log.Info("upload: queue drained", "uploaded", stats.Uploaded, "already_in_dps", stats.Already, "failed", stats.Failed,
				"conflicts", stats.Conflicts, "recovered", stats.Recovered, "requests", stats.Requests, "throttled", stats.Throttled,
				"seconds", stats.Elapsed.Seconds())
			wait = 0
		default:
			failures, idle = 0, min(2*idle, f.poll)
		}
		if !pause.For(ctx, wait) {
			break
		}
	}
	total.Elapsed = time.Since(start)
	g.log.Info("upload: stopped; what was in flight is pending again, or its claim runs out", "uploaded", total.Uploaded,
		"requests", total.Requests, "seconds", total.Elapsed.Seconds())
	counts, err := store.Counts(context.WithoutCancel(ctx))
	if err != nil {
		g.log.Warn("upload: the queue's counts cannot be read for the summary", "err", err)
		return nil
	}
	sum := newUploadSummary(name, name, total, nil)
	sum.Config, sum.Settings = f.station, f.taken
	sum.Uploaded, sum.Failed, sum.Conflicts = counts[enroll.StateUploaded], counts[enroll.StateFailed], counts[enroll.StateConflict]
	sum.Pending = counts[enroll.StatePending] + counts[enroll.StateInFlight]
	sum.Total = sum.Uploaded + sum.Failed + sum.Conflicts + sum.Pending
	sum.PerMinute = float64(total.Uploaded) / total.Elapsed.Minutes()
	printUploadSummary(g, sum)
	return nil
}

// addStats adds one Run's counts to a service's.
func addStats(total *enroll.Stats, s enroll.Stats) {
	total.Recovered += s.Recovered
	total.Uploaded += s.Uploaded
	total.Already += s.Already
	total.Failed += s.Failed
	total.Conflicts += s.Conflicts
	total.Requests += s.Requests
	total.Throttled += s.Throttled
	total.Transient += s.Transient
	if s.LastError != "" {
		total.LastError = s.LastError
	}
}
