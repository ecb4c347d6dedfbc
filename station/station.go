// Package station is the provisioning pipeline: each fixture port is a
// slot; a board that appears on a slot is connected, identified by the
// line's attestation (its TPM's endorsement key, a key made in its TPM or
// by the board with a certificate from the station's CA, or a device key
// derived from the enrollment group's), given its firmware configuration
// (rendered from a template, written, read back and compared), committed,
// recorded and queued for enrollment. Every step emits an Event, for the
// operator's window and the headless JSON lines alike.
//
// The station never speaks HTTP or opens serial ports itself: flasher,
// tpm, ca, enroll and the records store do.
package station

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/google/go-tpm/tpm2"

	"zerotouch/ca"
	"zerotouch/enroll"
	"zerotouch/enroll/device"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/flasher"
	"zerotouch/internal/regid"
	"zerotouch/internal/textsafe"
	"zerotouch/labels"
	"zerotouch/station/records"
	"zerotouch/tpm"
)

// Steps of a board's run, in order.
const (
	StepConnect     = "connect"
	StepFlash       = "flash"
	StepIdentity    = "identity"
	StepCertificate = "certificate"
	StepRender      = "render"
	StepWrite       = "write"
	StepVerify      = "verify"
	StepCommit      = "commit"
	StepRecord      = "record"
	// With verify_registration: the board's enrollment reaching DPS, and
	// the board registering.
	StepEnrollment = "enrollment"
	StepRegister   = "register"
)

// Results an Event reports.
const (
	Running = "running"
	Passed  = "passed"
	Failed  = "failed"
	Skipped = "skipped" // the operator set a failed board aside (Skip); Step is empty
	Empty   = "empty"   // with RunOptions.Once: the slot has no board (Reason says why)
)

// Why a slot is empty (Event.Reason, EmptySlot.Reason).
const (
	EmptyNoPort    = "no-port"    // no such port: nothing plugged in, or the port is mistyped
	EmptySilent    = "silent"     // the port is there but nothing answers on it
	EmptyPortError = "port-error" // the slot's port rule matches several ports, or the ports cannot be listed
)

// EventSchema is the version of Event's JSON form, in every event's
// "schema" field: it changes when a field is removed or changes meaning.
const EventSchema = 1

// Event is what a slot reports as a board goes through the steps.
type Event struct {
	Schema         int       `json:"schema"` // EventSchema
	Time           time.Time `json:"time"`
	Slot           string    `json:"slot"`
	Port           string    `json:"port,omitempty"`
	Serial         string    `json:"serial,omitempty"`
	RegistrationID string    `json:"registrationId,omitempty"`
	Step           string    `json:"step"`
	Progress       float64   `json:"progress,omitempty"` // within the step, 0 to 1
	Result         string    `json:"result"`             // Running, Passed or Failed
	Message        string    `json:"message,omitempty"`  // for the operator: what happened, what to do
	Error          string    `json:"error,omitempty"`    // the cause, for the engineer
	// Elapsed is the seconds since the board's run began (0 outside one).
	Elapsed float64 `json:"elapsedSeconds,omitempty"`
	// Attempt counts this board's runs on this slot: 2 after one Retry.
	Attempt int `json:"attempt,omitempty"`
	// Done and Total count what Progress measures within Step (bytes of a
	// write or an image), when it is counted.
	Done  int64 `json:"done,omitempty"`
	Total int64 `json:"total,omitempty"`
	// Waiting, on a Running event, says what the slot is waiting for (the
	// board's answer to a command, DPS); a slot repeats it at least every
	// 2 s while it waits.
	Waiting string `json:"waiting,omitempty"`
	// Label, on a Passed event, says where the board's label went (a
	// folder, a printer); LabelError says why it did not, and Message
	// then tells the operator to print it again from the record.
	Label      string `json:"label,omitempty"`
	LabelError string `json:"labelError,omitempty"`
	// Reason, on an Empty event, says why the slot has no board:
	// EmptyNoPort, EmptySilent or EmptyPortError.
	Reason string `json:"reason,omitempty"`
	// Clone marks a board failed because its EK is recorded under another
	// serial number (records.ErrClone): a supervisor's matter.
	Clone bool `json:"clone,omitempty"`
	// Offline, while the factory's records database does not answer,
	// says so for the operator: "factory database offline: 3 boards
	// buffered" (Deps.Offline; see offline.go).
	Offline string `json:"offline,omitempty"`
}

// Recorder keeps the records: the SQLite store satisfies it.
type Recorder interface {
	// Begin marks the board's record in progress before the station
	// first changes the board; Save ends the run (see records.Store).
	Begin(ctx context.Context, r *records.Record) error
	Save(ctx context.Context, r *records.Record) (records.SaveResult, error)
	// InProgress lists the boards whose runs never ended.
	InProgress(ctx context.Context) ([]records.Record, error)
	// Get and Audit read a board's record and its audit trail (a board
	// refused as a possible clone is the supervisor's matter).
	Get(ctx context.Context, key string) (*records.Record, error)
	Audit(ctx context.Context, key string) ([]records.AuditEntry, error)
	// SetAside puts the operator's Skip of a failed board in the audit.
	SetAside(ctx context.Context, serial, slot, operator string) error
	SetRegistration(ctx context.Context, serial string, reg records.Registration, operator string) error
}

