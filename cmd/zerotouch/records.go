package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"zerotouch/enroll"
	"zerotouch/internal/atomicfile"
	"zerotouch/internal/textsafe"
	"zerotouch/station"
	"zerotouch/station/records"
)

// defaultRecordsDB is where the station keeps its records unless told
// otherwise.
const defaultRecordsDB = "./" + station.DefaultRecords

// recordFilterFlags select records for list and export.
type recordFilterFlags struct {
	search string
	result string
	state  string
	limit  int
}

func (f *recordFilterFlags) add(fs *pflag.FlagSet, withLimit bool) {
	fs.StringVar(&f.search, "search", "", "only boards whose serial number contains this (3 characters or more; shorter: begins with it) or whose registration ID begins with it, in any case")
	fs.StringVar(&f.result, "result", "", "only boards that passed, failed, or are in_progress (a run that never ended: provision them again)")
	fs.StringVar(&f.state, "state", "", "only enrollments in this upload state: pending, in_flight, uploaded, failed or conflict")
	if withLimit {
		fs.IntVar(&f.limit, "limit", 100, "show at most this many, newest first (0 for all)")
	}
}

func (f *recordFilterFlags) filter() (records.Filter, error) {
	switch f.result {
	case "", records.ResultPassed, records.ResultFailed, records.ResultInProgress:
	default:
		return records.Filter{}, usageError{fmt.Errorf("--result %q: want %s, %s or %s", f.result, records.ResultPassed, records.ResultFailed, records.ResultInProgress)}
	}
	switch st := enroll.State(f.state); st {
	case "", enroll.StatePending, enroll.StateInFlight, enroll.StateUploaded, enroll.StateFailed, enroll.StateConflict:
	default:
		return records.Filter{}, usageError{fmt.Errorf("--state %q: want pending, in_flight, uploaded, failed or conflict", f.state)}
	}
	if f.limit < 0 {
		return records.Filter{}, usageError{fmt.Errorf("--limit %d: want 0 (all) or more", f.limit)}
	}
	return records.Filter{Search: f.search, Result: f.result, UploadState: enroll.State(f.state), Limit: f.limit}, nil
}

// openRecords opens the records database read-only, beside a station
// that may be running. A missing file is an error, not a new database;
// so is a file that is not a records database (both exit 2: --db names
// the wrong file).
func openRecords(ctx context.Context, path string) (records.DB, error) {
	if records.IsPostgresURL(path) {
		s, err := records.OpenURLReadOnly(ctx, path)
		if err != nil {
			return nil, storeError(fmt.Errorf("--db: %w", err), true)
		}
		return s, nil
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, usageError{fmt.Errorf("--db %s: no records database there; the station makes it with its first board (give --db the station's records file)", path)}
	}
	s, err := records.OpenURLReadOnly(ctx, path)
	if errors.Is(err, records.ErrNotRecords) {
		return nil, usageError{fmt.Errorf("--db %s: %w (give --db the station's records file)", path, err)}
	}
	if err != nil {
		return nil, fmt.Errorf("--db %s: %w", path, err)
	}
	return s, nil
}

func recordsCmd(g *globals) *cobra.Command {
	var db string
	cmd := &cobra.Command{
		Use:   "records",
		Short: "List, show and export the station's records of provisioned boards",
		Long: `Read the station's records: one per board, with its identity, what was
written to it, where and by whom, whether it passed, and where its DPS
enrollment stands in the upload queue (pending, in_flight, uploaded,
failed, conflict). The database is opened read-only: these commands work
while the station runs, and never create a database.

Exit status: 0 on success; 1 when the record is not there, the database
cannot be read, or export finds no enrollment to write; 2 when the
command line is wrong or --db names no records database.`,
	}
	cmd.PersistentFlags().StringVar(&db, "db", defaultRecordsDB, "the station's records database")
	cmd.AddCommand(recordsListCmd(g, &db), recordsShowCmd(g, &db), recordsExportCmd(g, &db), recordsLabelCmd(g, &db), recordsStatsCmd(g, &db))
	return cmd
}

