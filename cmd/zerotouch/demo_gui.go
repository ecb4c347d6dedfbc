//go:build !nogui

package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"fyne.io/fyne/v2"

	"zerotouch/enroll"
	"zerotouch/station"
	"zerotouch/ui"
)

// demoWindow runs the demo's lines in the operator's window, signed in as
// "demo", until the window is closed or ctx ends. With closeAfter > 0 it
// closes the window that long after the lines are done and their
// enrollments uploaded.
func demoWindow(ctx context.Context, d *demoRun, closeAfter time.Duration) (station.Summary, error) {
	bg := d.bg
	var win atomic.Pointer[ui.Window]
	show := func(e station.Event) {
		if w := win.Load(); w != nil {
			w.Event(e)
		}
		bg.Event(e)
	}
	d.events.Store(&show)
	w := ui.New(newApp(), ui.Backend{Station: &d.lines, Config: d.window, Records: d.store, Uploads: bg, Poll: 500 * time.Millisecond})
	win.Store(w)
	w.Begin("demo", "WO-DEMO")

	// The watcher ends with the window: once the window is gone it must
	// not read the store, which closes after this returns.
	gone := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		closeWindow := func() { fyne.Do(func() { w.Window().Close() }) } // queued: never blocks
		select {
		case <-gone:
			return
		case <-ctx.Done():
			closeWindow()
			return
		case <-d.lines.finished:
		}
		bg.Now()
		up, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-gone:
				cancel()
			case <-up.Done():
			}
		}()
		if err := d.drained(up); err != nil && up.Err() == nil {
			d.g.log.Warn("demo: enrollments still queued", "err", err)
		}
		var after <-chan time.Time // nil: the operator closes the window
		if closeAfter > 0 && up.Err() == nil {
			d.say("done: closing the window in %v", closeAfter)
			after = time.After(closeAfter)
		}
		select {
		case <-gone:
		case <-ctx.Done():
			closeWindow()
		case <-after:
			closeWindow()
		}
	}()
	w.Window().ShowAndRun()
	close(gone)
	<-watched
	w.Close()
	return d.lines.summary(), nil
}

// drained waits, up to a minute, until no enrollment is queued or being
// uploaded.
func (d *demoRun) drained(ctx context.Context) error {
	for deadline := time.Now().Add(time.Minute); ; {
		c, err := d.store.Counts(ctx)
		if err != nil {
			return err
		}
		if c[enroll.StatePending]+c[enroll.StateInFlight] == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d enrollments still queued after a minute", c[enroll.StatePending]+c[enroll.StateInFlight])
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