// Deps are what a Station works with, opened once at start by the caller.
type Deps struct {
	Store    Recorder
	Template *fwtemplates.Template
	Issuer   ca.Issuer    // X.509 modes
	GroupKey []byte       // symmetric-key mode: the group's primary key, decoded
	Vendors  *tpm.Vendors // TPM vendor roots, when configured
	// IssuerRoots are the roots the chains DPS issues must verify to
	// (operational_certificate.roots); nil: New reads them from the
	// configuration (ReadIssuerRoots), and without roots there a chain
	// must verify to the root it ends in.
	IssuerRoots *x509.CertPool
	Firmware    []byte      // the production image, when configured
	Events      func(Event) // called from the slots' goroutines; must not block
	// Enrolled, with verify_registration, waits until the board's
	// individual enrollment is in DPS: the board cannot register before.
	// Nil: the station does not wait.
	Enrolled func(ctx context.Context, serial string) error
	Logger   *slog.Logger //
	Now      func() time.Time
	// Headless words the operator's messages for a station with no
	// window (no Retry button).
	Headless bool
	// Printer prints each passed board's label; nil: no labels.
	Printer labels.Printer
	// Offline says, for the operator, that the records are being
	// buffered because the factory database does not answer ("" while
	// it does; records.Buffered.OfflineText). Nil: never offline.
	Offline func() string
}

// headlessWords rewords the operator's messages for a station with no
// window, where there is no Retry button: a board runs again when it is
// put back on its fixture (or another board is).
var headlessWords = strings.NewReplacer(
	"reseat the board and press Retry", "reseat the board to run it again",
	"reseat it and press Retry", "reseat it to run it again",
	"press Retry", "reseat the board to run it again",
	"Press Retry", "Reseat the board to run it again",
)

// Station runs the pipeline. It is safe for concurrent use: each slot
// runs its boards in its own goroutine.
type Station struct {
	cfg   *Config
	deps  Deps
	log   *slog.Logger
	regID *template.Template
	devID *template.Template
	// serials is the line's serial_pattern, nil when it has none.
	serials *regexp.Regexp
	// boardTimeout bounds one board's run (Config.BoardTimeout).
	boardTimeout time.Duration

	mu        sync.Mutex
	operator  string
	workOrder string
	waiting   map[string]chan string // slots whose failed board awaits Retry or Skip
	clones    map[string]bool        // slots whose waiting board failed as a possible clone
	attempts  map[string]slotAttempt // by slot: the last board's serial and its runs
	// supervised: the supervisor unlocked the station (Unlock), so a
	// board refused as a possible clone may run again.
	supervised bool
	// scans are the serial numbers scanned for each slot and not yet
	// taken (Scan); scanned wakes a slot waiting for one.
	scans   map[string][]string
	scanned chan struct{}
	// handed is, by slot, the serial number a stock board's run was
	// given before it failed: a Retry of the same board keeps it.
	handed map[string]string
}

