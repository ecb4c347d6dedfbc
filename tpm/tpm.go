package tpm

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Persistent handles the Azure device SDKs use (hsm_client_tpm.c).
const (
	EKHandle  = tpm2.TPMHandle(0x81010001)
	SRKHandle = tpm2.TPMHandle(0x81000001)
	// DefaultKeyHandle is where SigningKey persists a board's X.509 key
	// unless told otherwise. It is clear of the SDK's handles (the SRK,
	// the EK, and 0x81000100 for the key DPS issues on first boot).
	DefaultKeyHandle = tpm2.TPMHandle(0x81000002)
)

// Options configure a Device.
type Options struct {
	// Board names the board in errors, as "board ZT000123".
	Board string
	// NoCreate forbids creating the EK: for lines whose TPMs must arrive
	// with a vendor-provisioned EK at EKHandle. A missing EK is then
	// ErrNoEK.
	NoCreate bool
	// Logger receives what the device creates and persists. Default: none.
	Logger *slog.Logger
}

// Device is one TPM reached through a go-tpm transport. It is not safe for
// concurrent use. It does not own the transport: the caller closes it.
type Device struct {
	tpm   transport.TPM
	opts  Options
	log   *slog.Logger
	nvMax int // TPM_PT_NV_BUFFER_MAX, once asked
}

// New returns a Device on t. Context cancellation reaches a command in
// flight only if t honours it (the flasher's passthrough does); otherwise
// it is checked between commands.
func New(t transport.TPM, opts Options) *Device {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Board != "" {
		log = log.With("serial", opts.Board)
	}
	return &Device{tpm: checked{t}, opts: opts, log: log}
}

// Errors a caller may branch on with errors.Is. Each one comes wrapped in
// an *Error that names the board and the step.
var (
	// ErrNoEK: no EK at EKHandle and Options.NoCreate forbids making one.
	ErrNoEK = errors.New("no endorsement key persisted at 0x81010001, and this line requires a vendor-provisioned one: set the board aside for the TPM vendor")
	// ErrNotEK: the EK handle holds a key that is not an endorsement key,
	// put there by other software.
	ErrNotEK = errors.New("the EK handle holds a key that is not an endorsement key")
	// ErrHandleInUse: the SRK's handle, or the one for the board's signing
	// key, holds another kind of key; or a signing key was asked for on a
	// handle the device SDK uses.
	ErrHandleInUse = errors.New("the persistent handle holds another key")
	// ErrLockout: the TPM is in dictionary-attack lockout and refuses to
	// use keys protected by it.
	ErrLockout = errors.New("the TPM is in dictionary-attack lockout: wait for it to expire, or clear it with the lockout authorization (tpm2_dictionarylockout --clear-lockout), then retry")
	// ErrNoSpace: the TPM has no room for another persistent object.
	ErrNoSpace = errors.New("the TPM has no room for another persistent key: remove stale ones (tpm2_getcap handles-persistent) or use another TPM")
	// ErrObjectMemory: the TPM has no room for another loaded object,
	// as when a link dropped before objects were flushed.
	ErrObjectMemory = errors.New("the TPM has no room for another loaded key: reset the board (which resets its TPM) and retry")
	// ErrAuth: the TPM refused an empty password for a hierarchy: its
	// owner or endorsement authorization has been set.
	ErrAuth = errors.New("the TPM refused the empty owner or endorsement password: this TPM was taken by other software; clear it (tpm2_clear) or set it aside")
	// ErrMalformed: an answer that is not a well-formed TPM response.
	ErrMalformed = errors.New("malformed TPM response: the TPM, its bus or the board's passthrough is faulty")
	// ErrTransport: the command never reached the TPM, or its answer never
	// came back (the board has no TPM, the link dropped...). The
	// transport's own error is wrapped too.
	ErrTransport = errors.New("the TPM command did not get through")
)

// Error is what every Device method returns on failure: which board,
// which step, and why.
type Error struct {
	Board string // the board's serial number, if known
	Step  string // "read EK", "persist SRK", "sign CSR"...
	Err   error
}

