package flasher

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-tpm/tpm2/transport"

	"zerotouch/internal/textsafe"
)

// Identity is what a board says of itself (provisioning group, command 0).
type Identity struct {
	Serial string   `cbor:"serial" json:"serial"`
	Model  string   `cbor:"model" json:"model"`
	HW     string   `cbor:"hw" json:"hw"`
	FW     string   `cbor:"fw" json:"fw"`
	Caps   []string `cbor:"caps" json:"caps"`
}

// Board capabilities listed in Identity.Caps.
const (
	CapTPM    = "tpm"
	CapKeygen = "keygen"
	CapFS     = "fs"
	CapImage  = "image"
)

// Has reports whether the board lists capability c.
func (id Identity) Has(c string) bool { return slices.Contains(id.Caps, c) }

// Identity reads the board's identity and checks it (CheckIdentity): an
// identity that breaks the rules is an error wrapping ErrBadIdentity.
func (c *Client) Identity(ctx context.Context) (Identity, error) {
	var id Identity
	if err := c.Do(ctx, OpRead, GroupProvisioning, CmdProvIdentity, nil, &id); err != nil {
		return Identity{}, err
	}
	if err := CheckIdentity(id); err != nil {
		return Identity{}, fmt.Errorf("prov.identity on %s: %w", c.opts.Name, err)
	}
	return id, nil
}

// Limits of what a board may say of itself.
const (
	// MaxSerialLen is the longest serial number, in characters.
	MaxSerialLen = 64
	// maxInfoLen is the longest model, hardware or firmware version.
	maxInfoLen = 128
	// maxCaps is the most capabilities a board may list.
	maxCaps = 32
)

// ErrBadIdentity means a board's serial number, model, hardware or
// firmware version breaks the rules of CheckSerial and CheckIdentity.
var ErrBadIdentity = errors.New("the board's identity breaks the rules")

// CheckSerial checks a serial number against the rule every board's must
// meet, whoever supplies it: 1 to MaxSerialLen characters of UTF-8, all
// printable and none a space (letters, digits, punctuation, symbols), no
// path separator ('/' or '\'), and neither "." nor "..". The serial names
// the board's record, its label file and its log lines, so it must be
// safe in each. A refusal wraps ErrBadIdentity and shows the serial
// escaped.
func CheckSerial(serial string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: serial number %q %s", ErrBadIdentity, textsafe.Truncate(serial, MaxSerialLen+16), why)
	}
	switch n := utf8.RuneCountInString(serial); {
	case serial == "":
		return fmt.Errorf("%w: no serial number", ErrBadIdentity)
	case !utf8.ValidString(serial):
		return bad("is not UTF-8")
	case n > MaxSerialLen:
		return bad(fmt.Sprintf("has %d characters, at most %d are allowed", n, MaxSerialLen))
	case serial == "." || serial == "..":
		return bad("is a path")
	}
	for _, r := range serial {
		switch {
		case r == '/' || r == '\\':
			return bad("holds a path separator")
		case !unicode.IsPrint(r) || unicode.IsSpace(r):
			return bad(fmt.Sprintf("holds %U, which is not a printable character", r))
		}
	}
	return nil
}

// CheckIdentity checks what a board says of itself: its serial number by
// CheckSerial; its model, hardware and firmware version printable and at
// most 128 characters each; at most 32 capabilities, each a printable
// word. A refusal wraps ErrBadIdentity.
func CheckIdentity(id Identity) error {
	if err := CheckSerial(id.Serial); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"model", id.Model}, {"hardware version", id.HW}, {"firmware version", id.FW}} {
		if n := utf8.RuneCountInString(f.v); n > maxInfoLen || !textsafe.Printable(f.v) {
			return fmt.Errorf("%w: %s %q is not printable text of at most %d characters", ErrBadIdentity, f.name, textsafe.Truncate(f.v, maxInfoLen), maxInfoLen)
		}
	}
	if len(id.Caps) > maxCaps {
		return fmt.Errorf("%w: %d capabilities, at most %d are allowed", ErrBadIdentity, len(id.Caps), maxCaps)
	}
	for _, cp := range id.Caps {
		if cp == "" || len(cp) > 32 || !textsafe.Printable(cp) {
			return fmt.Errorf("%w: capability %q", ErrBadIdentity, textsafe.Truncate(cp, 32))
		}
	}
	return nil
}

