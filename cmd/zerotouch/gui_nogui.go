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

func guiCmd(*globals) *cobra.Command {
	return &cobra.Command{
		Use:   "gui",
		Short: "Not in this build (built with -tags nogui): use zerotouch run",
		RunE: func(*cobra.Command, []string) error {
			return usageError{errors.New("this zerotouch was built without the window (-tags nogui): use zerotouch run")}
		},
	}
}