// New checks that deps fit cfg and returns a Station.
func New(cfg *Config, deps Deps) (*Station, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil || deps.Template == nil {
		return nil, errors.New("station: a records store and a template are required")
	}
	switch cfg.Attestation {
	case ModeX509TPM, ModeX509Keygen, ModeX509StationKey:
		if deps.Issuer == nil {
			return nil, fmt.Errorf("station: attestation %s needs a CA", cfg.Attestation)
		}
	case ModeSymmetricKey:
		if len(deps.GroupKey) == 0 {
			return nil, errors.New("station: attestation symmetric-key needs the enrollment group's key")
		}
	}
	if cfg.Board.Profile == ProfileStock && cfg.Board.Serial.Source == SerialSequence {
		if _, ok := deps.Store.(Sequencer); !ok {
			return nil, errors.New("station: board.serial.source sequence needs a records store that hands out serial numbers")
		}
	}
	if err := CheckTemplate(cfg, deps.Template); err != nil {
		return nil, err
	}
	if deps.IssuerRoots == nil {
		roots, err := ReadIssuerRoots(cfg)
		if err != nil {
			return nil, err
		}
		deps.IssuerRoots = roots
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Events == nil {
		deps.Events = func(Event) {}
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	s := &Station{cfg: cfg, deps: deps, log: deps.Logger, boardTimeout: cfg.BoardTimeout}
	if s.boardTimeout == 0 {
		s.boardTimeout = DefaultBoardTimeout
	}
	if cfg.SerialPattern != "" {
		s.serials, _ = serialPattern(cfg.SerialPattern) // checked by Validate
	}
	s.regID, _ = identityTemplate(cfg.RegistrationID)
	if cfg.DeviceID != "" {
		s.devID, _ = identityTemplate(cfg.DeviceID)
	}
	return s, nil
}

// SetOperator sets the operator and work order put on the records from
// now on.
func (s *Station) SetOperator(operator, workOrder string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.operator, s.workOrder = operator, workOrder
}

// BoardError is a board's failure: the step it failed in, the operator's
// words and the cause.
type BoardError struct {
	Slot, Serial, Step string
	Message            string // for the operator
	Err                error
	// silent: nothing answered on the port at all (see emptyAnswer).
	silent bool
}

func (e *BoardError) Error() string {
	who := "slot " + e.Slot
	if e.Serial != "" {
		who += " board " + e.Serial
	}
	return fmt.Sprintf("%s: %s: %v", who, e.Step, e.Err)
}

func (e *BoardError) Unwrap() error { return e.Err }

// Result is a provisioned board.
type Result struct {
	Record *records.Record
	Saved  records.SaveResult
	// Unchecked says why the end-of-line registration check was not
	// made though the line asks for it ("" when it was, or is not asked):
	// the factory database was offline, so the board's enrollment could
	// not reach DPS before it is forwarded.
	Unchecked string
}

// run is one board's run on one slot.
type run struct {
	s     *Station
	slot  SlotConfig
	port  string
	start time.Time
	rec   *records.Record // once the board has said who it is
	// keepSerial: a stock board's serial number from a sequence is to be
	// written to board.serial.path.
	keepSerial bool

	// mu guards what follows: the run's goroutine and its heartbeat
	// both emit, and events leave in order.
	mu       sync.Mutex
	serial   string
	regID    string
	step     string
	attempt  int
	progress float64
	done     int64
	total    int64
	lastEmit time.Time
	waiting  string // what the run waits for besides its step's own; see waitFor
}

// waitFor says what the run waits for now, when it is not what its step
// waits for (the label printer, the records after a failure).
func (r *run) waitFor(what string) {
	r.mu.Lock()
	r.waiting = what
	r.mu.Unlock()
}

// heartbeat is how often a run that waits says so: well inside the 2 s
// a stuck board may go unreported.
const heartbeat = time.Second

func (r *run) emit(result string, progress float64, msg string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress = progress
	r.emitLocked(result, msg, "", err)
}

// emitLocked sends an event with the run's state; r.mu is held.
func (r *run) emitLocked(result, msg, waiting string, err error) {
	r.send(r.event(result, msg, waiting, err))
}

// send sends e; r.mu is held.
func (r *run) send(e Event) {
	r.lastEmit = time.Now()
	r.s.deps.Events(e)
}

// event is an event with the run's state; r.mu is held.
func (r *run) event(result, msg, waiting string, err error) Event {
	now := r.s.deps.Now()
	e := Event{Schema: EventSchema, Time: now, Slot: r.slot.Name, Port: r.port, Serial: r.serial, RegistrationID: r.regID,
		Step: r.step, Progress: r.progress, Result: result, Message: msg, Attempt: r.attempt, Waiting: waiting,
		Elapsed: now.Sub(r.start).Seconds(), Offline: r.s.Offline()}
	if r.total > 0 {
		e.Done, e.Total = r.done, r.total
	}
	if err != nil {
		e.Error = err.Error()
		e.Clone = errors.Is(err, records.ErrClone)
	}
	return e
}

// counted reports progress within the step as done of total bytes.
func (r *run) counted(done, total int) {
	if total <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done, r.total, r.progress = int64(done), int64(total), float64(done)/float64(total)
	r.emitLocked(Running, "", "", nil)
}

// part reports progress within the step as parts done of its total.
func (r *run) part(done, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress = float64(done) / float64(total)
	r.emitLocked(Running, "", "", nil)
}

func (r *run) begin(step string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.step, r.progress, r.done, r.total, r.waiting = step, 0, 0, 0, ""
	r.emitLocked(Running, "", "", nil)
}

// identify records who the board says it is, and which attempt on this
// slot this is.
func (r *run) identify(serial string) {
	n := r.s.attemptOf(r.slot.Name, serial)
	r.mu.Lock()
	r.serial, r.attempt = serial, n
	r.mu.Unlock()
}

func (r *run) setRegID(id string) {
	r.mu.Lock()
	r.regID = id
	r.mu.Unlock()
}

func (r *run) current() (serial, step string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.serial, r.step
}

// beat repeats the run's state, with what it waits for, whenever the run
// has said nothing for a heartbeat, until stop is closed: a board that
// stopped answering shows as waiting, with the time it has waited.
func (r *run) beat(stop <-chan struct{}) {
	t := time.NewTicker(heartbeat / 4)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		r.mu.Lock()
		if time.Since(r.lastEmit) >= heartbeat {
			what := r.waiting
			if what == "" {
				what = waitingFor(r.step, r.port)
			}
			r.emitLocked(Running, "", what, nil)
		}
		r.mu.Unlock()
	}
}

// waitingFor says, for a person, what a run at step waits for.
func waitingFor(step, port string) string {
	switch step {
	case StepConnect:
		return "the board to answer on " + port
	case StepFlash:
		return "the board to take the firmware image"
	case StepIdentity:
		return "the board (or its TPM) to answer an identity command"
	case StepCertificate:
		return "the CA to issue the certificate"
	case StepRender:
		return "the configuration to render"
	case StepWrite:
		return "the board to take the configuration file (and the device certificate)"
	case StepVerify:
		return "the board to read its configuration (and the device certificate) back"
	case StepCommit:
		return "the board to commit its configuration"
	case StepRecord:
		return "the records database"
	case StepEnrollment:
		return "DPS to take the board's enrollment"
	case StepRegister:
		return "the board to register with DPS"
	case StepReset:
		return "the board to restart"
	}
	return "the board"
}

// attemptOf counts runs of the board serial on slot: 1 for a board new
// to the slot, one more for each run of the same board after it.
func (s *Station) attemptOf(slot, serial string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attempts == nil {
		s.attempts = map[string]slotAttempt{}
	}
	a := s.attempts[slot]
	if a.serial == serial {
		a.n++
	} else {
		a = slotAttempt{serial: serial, n: 1}
	}
	s.attempts[slot] = a
	return a.n
}

type slotAttempt struct {
	serial string
	n      int
}

func (r *run) fail(msg string, err error) error {
	if r.s.deps.Headless {
		msg = headlessWords.Replace(msg)
	}
	serial, step := r.current()
	return &BoardError{Slot: r.slot.Name, Serial: serial, Step: step, Message: msg, Err: err}
}

// Provision runs one board, on the port at path, through every step. A
// failure is a *BoardError; a board that got far enough to say its serial
// is recorded as failed, with the operator's message (a record already
// passed keeps its identity and enrollment; see records.Store.Save),
// unless the failure was the record itself.
//
// The run is bounded by the line's board_timeout: a board still running
// then fails with an error wrapping ErrBoardTimeout. A fault inside the
// run (a panic) fails this board alone, recorded like any failure, with
// an error wrapping ErrInternal; the process and the other slots go on.
func (s *Station) Provision(ctx context.Context, slot SlotConfig, path string) (*Result, error) {
	r := &run{s: s, slot: slot, port: path, start: s.deps.Now()}
	bctx, cancel := context.WithTimeoutCause(ctx, s.boardTimeout, ErrBoardTimeout)
	stop, beaten := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(beaten)
		r.beat(stop)
	}()
	stopBeat := func() {
		close(stop)
		<-beaten // no heartbeat after the run's last event
	}
	res, err := r.guarded(bctx)
	cancel()
	if err != nil {
		var be *BoardError
		if !errors.As(err, &be) {
			be = r.fail("unexpected failure: call the line engineer", err).(*BoardError)
		}
		if ctx.Err() == nil && errors.Is(context.Cause(bctx), ErrBoardTimeout) {
			be.Message = fmt.Sprintf("this board took longer than the line allows (board_timeout %v) at step %s: set it aside and call the line engineer", s.boardTimeout, be.Step)
			be.Err = fmt.Errorf("%w (%v): %w", ErrBoardTimeout, s.boardTimeout, be.Err)
		}
		r.waitFor("the records database, to record the failure")
		r.recordFailure(ctx, be)
		stopBeat()
		s.log.Warn("board failed", "slot", slot.Name, "port", path, "serial", be.Serial, "step", be.Step,
			"message", be.Message, "err", be.Err)
		r.emit(Failed, 0, be.Message, be.Err)
		return nil, be
	}
	msg := "provisioned: take the board off the fixture"
	switch {
	case res.Record.Registration != nil:
		msg = "provisioned and registered with DPS: take the board off the fixture"
	case res.Unchecked != "":
		msg = "provisioned, its registration with DPS not checked (" + res.Unchecked + "): take the board off the fixture"
	}
	if s.deps.Printer != nil {
		r.waitFor("the label printer (" + s.deps.Printer.String() + ")")
	}
	where, lerr := s.printLabel(ctx, res.Record)
	stopBeat()
	if lerr != nil {
		msg += fmt.Sprintf("; its LABEL WAS NOT PRINTED (%s): check the printer, then print it again from the record (Records, or zerotouch records label %s)",
			s.deps.Printer, res.Record.Serial)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.step, r.progress = StepRecord, 1
	e := r.event(Passed, msg, "", nil)
	e.Label = where
	if lerr != nil {
		e.LabelError = lerr.Error()
	}
	r.send(e)
	return res, nil
}

// LabelFor is the label of a recorded board.
func LabelFor(rec *records.Record, at time.Time) labels.Label {
	return labels.Label{Serial: rec.Serial, RegistrationID: rec.RegistrationID, DeviceID: rec.DeviceID, Model: rec.Model, Time: at}
}

// ErrNotPassed means a label was asked for a board that has not passed.
var ErrNotPassed = errors.New("the board has not passed")

// PrintLabel prints the label of a recorded board again with the
// station's printer; see PrintRecordLabel. No printer configured is an
// error. Safe for concurrent use.
func (s *Station) PrintLabel(ctx context.Context, rec *records.Record) (string, error) {
	if s.deps.Printer == nil {
		return "", errors.New("this station prints no labels (labels in the configuration)")
	}
	where, err := PrintRecordLabel(ctx, s.deps.Printer, rec)
	if err == nil {
		s.log.Info("label printed again", "serial", rec.Serial, "printer", where)
	}
	return where, err
}

// PrintRecordLabel prints the label of a recorded board again on p, as
// it was printed when the board passed (its date, the record's last
// save): for a printer that was off, or a label lost. It returns where
// it went. A board that has not passed gets none (ErrNotPassed).
func PrintRecordLabel(ctx context.Context, p labels.Printer, rec *records.Record) (string, error) {
	if rec.Result != records.ResultPassed {
		return "", fmt.Errorf("board %s: %w (%s): a label is printed only for a passed board", rec.Serial, ErrNotPassed, rec.ResultText())
	}
	if err := p.Print(ctx, LabelFor(rec, rec.UpdatedAt)); err != nil {
		return "", fmt.Errorf("board %s: %w", rec.Serial, err)
	}
	return p.String(), nil
}

// printLabel prints a passed board's label: where it went, or why not.
// A label that cannot be printed is logged; the board stays passed.
func (s *Station) printLabel(ctx context.Context, rec *records.Record) (string, error) {
	if s.deps.Printer == nil {
		return "", nil
	}
	if err := s.deps.Printer.Print(ctx, LabelFor(rec, s.deps.Now())); err != nil {
		s.log.Warn("label not printed", "serial", rec.Serial, "printer", s.deps.Printer.String(), "err", err)
		return "", fmt.Errorf("label: %w", err)
	}
	return s.deps.Printer.String(), nil
}

// Errors a board's run can end in besides its steps' own.
var (
	// ErrBoardTimeout means the board's run took longer than the line's
	// board_timeout.
	ErrBoardTimeout = errors.New("the board's run took longer than board_timeout")
	// ErrInternal means the run ended in a fault of the station's own (a
	// panic), not of the board: the slot goes on with the next board.
	ErrInternal = errors.New("internal error in the station")
)

// guarded runs provision, turning a panic into a failure of this board
// alone, with its stack in the log.
func (r *run) guarded(ctx context.Context) (res *Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			serial, step := r.current()
			r.s.log.Error("a board's run ended in an internal error", "slot", r.slot.Name, "serial", serial, "step", step,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			res, err = nil, r.fail("the station hit an internal error on this board: set it aside and call the line engineer",
				fmt.Errorf("%w: %v", ErrInternal, p))
		}
	}()
	return r.provision(ctx)
}