// recordLine is one board in `records list --json`.
type recordLine struct {
	Serial         string       `json:"serial"`
	Model          string       `json:"model,omitempty"`
	Attestation    string       `json:"attestation"`
	RegistrationID string       `json:"registrationId,omitempty"`
	DeviceID       string       `json:"deviceId,omitempty"`
	Result         string       `json:"result"`
	Message        string       `json:"message,omitempty"`
	FailedStep     string       `json:"failedStep,omitempty"`
	Cause          string       `json:"cause,omitempty"`
	UploadState    enroll.State `json:"uploadState,omitempty"`
	UploadError    string       `json:"uploadError,omitempty"`
	Station        string       `json:"station,omitempty"`
	Line           string       `json:"line,omitempty"`
	Slot           string       `json:"slot,omitempty"`
	Operator       string       `json:"operator,omitempty"`
	WorkOrder      string       `json:"workOrder,omitempty"`
	CreatedAt      time.Time    `json:"createdAt"`
	UpdatedAt      time.Time    `json:"updatedAt"`
}

func recordsListCmd(g *globals, db *string) *cobra.Command {
	var f recordFilterFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List boards, most recently provisioned first (JSON lines with --json)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			filter, err := f.filter()
			if err != nil {
				return err
			}
			s, err := openRecords(cmd.Context(), *db)
			if err != nil {
				return err
			}
			defer s.Close()
			rs, err := s.List(cmd.Context(), filter)
			if err != nil {
				return err
			}
			if g.json {
				enc := json.NewEncoder(g.stdout)
				for _, r := range rs {
					if err := enc.Encode(recordLine{Serial: r.Serial, Model: r.Model, Attestation: r.Attestation,
						RegistrationID: r.RegistrationID, DeviceID: r.DeviceID, Result: r.Result, Message: r.Message,
						FailedStep: r.FailedStep, Cause: r.Cause,
						UploadState: r.UploadState, UploadError: r.UploadError, Station: r.Station, Line: r.Line,
						Slot: r.Slot, Operator: r.Operator, WorkOrder: r.WorkOrder, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}); err != nil {
						return err
					}
				}
				return nil
			}
			if len(rs) == 0 {
				fmt.Fprintf(g.stderr, "%s: no records match\n", *db)
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "UPDATED\tSERIAL\tRESULT\tATTESTATION\tREGISTRATION ID\tUPLOAD\tWHERE\tOPERATOR")
			for _, r := range rs {
				// Text from boards and operators is escaped: it must not
				// forge a line or drive the terminal.
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.UpdatedAt.Local().Format("2006-01-02 15:04:05"), textsafe.Escape(r.Serial),
					resultWithStep(&r), r.Attestation, dash(textsafe.Escape(r.RegistrationID)), dash(r.UploadText()),
					dash(textsafe.Escape(slotOf(&r))), dash(textsafe.Escape(r.Operator)))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if filter.Limit > 0 && len(rs) == filter.Limit {
				fmt.Fprintf(g.stderr, "(the newest %d; --limit 0 shows all)\n", filter.Limit)
			}
			return nil
		},
	}
	f.add(cmd.Flags(), true)
	return cmd
}

// recordShow is `records show --json`.
type recordShow struct {
	Record *records.Record      `json:"record"`
	Audit  []records.AuditEntry `json:"audit"`
}

