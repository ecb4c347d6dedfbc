package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"zerotouch/board"
	"zerotouch/ca"
	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/station"
	"zerotouch/station/records"
)

// demoMarker marks a folder the demo made, and may empty on its next run.
const demoMarker = ".zerotouch-demo"

// demoLine is one attestation mode of the demo and the boards it runs.
type demoLine struct {
	mode   string
	boards int
	tpm    string // the boards' TPM: sim (one process per board) or none
}

var demoLines = []demoLine{
	{station.ModeTPM, 2, board.TPMSim},
	{station.ModeX509TPM, 1, board.TPMSim},
	{station.ModeX509Keygen, 2, board.TPMNone},
	{station.ModeSymmetricKey, 2, board.TPMNone},
}

func demoCmd(g *globals) *cobra.Command {
	var dir string
	var baud int
	cmd := &cobra.Command{
		Use:   "demo [--dir ./zerotouch-demo]",
		Short: "Provision virtual boards in every attestation mode against a local DPS emulator",
		Long: `Run the whole station with no hardware and no cloud: a DPS emulator on
loopback, virtual boards on pseudo-terminals (their TPMs simulated), a
throwaway local CA and the records, all in --dir. Boards are provisioned in
each attestation mode (tpm, x509-tpm, x509-keygen, symmetric-key), their
enrollments uploaded to the emulator, and what happened is printed with
where to look.

Running it again empties the folder it made before (it refuses a folder
it did not make). The CA's password lives only in memory: the demo CA
cannot sign again after the run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), g, dir, baud)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "zerotouch-demo", "work folder for the emulator, the CA, the boards and the records")
	cmd.Flags().IntVar(&baud, "baud", 115200, "the virtual boards' line rate")
	return cmd
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

func runDemo(ctx context.Context, g *globals, dir string, baud int) error {
	if baud < 1200 {
		return usageError{fmt.Errorf("--baud %d: want 1200 or more", baud)}
	}
	if err := prepareDemoDir(dir); err != nil {
		return err
	}
	start := time.Now()
	say := func(format string, args ...any) {
		if !g.json {
			fmt.Fprintf(g.stdout, format+"\n", args...)
		}
	}

	// The cloud: a DPS emulator on loopback.
	dps, err := emulator.Start(ctx, "127.0.0.1:0", filepath.Join(dir, "dps"), emulator.Options{Logger: g.log})
	if err != nil {
		return fmt.Errorf("demo: start the DPS emulator: %w", err)
	}
	defer dps.Close()
	cs, err := enroll.ParseConnectionString(dps.ConnectionString)
	if err != nil {
		return err
	}
	client, err := enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: dps.CAFile, Logger: g.log})
	if err != nil {
		return err
	}
	say("DPS emulator on %s (CA %s)", dps.URL, dps.CAFile)

	// The factory: a CA whose password never leaves memory, and the
	// records.
	pw := make([]byte, 24)
	rand.Read(pw)
	issuer, err := ca.Init(ctx, filepath.Join(dir, "ca"), ca.InitOptions{Name: "zerotouch demo", Password: []byte(base64.StdEncoding.EncodeToString(pw)), Logger: g.log})
	if err != nil {
		return fmt.Errorf("demo: make the CA: %w", err)
	}
	defer issuer.Close()
	dbPath := filepath.Join(dir, "records.db")
	store, err := records.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	tmpl, err := fwtemplates.Builtin("json")
	if err != nil {
		return err
	}
	groupKey := make([]byte, 64)
	rand.Read(groupKey)

	// The DPS side of the group modes: an X.509 group for the CA's
	// intermediate and a symmetric-key group.
	chain, err := issuer.Chain(ctx)
	if err != nil {
		return err
	}
	groups := []enroll.EnrollmentGroup{
		{EnrollmentGroupID: "demo-symmetric-key", Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey,
			SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(groupKey)}}},
		{EnrollmentGroupID: "demo-x509-ca", Attestation: enroll.Attestation{Type: enroll.AttestationX509,
			X509: &enroll.X509Attestation{SigningCertificates: &enroll.X509Certificates{
				Primary: &enroll.X509Certificate{Certificate: string(ca.EncodePEM(chain[0]))}}}}},
	}
	for i := range groups {
		if _, err := client.CreateOrUpdateGroup(ctx, &groups[i], ""); err != nil {
			return fmt.Errorf("demo: enrollment group %s: %w", groups[i].EnrollmentGroupID, err)
		}
	}

	boardsDir := filepath.Join(dir, "boards")
	serial := 1
	var passed, failed int
	for _, dl := range demoLines {
		ports, stop, err := startDemoBoards(ctx, g, dl, boardsDir, baud, serial)
		serial += dl.boards
		if err != nil {
			stop()
			return fmt.Errorf("demo: start the %s boards: %w", dl.mode, err)
		}
		var y strings.Builder
		fmt.Fprintf(&y, "station: demo\nline: demo-%s\nattestation: %s\nid_scope: 0ne00DE0000\nbaud: %d\n", dl.mode, dl.mode, baud)
		fmt.Fprintf(&y, "ca:\n  dir: %s\nsymmetric_key:\n  group_id: demo-symmetric-key\nslots:\n", filepath.Join(dir, "ca"))
		for _, p := range ports {
			fmt.Fprintf(&y, "  - port: %s\n", p)
		}
		cfg, err := station.ParseConfig([]byte(y.String()))
		if err != nil {
			stop()
			return err
		}
		cfg.Records = dbPath
		st, err := station.New(cfg, station.Deps{Store: store, Template: tmpl, Issuer: issuer, GroupKey: groupKey, Logger: g.log,
			Events: func(e station.Event) { demoEvent(g, e) }})
		if err != nil {
			stop()
			return err
		}
		st.SetOperator("demo", "WO-DEMO")
		sum, err := st.Run(ctx, station.RunOptions{Once: true})
		stop()
		if err != nil {
			return err
		}
		say("%-14s %d passed, %d failed", dl.mode, sum.Passed, sum.Failed)
		passed += sum.Passed
		failed += sum.Failed
	}

	up, err := enroll.NewUploader(enroll.UploaderConfig{Client: client, Queue: store, Quota: 1000, Logger: g.log})
	if err != nil {
		return err
	}
	stats, upErr := up.Run(ctx)
	say("uploaded %d individual enrollments to the DPS emulator in %d requests", stats.Uploaded, stats.Requests)

	list, err := store.List(ctx, records.Filter{})
	if err != nil {
		return err
	}
	say("\n%-10s %-14s %-54s %s", "SERIAL", "ATTESTATION", "REGISTRATION ID", "ENROLLMENT")
	for i := len(list) - 1; i >= 0; i-- {
		r := list[i]
		en := "group " + map[string]string{station.ModeSymmetricKey: "demo-symmetric-key"}[r.Attestation]
		if r.Enrollment != nil {
			en = string(r.UploadState)
		}
		say("%-10s %-14s %-54s %s", r.Serial, r.Attestation, r.RegistrationID, en)
	}
	abs, _ := filepath.Abs(dir)
	say("\n%d boards passed, %d failed in %.1f s.", passed, failed, time.Since(start).Seconds())
	say("Records:        zerotouch records list --db %s", filepath.Join(abs, "records.db"))
	say("DPS emulator:   zerotouch dps-emulator --data %s   (serves the same enrollments again)", filepath.Join(abs, "dps"))
	say("Board configs:  %s/SERIAL/fs%s", filepath.Join(abs, "boards"), station.DefaultConfigPath)
	if g.json {
		printResult(g, map[string]any{"passed": passed, "failed": failed, "uploaded": stats.Uploaded, "dir": abs, "records": filepath.Join(abs, "records.db")})
	}
	switch {
	case failed > 0:
		return fmt.Errorf("demo: %d boards failed", failed)
	case upErr != nil:
		return fmt.Errorf("demo: upload: %w", upErr)
	}
	return nil
}

// startDemoBoards starts a demo line's boards: with the TPM simulator
// each in a process of its own (the simulator is one per process), else
// in this one. stop ends them.
func startDemoBoards(ctx context.Context, g *globals, dl demoLine, root string, baud, first int) (ports []string, stop func(), err error) {
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
		f := boardFlags{count: 1, prefix: "ZTD", index: first + i, baud: baud, tpm: dl.tpm, bufSize: 4096, fw: "1.0.0"}
		serial := f.serial(0)
		if dl.tpm == board.TPMSim {
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
		b, err := board.Start(board.Config{Serial: serial, Dir: bdir, TPM: dl.tpm, Baud: baud, Logger: g.log})
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