// recordFailure records a failed board, best effort: the failure is
// already the operator's news.
//
// A board refused at the record step as a possible clone (or for another
// board's registration ID) is recorded failed without the identity it
// presented, which stays the other board's alone.
func (r *run) recordFailure(ctx context.Context, be *BoardError) {
	if r.rec == nil || ctx.Err() != nil {
		return
	}
	rec := *r.rec
	rec.Result, rec.Message, rec.Enrollment = Failed, be.Message, nil
	rec.Cause, rec.FailedStep = textsafe.Truncate(be.Err.Error(), 4096), be.Step
	if errors.Is(be.Err, records.ErrClone) || errors.Is(be.Err, records.ErrDuplicateID) {
		rec.RegistrationID, rec.DeviceID, rec.EKPublic, rec.EKCertificate, rec.EKCertStatus, rec.EKFingerprint = "", "", nil, nil, "", ""
		rec.CertificateChain, rec.CertSerial, rec.CertNotAfter = "", "", time.Time{}
	}
	if _, err := r.s.deps.Store.Save(ctx, &rec); err != nil {
		r.s.log.Warn("the failed board could not be recorded", "slot", r.slot.Name, "serial", rec.Serial, "err", err)
	}
}

func (r *run) provision(ctx context.Context) (*Result, error) {
	s, cfg := r.s, r.s.cfg
	r.begin(StepConnect)
	c, err := flasher.Open(ctx, r.port, flasher.Options{Name: r.slot.Name, Baud: cfg.Baud, Timeout: cfg.Timeout, Logger: s.log})
	if errors.Is(err, flasher.ErrProtocol) {
		return nil, r.fail("the board on this slot answers with nonsense (see the cause): set it aside and check its firmware", err)
	}
	if err != nil {
		be := r.fail("no board answers on this slot: seat the board and check its cable", err).(*BoardError)
		be.silent = errors.Is(err, flasher.ErrTimeout)
		return nil, be
	}
	defer c.Close()
	if cfg.Board.Profile == ProfileStock {
		return r.provisionStock(ctx, c)
	}
	id, err := c.Identity(ctx)
	if errors.Is(err, flasher.ErrBadIdentity) {
		return nil, r.fail("the board's serial number or identity breaks the rules (see the cause): set the board aside and call the line engineer", err)
	}
	if err != nil {
		return nil, r.fail("the board does not say who it is: is the provisioning firmware on it?", err)
	}
	if s.serials != nil && !s.serials.MatchString(id.Serial) {
		return nil, r.fail("the board's serial number is not of this line's form (serial_pattern): set the board aside and call the line engineer",
			fmt.Errorf("%w: serial number %q does not match serial_pattern %q", flasher.ErrBadIdentity, id.Serial, cfg.SerialPattern))
	}
	r.identify(id.Serial)
	if err := s.checkSuspect(ctx, id.Serial); err != nil {
		return nil, r.fail("this board was refused as a possible clone: it runs again only when the supervisor allows it (Unlock in the window; headless, the supervisor's password): set it aside for the supervisor", err)
	}
	info := BoardInfo{Serial: id.Serial, Model: id.Model, HW: id.HW, Firmware: id.FW}
	rec := &records.Record{Serial: id.Serial, Model: id.Model, HW: id.HW, Firmware: id.FW,
		Attestation: cfg.Attestation, Station: cfg.Station, Line: cfg.Line, Slot: r.slot.Name, ConfigPath: cfg.Template.Path}
	s.mu.Lock()
	rec.Operator, rec.WorkOrder = s.operator, s.workOrder
	s.mu.Unlock()

	// Before the first change to the board: its record says the run is in
	// progress until a verified commit says passed (records.Store.Begin).
	begun := *rec
	if err := s.deps.Store.Begin(ctx, &begun); err != nil {
		return nil, r.fail("the board's record could not be opened, so it was left untouched: call the line engineer", err)
	}
	r.rec = rec

	if cfg.Firmware != nil && len(s.deps.Firmware) > 0 && id.FW != cfg.Firmware.Version {
		r.begin(StepFlash)
		if err := r.flash(ctx, c); err != nil {
			return nil, err
		}
	}

	r.begin(StepIdentity)
	data := fwtemplates.Data{IDScope: cfg.IDScope, GlobalEndpoint: cfg.GlobalEndpoint, Serial: id.Serial, Model: id.Model,
		Custom: cfg.Template.Custom, CertificatePath: cfg.Template.CertificatePath, KeyURI: cfg.Template.KeyURI,
		OperationalCertificatePath: cfg.operationalCertificatePath()}
	var enr *enroll.Enrollment
	switch cfg.Attestation {
	case ModeTPM:
		enr, err = r.tpmIdentity(ctx, c, rec)
		data.Attestation = enroll.AttestationTPM
	case ModeX509TPM, ModeX509Keygen:
		enr, err = r.x509Identity(ctx, c, rec, info)
		data.Attestation = enroll.AttestationX509
		data.CertificateChain = rec.CertificateChain
	case ModeSymmetricKey:
		err = r.symmetricIdentity(rec, info)
		data.Attestation = enroll.AttestationSymmetricKey
		data.DerivedKey = derivedKey(s.deps.GroupKey, rec.RegistrationID)
	}
	if err != nil {
		return nil, err
	}
	if s.devID != nil {
		if rec.DeviceID, err = renderDeviceID(s.devID, info); err != nil {
			return nil, r.fail("this board's device ID is not one IoT Hub takes: call the line engineer (device_id in the configuration)", err)
		}
	}
	data.RegistrationID, data.DeviceID = rec.RegistrationID, rec.DeviceID
	if enr != nil {
		enr.DeviceID = rec.DeviceID
		enr.CredentialPolicyName = cfg.CredentialPolicy()
		rec.Enrollment = enr
	}

	r.begin(StepRender)
	conf, err := s.deps.Template.Render(data)
	if err != nil {
		return nil, r.fail("the configuration template failed for this board: call the line engineer", err)
	}
	sum := sha256.Sum256(conf)
	rec.ConfigSHA256 = sum[:]

	// The device certificate goes first to where the configuration says
	// the board keeps it, so that the reference holds when the board
	// commits: the write step writes both, the verify step reads both back.
	certPath, certPEM := certificateFile(cfg, rec)
	r.begin(StepWrite)
	total := len(certPEM) + len(conf)
	if certPath != "" {
		err = c.FileWrite(ctx, certPath, certPEM, false, func(done, _ int) { r.counted(done, total) })
		if err != nil {
			return nil, r.fail("writing the device certificate to the board failed: reseat the board and press Retry", err)
		}
	}
	err = c.FileWrite(ctx, cfg.Template.Path, conf, false, func(done, _ int) { r.counted(len(certPEM)+done, total) })
	if err != nil {
		return nil, r.fail("writing the configuration to the board failed: reseat the board and press Retry", err)
	}

	r.begin(StepVerify)
	if certPath != "" {
		if err := c.VerifyFile(ctx, certPath, certPEM); errors.Is(err, flasher.ErrVerify) {
			return nil, r.fail("the device certificate on the board is not what was written: press Retry; if it fails again, set the board aside", err)
		} else if err != nil {
			return nil, r.fail("reading the device certificate back failed: reseat the board and press Retry", err)
		}
	}
	if err := c.VerifyFile(ctx, cfg.Template.Path, conf); errors.Is(err, flasher.ErrVerify) {
		return nil, r.fail("the configuration on the board is not what was written: press Retry; if it fails again, set the board aside", err)
	} else if err != nil {
		return nil, r.fail("reading the configuration back failed: reseat the board and press Retry", err)
	}

	r.begin(StepCommit)
	if err := c.Commit(ctx, cfg.Template.Path, sum[:]); err != nil {
		return nil, r.fail("the board refused to commit its configuration: press Retry; if it fails again, set the board aside", err)
	}

	r.begin(StepRecord)
	saved, err := r.save(ctx, rec)
	if err != nil {
		return nil, err
	}
	if cfg.VerifyRegistration.Enabled {
		if off := s.Offline(); off != "" && rec.Enrollment != nil {
			// Its enrollment goes up once the buffered record is
			// forwarded: waiting for it here would only time out.
			s.log.Warn("registration check not made: the factory database is offline, so the board's enrollment cannot reach DPS yet",
				"slot", r.slot.Name, "serial", rec.Serial, "offline", off)
			return &Result{Record: rec, Saved: saved, Unchecked: "the factory database is offline"}, nil
		}
		if err := r.verifyRegistration(ctx, c, rec); err != nil {
			return nil, err
		}
	}
	return &Result{Record: rec, Saved: saved}, nil
}

