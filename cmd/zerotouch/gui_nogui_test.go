//go:build nogui

package main

import "testing"

// windowless: without the window there is nothing to draw.
func windowless(*testing.T) {}