func recordsShowCmd(g *globals, db *string) *cobra.Command {
	return &cobra.Command{
		Use:   "show SERIAL|REGISTRATION-ID",
		Short: "Show a board's record and its audit trail",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := openRecords(ctx, *db)
			if err != nil {
				return err
			}
			defer s.Close()
			r, err := s.Get(ctx, args[0])
			var audit []records.AuditEntry
			switch {
			case errors.Is(err, records.ErrNotFound):
				// A board refused as a clone has audit rows, no record.
				if audit, err = s.Audit(ctx, args[0]); err != nil {
					if errors.Is(err, records.ErrNotFound) {
						return fmt.Errorf("%s: no board has serial number or registration ID %q", *db, args[0])
					}
					return err
				}
			case err != nil:
				return err
			default:
				if audit, err = s.Audit(ctx, r.Serial); err != nil {
					return err
				}
			}
			if g.json {
				return printResult(g, recordShow{Record: r, Audit: audit})
			}
			if r != nil {
				printRecord(g, r)
			} else {
				fmt.Fprintf(g.stdout, "no record of %q; its audit trail:\n", args[0])
			}
			if len(audit) > 0 {
				fmt.Fprintln(g.stdout, "\naudit:")
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				for _, a := range audit {
					who := ""
					if a.Operator != "" {
						who = " (" + a.Operator + ")"
					}
					fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", a.Time.Local().Format("2006-01-02 15:04:05"), textsafe.Escape(a.Serial), a.Event,
						textsafe.Escape(a.Detail+who))
				}
				tw.Flush()
			}
			return nil
		},
	}
}

// printRecord prints every field of a record for a person.
func printRecord(g *globals, r *records.Record) {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, textsafe.Escape(v))
		}
	}
	line("serial", r.Serial)
	line("model", r.Model)
	line("hardware", r.HW)
	line("firmware", r.Firmware)
	line("attestation", r.Attestation)
	line("registration ID", r.RegistrationID)
	line("device ID", r.DeviceID)
	if len(r.EKPublic) > 0 {
		line("EK", fmt.Sprintf("%d bytes, sha256 %x", len(r.EKPublic), sha256.Sum256(r.EKPublic)))
	}
	if len(r.EKCertificate) > 0 || r.EKCertStatus != "" {
		line("EK certificate", strings.TrimSpace(fmt.Sprintf("%s %s", r.EKCertStatus, withLabel("fingerprint", r.EKFingerprint))))
	} else {
		line("EK fingerprint", r.EKFingerprint)
	}
	if r.CertificateChain != "" || r.CertSerial != "" {
		v := "serial " + dash(r.CertSerial)
		if !r.CertNotAfter.IsZero() {
			v += ", valid until " + r.CertNotAfter.UTC().Format(time.RFC3339)
		}
		line("certificate", v)
	}
	if r.ConfigPath != "" || len(r.ConfigSHA256) > 0 {
		line("configuration", strings.TrimSpace(fmt.Sprintf("%s sha256 %x", r.ConfigPath, r.ConfigSHA256)))
	}
	line("provisioned at", slotOf(r))
	line("operator", r.Operator)
	line("work order", r.WorkOrder)
	res := r.ResultText()
	if r.Result == records.ResultInProgress {
		res += ": the station began to provision it and did not finish; provision it again before it ships"
	}
	if r.Message != "" {
		res += ": " + r.Message
	}
	line("result", res)
	// The engineer's cause, apart from the operator's words; a run in
	// progress shows those of the failed run before it.
	line("failed step", r.FailedStep)
	line("cause", r.Cause)
	switch {
	case r.Enrollment == nil:
		line("enrollment", "none (nothing to enroll for this board)")
	default:
		v := r.UploadText()
		if v == string(records.StateHeld) {
			v = "pending, held until the board passes again"
		}
		if r.UploadError != "" {
			v += ": " + r.UploadError
		}
		if r.ETag != "" {
			v += " (etag " + r.ETag + ")"
		}
		line("enrollment", v)
	}
	if reg := r.Registration; reg != nil {
		v := reg.State
		if reg.AssignedHub != "" {
			v += " to " + reg.AssignedHub + " as " + reg.DeviceID
		}
		if reg.Error != "" {
			v += ": " + reg.Error
		}
		line("registration", v+", "+reg.At.Local().Format("2006-01-02 15:04:05 MST"))
	}
	line("created", r.CreatedAt.Local().Format("2006-01-02 15:04:05 MST"))
	line("updated", r.UpdatedAt.Local().Format("2006-01-02 15:04:05 MST"))
	tw.Flush()
	if r.CertificateChain != "" {
		fmt.Fprintln(g.stdout, "\ncertificate chain:")
		for l := range strings.Lines(r.CertificateChain) {
			fmt.Fprintln(g.stdout, textsafe.Escape(strings.TrimRight(l, "\r\n")))
		}
	}
	if reg := r.Registration; reg != nil && reg.IssuedChain != "" {
		fmt.Fprintln(g.stdout, "\noperational certificate chain (issued by DPS):")
		for l := range strings.Lines(reg.IssuedChain) {
			fmt.Fprintln(g.stdout, textsafe.Escape(strings.TrimRight(l, "\r\n")))
		}
	}
}