// certificateFile returns the file on the board that the station writes
// the board's certificate chain to (PEM, the device certificate first),
// and the chain: on an X.509 line whose template.certificate_path is set,
// whether or not the template also holds the chain inline (aziot-toml
// only names the file; for the others the file is one more copy). Else
// it returns "" and nil.
func certificateFile(cfg *Config, rec *records.Record) (string, []byte) {
	if DPSAttestation(cfg.Attestation) != enroll.AttestationX509 || cfg.Template.CertificatePath == "" {
		return "", nil
	}
	return cfg.Template.CertificatePath, []byte(rec.CertificateChain)
}

// cloneHolder says which board holds the identity a clone presented, and
// where it was provisioned: " (board ZT-1 at station st-2, line line-5)".
func cloneHolder(err error) string {
	var ce *records.CloneError
	if !errors.As(err, &ce) || ce.OtherSerial == "" {
		return ""
	}
	where := ""
	switch {
	case ce.OtherStation != "" && ce.OtherLine != "":
		where = " at station " + ce.OtherStation + ", line " + ce.OtherLine
	case ce.OtherStation != "":
		where = " at station " + ce.OtherStation
	case ce.OtherLine != "":
		where = " on line " + ce.OtherLine
	}
	return " (board " + textsafe.Escape(ce.OtherSerial) + textsafe.Escape(where) + ")"
}