func (e *Error) Error() string {
	if e.Board == "" {
		return fmt.Sprintf("%s: %v", e.Step, e.Err)
	}
	return fmt.Sprintf("board %s: %s: %v", e.Board, e.Step, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// fail wraps err for step, naming the board, unless it is wrapped already.
func (d *Device) fail(step string, err error) error {
	var te *Error
	if errors.As(err, &te) {
		return err
	}
	return &Error{Board: d.opts.Board, Step: step, Err: err}
}

// tpmErr translates what a go-tpm command returned: the response codes
// callers branch on become this package's errors; other TPM codes and
// transport errors pass as they are; anything else means go-tpm could not
// make sense of the answer.
func tpmErr(err error) error {
	var rc tpm2.TPMRC
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrTransport), errors.Is(err, ErrMalformed):
		return err
	case errors.Is(err, tpm2.TPMRCLockout):
		return fmt.Errorf("%w (%w)", ErrLockout, err)
	case errors.Is(err, tpm2.TPMRCNVSpace):
		return fmt.Errorf("%w (%w)", ErrNoSpace, err)
	case errors.Is(err, tpm2.TPMRCObjectMemory):
		return fmt.Errorf("%w (%w)", ErrObjectMemory, err)
	case errors.Is(err, tpm2.TPMRCBadAuth):
		return fmt.Errorf("%w (%w)", ErrAuth, err)
	case errors.As(err, &rc):
		return err
	}
	return fmt.Errorf("%w: %w", ErrMalformed, err)
}

// checked is a transport that tells a dead link from a bad answer: errors
// from the transport wrap ErrTransport, and a response whose header is not
// a TPM 2.0 response header (Part 1, 18.7: tag, size, code) is
// ErrMalformed before go-tpm reads it. It resends a command the TPM asks
// to have resent (TPM_RC_RETRY, _YIELDED, _TESTING, _NV_RATE,
// _NV_UNAVAILABLE: Part 2, 6.6.3), as a busy or self-testing TPM does, for
// up to about two seconds. A TPM that answers TPM_RC_INITIALIZE was never
// started by the board's firmware: it gets TPM2_Startup(CLEAR), as the
// device SDK would send, and the command again.
type checked struct{ t transport.TPM }

// TPM warnings that ask for the same command again.
var retryCodes = []tpm2.TPMRC{tpm2.TPMRCRetry, tpm2.TPMRCYielded, tpm2.TPMRCTesting, tpm2.TPMRCNVRate, tpm2.TPMRCNVUnavailable}

// startupClear is TPM2_Startup(TPM_SU_CLEAR) (Part 3, 9.3).
var startupClear = []byte{0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0}

func (c checked) Send(cmd []byte) ([]byte, error) {
	delay := 5 * time.Millisecond
	started := false
	for attempt := 0; ; attempt++ {
		rsp, err := c.send(cmd)
		if err != nil {
			return nil, err
		}
		rc := tpm2.TPMRC(binary.BigEndian.Uint32(rsp[6:]))
		switch {
		case rc == tpm2.TPMRCInitialize && !started:
			started = true
			if _, err := c.send(startupClear); err != nil {
				return nil, err
			}
		case attempt < 10 && slices.Contains(retryCodes, rc):
			time.Sleep(delay)
			delay = min(2*delay, 500*time.Millisecond)
		default:
			return rsp, nil
		}
	}
}

func (c checked) send(cmd []byte) ([]byte, error) {
	rsp, err := c.t.Send(cmd)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTransport, err)
	}
	if len(rsp) < 10 {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(rsp))
	}
	tag := binary.BigEndian.Uint16(rsp)
	size := binary.BigEndian.Uint32(rsp[2:])
	switch {
	case tag != uint16(tpm2.TPMSTNoSessions) && tag != uint16(tpm2.TPMSTSessions):
		return nil, fmt.Errorf("%w: tag %#04x", ErrMalformed, tag)
	case int64(size) != int64(len(rsp)):
		return nil, fmt.Errorf("%w: header says %d bytes, got %d", ErrMalformed, size, len(rsp))
	}
	return rsp, nil
}

// ctxErr returns ctx's error wrapped for step, if it is done.
func (d *Device) ctxErr(ctx context.Context, step string) error {
	if err := ctx.Err(); err != nil {
		return d.fail(step, err)
	}
	return nil
}
