//go:build nogui

package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"

	"zerotouch/station"
)

// withWindow: this build has no window.
const withWindow = false

func hasDisplay() bool { return false }

// demoWindow is never called without the window.
func demoWindow(context.Context, *demoRun, time.Duration) (station.Summary, error) {
	return station.Summary{}, errors.New("this zerotouch was built without the window (-tags nogui)")
}

func guiCmd(g *globals) *cobra.Command {
	var hash bool
	cmd := &cobra.Command{
		Use:   "gui",
		Short: "Not in this build (built with -tags nogui): use zerotouch run",
		Long: `This zerotouch was built without the window (-tags nogui): use zerotouch run.

--hash-password still reads a password on stdin and prints the bcrypt hash
to put in gui.supervisor_password_hash, which zerotouch run checks the
supervisor's password against.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hash {
				return hashPassword(g, cmd.InOrStdin())
			}
			return usageError{errors.New("this zerotouch was built without the window (-tags nogui): use zerotouch run")}
		},
	}
	cmd.Flags().BoolVar(&hash, "hash-password", false, "print the bcrypt hash of the password read on stdin, and exit")
	cmd.Flags().String("config", "station.yaml", "not used in this build")
	return cmd
}