// RegistrationError is a board's registration that DPS did not assign:
// Reg says how it ended (State, the HTTP Status, DPS's ErrorCode).
type RegistrationError struct {
	Reg flasher.Registration
}

func (e *RegistrationError) Error() string {
	if e.Reg.Error != "" {
		return fmt.Sprintf("registration %s: %s", e.Reg.State, e.Reg.Error)
	}
	return "registration " + e.Reg.State
}

// verifyRegistration has the board register with DPS, as at its first
// boot, once its enrollment is there, and records the outcome.
func (r *run) verifyRegistration(ctx context.Context, c *flasher.Client, rec *records.Record) error {
	s := r.s
	vctx, cancel := context.WithTimeout(ctx, s.cfg.VerifyRegistration.Timeout)
	defer cancel()
	if rec.Enrollment != nil && s.deps.Enrolled != nil {
		r.begin(StepEnrollment)
		if err := s.deps.Enrolled(vctx, rec.Serial); err != nil {
			return r.fail("the board's enrollment has not reached DPS: check the upload queue and the DPS connection, then press Retry", err)
		}
	}
	r.begin(StepRegister)
	if p := s.cfg.operationalCertificatePath(); p != "" {
		// A chain left from an earlier run must not pass for this one.
		if err := c.FileWrite(vctx, p, nil, false, nil); err != nil {
			return r.fail(fmt.Sprintf("the board's operational certificate file %s could not be emptied before it registers: reseat the board and press Retry", p), err)
		}
	}
	if err := c.Register(vctx); err != nil {
		return r.fail("the board would not start registering with DPS: does its firmware support it? Press Retry", err)
	}
	reg, err := c.WaitRegistration(vctx, 100*time.Millisecond)
	if err != nil {
		return r.fail("the board did not finish registering with DPS in time: check its network and DPS, then press Retry", err)
	}
	return r.registered(ctx, c, rec, reg)
}

