// Package ui is the operator's window: a Fyne view over the same station
// the headless mode runs. It holds no business logic. It shows the
// station's events (a card per slot, with a large PASS or FAIL, what to
// do next and, on demand, the engineer's cause), the shift's counters,
// the upload queue, the records and the configuration, and it turns the
// operator's taps and keys into calls on the station (Run, Retry, Skip,
// SetOperator), the uploader and the records store.
//
// Events reach the widgets through fyne.Do, from whichever goroutine the
// station calls Event on. The records store is only ever called from a
// goroutine of the window's own, never from Fyne's: its answers are shown
// through fyne.Do, so a slow database never holds the window. The
// station, flasher, tpm, ca and enroll packages never import Fyne
// (deps_test.go checks).
package ui

import (
	"context"
	"io"
	"time"

	"zerotouch/enroll"
	"zerotouch/station"
	"zerotouch/station/records"
)

// Station is the part of *station.Station the window drives.
type Station interface {
	Run(ctx context.Context, opts station.RunOptions) (station.Summary, error)
	Retry(slot string) error
	Skip(slot string) error
	SetOperator(operator, workOrder string)
}

// Uploads is the background uploader, as the window sees it.
type Uploads interface {
	// Now asks for an upload at once; it does not wait for it.
	Now()
	// LastError is the last upload's error, or nil.
	LastError() error
}

// Records is the records store as the window reads it; *records.Store
// satisfies it. The window calls it only from its own goroutines, so an
// implementation must be safe for concurrent use.
type Records interface {
	// Counts is how many enrollments are in each upload state,
	// records.StateHeld included.
	Counts(ctx context.Context) (map[enroll.State]int, error)
	// Page lists the records f selects, size at a time: cursor "" is
	// the first page, and the page's Next ("" on the last page) the
	// cursor of the one after.
	Page(ctx context.Context, f records.Filter, cursor string, size int) (records.Page, error)
	// Audit is a board's audit trail, oldest first.
	Audit(ctx context.Context, key string) ([]records.AuditEntry, error)
	// Export writes the per-board enrollments f selects and returns how
	// many it wrote: 0 when the boards enroll through a group.
	Export(ctx context.Context, w io.Writer, format string, f records.Filter) (int, error)
}

var _ Records = (*records.Store)(nil)

// Backend is what a Window shows and drives. Station, Config and Records
// are required; Uploads is nil when no DPS connection string is set.
type Backend struct {
	Station    Station
	Config     *station.Config
	ConfigFile string // the YAML file, shown and (unlocked) edited in Settings
	Records    Records
	Uploads    Uploads
	// Poll is how often the upload queue's counts are read; default 2 s.
	Poll time.Duration
	Now  func() time.Time
}

// UploadStatus is what the upload panel shows.
type UploadStatus struct {
	Enabled                                             bool
	Pending, InFlight, Uploaded, Failed, Conflict, Held int
	LastError                                           string
}

func (b *Backend) uploadStatus(ctx context.Context) (UploadStatus, error) {
	c, err := b.Records.Counts(ctx)
	if err != nil {
		return UploadStatus{}, err
	}
	st := UploadStatus{Enabled: b.Uploads != nil, Pending: c[enroll.StatePending], InFlight: c[enroll.StateInFlight],
		Uploaded: c[enroll.StateUploaded], Failed: c[enroll.StateFailed], Conflict: c[enroll.StateConflict],
		Held: c[records.StateHeld]}
	if b.Uploads != nil {
		if err := b.Uploads.LastError(); err != nil {
			st.LastError = err.Error()
		}
	}
	return st, nil
}
