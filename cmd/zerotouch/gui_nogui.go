//go:build nogui

package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func guiCmd(*globals) *cobra.Command {
	return &cobra.Command{
		Use:   "gui",
		Short: "Not in this build (built with -tags nogui): use zerotouch run",
		RunE: func(*cobra.Command, []string) error {
			return usageError{errors.New("this zerotouch was built without the window (-tags nogui): use zerotouch run")}
		},
	}
}