// registered records how the board's registration ended, and fails the
// board unless DPS assigned it. On a line with operational_certificate,
// an assigned board's issued chain is read from c, verified and recorded
// with the registration; a chain that is missing or does not verify
// fails the board, its registration still recorded.
func (r *run) registered(ctx context.Context, c *flasher.Client, rec *records.Record, reg flasher.Registration) error {
	s := r.s
	rr := records.Registration{State: reg.State, AssignedHub: reg.Hub, DeviceID: reg.DeviceID, Error: reg.Error, At: s.deps.Now()}
	var chainErr error
	if reg.State == flasher.RegAssigned && s.cfg.OperationalCertificate != nil {
		chainErr = r.verifyIssuedChain(ctx, c, rec, &rr)
	}
	if err := s.deps.Store.SetRegistration(ctx, rec.Serial, rr, rec.Operator); err != nil {
		return r.fail("the board's registration could not be recorded: call the line engineer", err)
	}
	rec.Registration = &rr
	if reg.DeviceID != "" && rec.DeviceID == "" {
		rec.DeviceID = reg.DeviceID
	}
	rerr := &RegistrationError{reg}
	switch {
	case reg.State == flasher.RegAssigned:
		return chainErr
	case reg.State == flasher.RegDisabled:
		return r.fail("DPS answered that this board's enrollment is disabled: set the board aside and call the line engineer", rerr)
	case reg.Status == http.StatusUnauthorized:
		return r.fail("DPS did not accept the board's identity (401): its enrollment is not this board's; set it aside for the line engineer", rerr)
	case reg.Status == http.StatusNotFound:
		if g, ok := s.cfg.EnrollmentGroup(); ok {
			return r.fail(fmt.Sprintf("DPS has no enrollment group %s for this board (404): create it with zerotouch dps group create, or let the station create it (%s), then press Retry",
				g.ID, g.CreateSetting), rerr)
		}
		return r.fail(fmt.Sprintf("DPS has no individual enrollment for registration ID %s (404): check the ID scope and that the board's enrollment was uploaded (zerotouch records, zerotouch upload), then press Retry",
			rec.RegistrationID), rerr)
	}
	return r.fail("the board could not register with DPS: press Retry; if it fails again, set it aside for the line engineer", rerr)
}

func (r *run) flash(ctx context.Context, c *flasher.Client) error {
	img := r.s.deps.Firmware
	err := c.ImageUpload(ctx, 0, img, r.counted)
	if err != nil {
		return r.fail("flashing the firmware failed: reseat the board and press Retry", err)
	}
	info, err := flasher.ParseImage(img)
	if err != nil {
		return r.fail("the firmware image is not an MCUboot image: call the line engineer", err)
	}
	if _, err := c.ImageSetPending(ctx, info.Hash, true); err != nil {
		return r.fail("the board would not take the new firmware: press Retry", err)
	}
	if err := c.Reset(ctx, false); err != nil {
		return r.fail("the board did not restart after flashing: press Retry", err)
	}
	if err := c.WaitReady(ctx, 200*time.Millisecond); err != nil {
		return r.fail("the board did not come back after flashing: reseat it and press Retry", err)
	}
	return nil
}

