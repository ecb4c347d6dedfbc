package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
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
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)

	jsonOut := wantsJSON(args)
	defaultHelp := root.HelpFunc()
	root.SetHelpFunc(func(c *cobra.Command, args []string) {
		if !jsonOut {
			defaultHelp(c, args)
			return
		}
		// One JSON object, so that a line script asking for help with
		// --json still reads nothing but JSON.
		var b strings.Builder
		out := c.OutOrStdout()
		c.SetOut(&b)
		defaultHelp(c, args)
		c.SetOut(out)
		json.NewEncoder(g.stdout).Encode(struct {
			Command string `json:"command"`
			Help    string `json:"help"`
		}{c.CommandPath(), b.String()})
	})

	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	return reportError(stderr, jsonOut || g.json, cmd, err)
}

// newRoot makes zerotouch's command tree on g.
func newRoot(g *globals) *cobra.Command {
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
     zerotouch upload sends them later
  5  (run) no board ran: every slot was empty; the message names each
     slot and why

With --json, every line on stdout and stderr is JSON; an error ends with
one record on stderr: {"time", "level":"ERROR", "msg": what the exit status
means, "command", "err": the whole error, "exit": the status, and on exit
2 "hint": the help to read}.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
				return usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)}
			}
			opts := &slog.HandlerOptions{Level: level}
			if g.json {
				g.log = slog.New(slog.NewJSONHandler(g.stderr, opts))
			} else {
				g.log = slog.New(slog.NewTextHandler(g.stderr, opts))
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().BoolVar(&g.json, "json", false, "print results and logs as JSON lines (for line automation)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(boardCmd(g), linkCmd(g), tpmCmd(g), caCmd(g), uploadCmd(g), dpsEmulatorCmd(g), imageToolCmd(g))
	root.AddCommand(recordsCmd(g), runCmd(g), demoCmd(g), guiCmd(g), configCmd(g))
	root.AddCommand(dpsCmd(g))
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command that only groups others
// (zerotouch ca, records, link...) refuse an argument that names none of
// them, exit 2, where cobra would print the help and exit 0; given
// nothing, such a command prints its help.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if c.Run != nil || c.RunE != nil || !c.HasSubCommands() {
		return
	}
	c.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
		}
		return nil
	}
	c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
}

// wantsJSON reports whether args ask for --json, read before cobra parses
// them so that a command line cobra refuses (an unknown flag before
// --json) is still answered in JSON.
func wantsJSON(args []string) bool {
	on := false
	for _, a := range args {
		if a == "--" {
			break
		}
		v, ok := strings.CutPrefix(a, "--json")
		switch {
		case !ok:
		case v == "":
			on = true
		case v[0] == '=':
			if b, err := strconv.ParseBool(v[1:]); err == nil {
				on = b
			}
		}
	}
	return on
}

// reportError prints a command's error on stderr and returns the exit
// code. As text: "zerotouch: ERR", and for a usage error the help to
// read. With --json: one JSON line, the same shape as the log's records:
//
//	{"time":"...","level":"ERROR","msg":"the command line or the configuration is wrong",
//	 "command":"zerotouch upload","err":"--batch 11: DPS takes 1 to 10 enrollments a request",
//	 "exit":2,"hint":"zerotouch upload --help"}
//
// msg is the exit code's meaning (exitMeaning), err the whole error,
// hint only on usage errors.
func reportError(stderr io.Writer, jsonOut bool, cmd *cobra.Command, err error) int {
	code := exitCode(err)
	path := "zerotouch"
	if cmd != nil {
		path = cmd.CommandPath()
	}
	if !jsonOut {
		fmt.Fprintf(stderr, "zerotouch: %v\n", err)
		if code == exitUsage {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", path)
		}
		return code
	}
	attrs := []any{"command", path, "err", err.Error(), "exit", code}
	if code == exitUsage {
		attrs = append(attrs, "hint", path+" --help")
	}
	slog.New(slog.NewJSONHandler(stderr, nil)).Error(exitMeaning(code), attrs...)
	return code
}

// exitMeaning says what an exit code means, for the msg of an error's
// JSON record.
func exitMeaning(code int) string {
	switch code {
	case exitUsage:
		return "the command line or the configuration is wrong"
	case exitSetup:
		return "the set-up cannot work"
	case exitPending:
		return "enrollments still pending"
	case exitNoBoard:
		return "no board was provisioned"
	}
	return "failed"
}

// exitCode is the exit status for a command's error.
func exitCode(err error) int {
	var ue usageError
	var se setupError
	var pe pendingError
	switch {
	case errors.As(err, &ue) || isCobraUsage(err):
		return exitUsage
	case errors.As(err, &se):
		return exitSetup
	case errors.As(err, &pe):
		return exitPending
	case errors.As(err, new(noBoardError)):
		return exitNoBoard
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
