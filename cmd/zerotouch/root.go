package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"
)

// Exit codes line scripts can branch on. README.md's Commands section and
// each command's help list the ones it uses.
const (
	exitOK      = 0
	exitFailed  = 1 // the job ran and something in it failed
	exitUsage   = 2 // the command line or the configuration is wrong
	exitSetup   = 3 // the set-up cannot work: the CA, or DPS's certificate, name or credentials
	exitPending = 4 // the job is done but enrollments are still pending: upload them later
)

// usageError marks errors in the command line itself.
type usageError struct{ error }

// setupError marks a set-up that cannot work however often it is tried:
// the CA folder missing, its password wrong, the DPS server's certificate
// not trusted, its host name unknown, its key refused.
type setupError struct{ error }

func (e setupError) Unwrap() error { return e.error }

// pendingError marks a job that ended with enrollments still queued for
// DPS: the next upload carries them.
type pendingError struct{ error }

func (e pendingError) Unwrap() error { return e.error }

// globals are the flags every command shares.
type globals struct {
	json     bool
	logLevel string
	stdout   io.Writer
	stderr   io.Writer // safe for concurrent use
	term     bool      // stderr is a terminal
	log      *slog.Logger
}

// lockedWriter serialises writes from the logger, the commands and the
// board processes' output copiers.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Run runs zerotouch with args and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: &lockedWriter{w: stdout}, stderr: &lockedWriter{w: stderr}}
	if f, ok := stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			g.term = true
		}
	}
	stderr = g.stderr
	root := &cobra.Command{
		Use:   "zerotouch",
		Short: "Provision boards for Azure IoT Hub DPS from a factory station",
		Long: `Provision boards for Azure IoT Hub DPS from a factory station.

Exit status, for every command (each command's help says which it uses):
  0  done
  1  the job ran and something in it failed (the message names the board,
     the step and its answer, or the enrollments)
  2  the command line or the configuration is wrong; nothing was done
  3  the set-up cannot work, however often it is tried: no CA in the CA
     folder, a wrong or missing CA password, the DPS server's certificate
     not trusted, its host name unknown, or its key refused; mend it first
  4  the job is done but enrollments are still pending: DPS did not take
     them in time (or, after a set-up error found on the way, could not);
     zerotouch upload sends them later`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
				return usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)}
			}
			opts := &slog.HandlerOptions{Level: level}
			if g.json {
				g.log = slog.New(slog.NewJSONHandler(stderr, opts))
			} else {
				g.log = slog.New(slog.NewTextHandler(stderr, opts))
			}
			return nil
		},
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print results and logs as JSON lines (for line automation)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(boardCmd(g), linkCmd(g), tpmCmd(g), caCmd(g), uploadCmd(g), dpsEmulatorCmd(g))
	root.AddCommand(recordsCmd(g), runCmd(g), demoCmd(g), guiCmd(g))

	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintf(stderr, "zerotouch: %v\nRun 'zerotouch --help' for usage.\n", err)
		return exitUsage
	}
	if g.json && g.log != nil {
		g.log.Error("failed", "err", err.Error())
	} else {
		fmt.Fprintf(stderr, "zerotouch: %v\n", err)
	}
	return exitCode(err)
}

// exitCode is the exit status for a command's error other than a usage
// error.
func exitCode(err error) int {
	var se setupError
	var pe pendingError
	switch {
	case errors.As(err, &se):
		return exitSetup
	case errors.As(err, &pe):
		return exitPending
	}
	return exitFailed
}

// isCobraUsage recognises cobra's own command-line errors, which it does
// not type.
func isCobraUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.HasPrefix(s, "unknown flag") ||
		strings.Contains(s, "arg(s)") || strings.HasPrefix(s, "required flag")
}