func recordsExportCmd(g *globals, db *string) *cobra.Command {
	var f recordFilterFlags
	var format, out string
	cmd := &cobra.Command{
		Use:   "export --format csv|json [--out FILE]",
		Short: "Write the boards' enrollments as a file `zerotouch upload --from` takes",
		Long: `Write the enrollments of the recorded boards (those that have one: group
modes enroll nothing per board) as a JSON array or a CSV, the file
'zerotouch upload --from' reads, in the order the boards were first
recorded. CSV cannot hold every enrollment field (an initial twin, for
one): such an enrollment is an error, and JSON holds it.

When the selected boards have no enrollment of their own to export (a
symmetric-key line's boards enroll through the DPS enrollment group), it
writes nothing, not even a header, leaves a file already at --out as it
was, says why, and exits 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != records.FormatCSV && format != records.FormatJSON {
				return usageError{fmt.Errorf("--format %q: want %s or %s", format, records.FormatCSV, records.FormatJSON)}
			}
			if g.json && (out == "" || out == "-") {
				// stdout would carry the file, not JSON lines.
				return usageError{errors.New("--json: name the export's file with --out; standard output then carries one JSON line saying what was written")}
			}
			filter, err := f.filter()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := openRecords(ctx, *db)
			if err != nil {
				return err
			}
			defer s.Close()
			var buf bytes.Buffer
			n, err := s.Export(ctx, &buf, format, filter)
			if err != nil {
				return err
			}
			if n == 0 {
				// Nothing is written: a header-only file would pass for
				// work to upload, and a file already at --out stays.
				return errNothingToExport(*db, out)
			}
			if out == "" || out == "-" {
				_, err := g.stdout.Write(buf.Bytes())
				return err
			}
			// Symmetric keys may be in it: private to its owner.
			if err := atomicfile.Write(out, buf.Bytes(), 0o600); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
			if g.json {
				return printResult(g, map[string]any{"file": out, "format": format, "enrollments": n})
			}
			fmt.Fprintf(g.stderr, "%s: %d enrollments\n", out, n)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&format, "format", "", "csv or json")
	fs.StringVar(&out, "out", "", "write to this file (default: standard output)")
	f.add(fs, false)
	return cmd
}

// errNothingToExport is the error of an export that found no per-board
// enrollment among the records selected.
func errNothingToExport(db, out string) error {
	where := "nothing written"
	if out != "" && out != "-" {
		where = "nothing written to " + out
	}
	return fmt.Errorf("%s: no board selected has an enrollment of its own to export (%s): boards of a group mode "+
		"(symmetric-key) enroll through the DPS enrollment group, so there is nothing to upload per board; "+
		"boards that have not passed are not exported either", db, where)
}

// resultWithStep is a record's result for the list: the step a failed
// run failed in beside it.
func resultWithStep(r *records.Record) string {
	if r.Result == records.ResultFailed && r.FailedStep != "" {
		return r.ResultText() + " at " + textsafe.Escape(r.FailedStep)
	}
	return r.ResultText()
}

// slotOf says where a board was provisioned: "st-1 line-a slot 2".
func slotOf(r *records.Record) string {
	var parts []string
	for _, p := range []string{r.Station, r.Line} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if r.Slot != "" {
		parts = append(parts, "slot "+r.Slot)
	}
	return strings.Join(parts, " ")
}

func withLabel(label, v string) string {
	if v == "" {
		return ""
	}
	return label + " " + v
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
