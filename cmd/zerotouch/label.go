package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"zerotouch/labels"
	"zerotouch/station"
	"zerotouch/station/records"
)

// labelFlags say where `records label` prints: the flags, else the
// station's configuration.
type labelFlags struct {
	config string
	dest   labels.PrinterConfig
}

func recordsLabelCmd(g *globals, db *string) *cobra.Command {
	var f labelFlags
	cmd := &cobra.Command{
		Use:   "label SERIAL|REGISTRATION-ID",
		Short: "Print a passed board's label again, from its record",
		Long: `Print a passed board's label again, from its record: when the printer was
off, or the label was lost. It goes where --dir, --zpl or --lp says, else
where the station's configuration (--config, default ./station.yaml) sends
labels (its labels section, or the folder gui.labels). The label carries
the board's serial number, registration ID and model, and the date its
record was last saved.

Exit status: 0 when the label was printed; 1 when the record cannot be read,
the board has not passed, or the printer did not take the label; 2 when the
command line or the configuration is wrong.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p, err := f.printer()
			if err != nil {
				return err
			}
			s, err := openRecords(ctx, *db)
			if err != nil {
				return err
			}
			defer s.Close()
			r, err := s.Get(ctx, args[0])
			if errors.Is(err, records.ErrNotFound) {
				return fmt.Errorf("%s: no board has serial number or registration ID %q", *db, args[0])
			}
			if err != nil {
				return err
			}
			if _, err := station.PrintRecordLabel(ctx, p, r); errors.Is(err, station.ErrNotPassed) {
				return err
			} else if err != nil {
				return fmt.Errorf("%w: check the printer, then run this again", err)
			}
			if g.json {
				return printResult(g, map[string]string{"serial": r.Serial, "printedTo": p.String()})
			}
			fmt.Fprintf(g.stdout, "label of board %s printed to %s\n", r.Serial, p)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.config, "config", "", "the station's configuration, for its labels section (default ./station.yaml when it exists)")
	fs.StringVar(&f.dest.Dir, "dir", "", "write the label's PNG and ZPL files to this folder")
	fs.StringVar(&f.dest.ZPL, "zpl", "", "send the ZPL to this printer over raw TCP: HOST or HOST:PORT (9100)")
	fs.StringVar(&f.dest.LP, "lp", "", "send the ZPL to this CUPS queue with lp -o raw")
	return cmd
}

// printer is where the label goes: the flags' destination, else the
// station's configuration's.
func (f *labelFlags) printer() (labels.Printer, error) {
	dest := f.dest
	if dest.Dir == "" && dest.ZPL == "" && dest.LP == "" {
		file := f.config
		if file == "" {
			if _, err := os.Stat("station.yaml"); err != nil {
				return nil, usageError{errors.New("say where the label goes: --dir, --zpl or --lp, or --config with the station's configuration")}
			}
			file = "station.yaml"
		}
		cfg, err := station.LoadConfig(file)
		if err != nil {
			return nil, usageError{err}
		}
		dest = cfg.Labels
	}
	if err := dest.Validate(); err != nil {
		return nil, usageError{err}
	}
	p, err := labels.NewPrinter(dest)
	if err != nil {
		return nil, fmt.Errorf("labels: %w", err)
	}
	return p, nil
}