func (r *run) tpmIdentity(ctx context.Context, c *flasher.Client, rec *records.Record) (*enroll.Enrollment, error) {
	cfg := r.s.cfg
	dev := tpm.New(c.TPM(ctx), tpm.Options{Board: rec.Serial, NoCreate: cfg.TPM.NoCreate, Logger: r.s.log})
	ek, err := dev.EK(ctx)
	if err != nil {
		return nil, r.fail("the board's TPM did not give its endorsement key: reseat the board and press Retry", err)
	}
	r.part(1, 3)
	srk, err := dev.SRK(ctx)
	if err != nil {
		return nil, r.fail("the board's TPM did not give its storage root key: reseat the board and press Retry", err)
	}
	r.part(2, 3)
	rec.RegistrationID, rec.EKPublic, rec.EKFingerprint = ek.RegistrationID(), ek.TPM2B, ek.Fingerprint()
	r.setRegID(rec.RegistrationID)
	cert, err := dev.EKCertificate(ctx, ek, r.s.deps.Vendors)
	if err != nil {
		return nil, r.fail("the board's TPM could not be read: reseat the board and press Retry", err)
	}
	rec.EKCertificate, rec.EKCertStatus = cert.DER, cert.Status.String()
	r.part(3, 3)
	if cfg.TPM.RequireEKCert && cert.Status != tpm.EKCertVerified {
		return nil, r.fail("the TPM's EK certificate does not verify: set the board aside for the supervisor", fmt.Errorf("EK certificate %s: %v", cert.Status, cert.Err))
	}
	return &enroll.Enrollment{RegistrationID: rec.RegistrationID, Attestation: enroll.Attestation{Type: enroll.AttestationTPM,
		TPM: &enroll.TPMAttestation{EndorsementKey: ek.EndorsementKey(), StorageRootKey: srk.EndorsementKey()}}}, nil
}

func (r *run) x509Identity(ctx context.Context, c *flasher.Client, rec *records.Record, info BoardInfo) (*enroll.Enrollment, error) {
	cfg := r.s.cfg
	id, err := renderID(r.s.regID, info)
	if err == nil {
		err = regid.Check(id, regid.MaxLenX509)
	}
	if err != nil {
		return nil, r.fail("this board's registration ID is not valid: call the line engineer (registration_id in the configuration)", err)
	}
	rec.RegistrationID = id
	r.setRegID(id)
	var csr *x509.CertificateRequest
	if cfg.Attestation == ModeX509TPM {
		dev := tpm.New(c.TPM(ctx), tpm.Options{Board: rec.Serial, Logger: r.s.log})
		alg, _ := tpm.ParseKeyAlg(cfg.Key.Alg)
		signer, err := dev.SigningKey(ctx, alg, tpm2.TPMHandle(cfg.Key.Handle))
		if err != nil {
			return nil, r.fail("the board's TPM did not make its key: reseat the board and press Retry", err)
		}
		der, err := tpm.CSR(signer, id)
		if err == nil {
			csr, err = x509.ParseCertificateRequest(der)
		}
		if err != nil {
			return nil, r.fail("the board's TPM did not sign its certificate request: press Retry", err)
		}
	} else {
		if csr, err = c.Keygen(ctx, cfg.Key.Alg, id); err != nil {
			return nil, r.fail("the board did not make its key: press Retry; if it fails again, check its firmware supports keygen", err)
		}
	}
	r.begin(StepCertificate)
	cert, err := r.s.deps.Issuer.Issue(ctx, csr, id)
	if err != nil {
		var pe *ca.PolicyError
		if errors.As(err, &pe) {
			return nil, r.fail("the CA refused the board's certificate request: set the board aside for the line engineer", err)
		}
		return nil, r.fail("the CA did not issue the certificate: check the CA, then press Retry", err)
	}
	rec.CertificateChain = string(cert.PEM())
	rec.CertSerial, rec.CertNotAfter = cert.Serial, cert.NotAfter
	if cfg.CA.GroupID != "" {
		return nil, nil // enrolled through the group (ca.group_id): nothing per board for DPS
	}
	leaf := cert.Leaf()
	return &enroll.Enrollment{RegistrationID: id, Attestation: enroll.Attestation{Type: enroll.AttestationX509,
		X509: &enroll.X509Attestation{ClientCertificates: &enroll.X509Certificates{
			Primary: &enroll.X509Certificate{Certificate: string(ca.EncodePEM(leaf))}}}}}, nil
}

func (r *run) symmetricIdentity(rec *records.Record, info BoardInfo) error {
	id, err := renderID(r.s.regID, info)
	if err == nil {
		err = regid.Check(id, regid.MaxLen)
	}
	if err != nil {
		return r.fail("this board's registration ID is not valid: call the line engineer (registration_id in the configuration)", err)
	}
	rec.RegistrationID = id
	r.setRegID(id)
	return nil
}

// derivedKey is a device's key in an enrollment group with symmetric
// keys: base64(HMAC-SHA256(group key, registration ID)), as DPS and the
// device SDKs compute it.
func derivedKey(groupKey []byte, registrationID string) string {
	return base64.StdEncoding.EncodeToString(device.DeriveKey(groupKey, registrationID))
}
