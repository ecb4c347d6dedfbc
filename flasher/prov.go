package flasher

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
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

// Identity reads the board's identity.
func (c *Client) Identity(ctx context.Context) (Identity, error) {
	var id Identity
	if err := c.Do(ctx, OpRead, GroupProvisioning, CmdProvIdentity, nil, &id); err != nil {
		return Identity{}, err
	}
	if id.Serial == "" {
		return Identity{}, fmt.Errorf("prov.identity on %s: %w: no serial number", c.opts.Name, ErrProtocol)
	}
	return id, nil
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