// Key algorithms for Keygen.
const (
	AlgECDSAP256 = "ecdsa-p256"
	AlgRSA2048   = "rsa-2048"
)

// keygenTimeout allows for an RSA key made by a slow microcontroller.
const keygenTimeout = 60 * time.Second

// Keygen asks the board to make a key pair that never leaves it and
// returns its certificate signing request, whose signature has been
// checked (provisioning group, command 2). A resent request repeats the
// previous one byte for byte, which a board answers from its last answer
// rather than making a second key.
func (c *Client) Keygen(ctx context.Context, alg, cn string) (*x509.CertificateRequest, error) {
	type req struct {
		Alg string `cbor:"alg"`
		CN  string `cbor:"cn"`
	}
	var rsp struct {
		CSR []byte `cbor:"csr"`
	}
	if err := c.do(ctx, call{op: OpWrite, group: GroupProvisioning, id: CmdProvKeygen, timeout: keygenTimeout, retries: -1}, req{alg, cn}, &rsp); err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(rsp.CSR)
	if err != nil {
		return nil, fmt.Errorf("prov.keygen on %s: %w: CSR does not parse: %v", c.opts.Name, ErrProtocol, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("prov.keygen on %s: %w: CSR signature: %v", c.opts.Name, ErrVerify, err)
	}
	return csr, nil
}

// Commit asks the board to check its stored configuration against sum
// (the sha256 of the configuration the station wrote) and mark itself
// provisioned (provisioning group, command 3). path names the
// configuration file; empty means the board's own default. A board whose
// file differs answers an error matching ErrMismatch and stays
// unprovisioned; one without the file, ErrNotFound.
func (c *Client) Commit(ctx context.Context, path string, sum []byte) error {
	type req struct {
		Sum  []byte `cbor:"config_sha256"`
		Path string `cbor:"path,omitempty"`
	}
	err := c.Do(ctx, OpWrite, GroupProvisioning, CmdProvCommit, req{sum, path}, nil)
	var be *Error
	if errors.As(err, &be) && be.GroupRC == 0 && be.RC == RCBadState {
		// Version 1 has no group codes: a refused commit is the
		// board's generic "bad state".
		return fmt.Errorf("%w (%w: the stored config does not match the hash)", err, ErrMismatch)
	}
	return err
}

// Registration states a board reports (provisioning group, command 5).
const (
	RegNone        = "none"        // not asked to register since it started
	RegRegistering = "registering" // under way
	RegAssigned    = "assigned"    // DPS assigned it to a hub
	RegDisabled    = "disabled"    // DPS answered that its enrollment is disabled
	RegFailed      = "failed"      // DPS refused it, or could not be reached; Error says which
)

// Registration is the board's last DPS registration, as it reports it.
type Registration struct {
	State          string `cbor:"state" json:"state"`
	RegistrationID string `cbor:"registration_id,omitempty" json:"registrationId,omitempty"`
	Hub            string `cbor:"hub,omitempty" json:"assignedHub,omitempty"`
	DeviceID       string `cbor:"device_id,omitempty" json:"deviceId,omitempty"`
	Substatus      string `cbor:"substatus,omitempty" json:"substatus,omitempty"`
	// Status is the HTTP status of DPS's refusal, ErrorCode its errorCode.
	Status    int    `cbor:"status,omitempty" json:"status,omitempty"`
	ErrorCode int    `cbor:"code,omitempty" json:"errorCode,omitempty"`
	Error     string `cbor:"error,omitempty" json:"error,omitempty"`
}

// Register asks the board to register with DPS now, from its committed
// configuration, as it would at its first boot in the field (provisioning
// group, command 4). The board answers at once and registers in the
// background; Registration and WaitRegistration tell how it went. A board
// with no committed configuration answers an error matching ErrNotFound;
// one already registering carries on.
func (c *Client) Register(ctx context.Context) error {
	return c.Do(ctx, OpWrite, GroupProvisioning, CmdProvRegister, struct{}{}, nil)
}

// Registration reads the board's last registration (provisioning group,
// command 5).
func (c *Client) Registration(ctx context.Context) (Registration, error) {
	var r Registration
	if err := c.Do(ctx, OpRead, GroupProvisioning, CmdProvRegistration, nil, &r); err != nil {
		return Registration{}, err
	}
	switch r.State {
	case RegNone, RegRegistering, RegAssigned, RegDisabled, RegFailed:
	default:
		return Registration{}, fmt.Errorf("prov.registration on %s: %w: state %q", c.opts.Name, ErrProtocol, textsafe.Truncate(r.State, 32))
	}
	// What the board reports goes into records and onto screens: names
	// must be printable and short, and DPS's message is kept escaped.
	for _, f := range []struct{ name, v string }{{"registration ID", r.RegistrationID}, {"hub", r.Hub},
		{"device ID", r.DeviceID}, {"substatus", r.Substatus}} {
		if len(f.v) > 256 || !textsafe.Printable(f.v) {
			return Registration{}, fmt.Errorf("prov.registration on %s: %w: %s %q is not printable text of at most 256 bytes",
				c.opts.Name, ErrProtocol, f.name, textsafe.Truncate(f.v, 256))
		}
	}
	r.Error = textsafe.Escape(textsafe.Truncate(r.Error, 1024))
	return r, nil
}

// WaitRegistration reads the board's registration every interval until
// it is no longer under way, or ctx ends.
func (c *Client) WaitRegistration(ctx context.Context, interval time.Duration) (Registration, error) {
	for {
		r, err := c.Registration(ctx)
		if err != nil || r.State != RegRegistering {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("prov.registration on %s: still registering: %w", c.opts.Name, ctx.Err())
		case <-time.After(interval):
		}
	}
}

// tpmTimeout allows for the slowest TPM commands (an RSA primary key).
const tpmTimeout = 90 * time.Second

// TPMCommand sends one raw TPM 2.0 command to the board's TPM and returns
// the raw response (provisioning group, command 1).
func (c *Client) TPMCommand(ctx context.Context, cmd []byte) ([]byte, error) {
	type req struct {
		Cmd []byte `cbor:"cmd"`
	}
	var rsp struct {
		Rsp []byte `cbor:"rsp"`
	}
	// A board repeats its cached answer to a repeated sequence number, so
	// a resent TPM command is not executed twice (see package board).
	if err := c.do(ctx, call{op: OpWrite, group: GroupProvisioning, id: CmdProvTPM, timeout: tpmTimeout, retries: -1}, req{cmd}, &rsp); err != nil {
		return nil, err
	}
	if len(rsp.Rsp) < 10 {
		return nil, fmt.Errorf("prov.tpm on %s: %w: TPM response of %d bytes", c.opts.Name, ErrProtocol, len(rsp.Rsp))
	}
	return rsp.Rsp, nil
}

// TPM is a go-tpm transport to the TPM of a board, through the
// provisioning group's tpm command: any go-tpm code runs against it.
// Send has no context of its own, so TPM carries one.
type TPM struct {
	c   *Client
	ctx context.Context
}

var _ transport.TPM = (*TPM)(nil)

// TPM returns a go-tpm transport whose commands run under ctx.
func (c *Client) TPM(ctx context.Context) *TPM { return &TPM{c: c, ctx: ctx} }

// Send implements transport.TPM. Errors wrap ErrTPMLink so that callers
// can tell a failed link from a TPM error code, which go-tpm decodes from
// the response.
func (t *TPM) Send(cmd []byte) ([]byte, error) {
	rsp, err := t.c.TPMCommand(t.ctx, cmd)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTPMLink, err)
	}
	return rsp, nil
}

// ErrTPMLink marks a TPM command that never reached the board's TPM, or
// whose answer never came back.
var ErrTPMLink = errors.New("TPM passthrough failed")
