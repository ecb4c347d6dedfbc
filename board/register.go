package board

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"zerotouch/enroll/device"
	"zerotouch/flasher"
	"zerotouch/internal/atomicfile"
	"zerotouch/internal/regid"
	"zerotouch/tpm"
)

// registerTimeout bounds one registration: DPS's own waits (Retry-After)
// included.
const registerTimeout = 2 * time.Minute

// handleRegister starts the board's DPS registration from its committed
// configuration, as its first boot would, and answers at once.
func handleRegister(b *Board, _ []byte) (any, func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.st.Provisioned {
		return nil, nil, provErr(flasher.ProvRCNoConfig, flasher.RCNoEntry)
	}
	if b.reg.State == flasher.RegRegistering {
		return map[string]any{}, nil, nil
	}
	if b.stopped {
		return nil, nil, mgmtErr(flasher.RCBadState)
	}
	b.reg = flasher.Registration{State: flasher.RegRegistering}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		b.registerAndKeep()
	}()
	return map[string]any{}, nil, nil
}

// registerAndKeep registers as Register does, giving up when the board
// stops or registerTimeout has passed, and keeps the outcome for the
// station's registration command.
func (b *Board) registerAndKeep() flasher.Registration {
	ctx, cancel := context.WithTimeout(context.Background(), registerTimeout)
	defer cancel()
	go func() {
		select {
		case <-b.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	r := b.Register(ctx)
	b.mu.Lock()
	b.reg = r
	b.mu.Unlock()
	return r
}

// handleRegistration reports the last registration.
func handleRegistration(b *Board, _ []byte) (any, func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r := b.reg
	if r.State == "" {
		r.State = flasher.RegNone
	}
	return r, nil, nil
}

// Register registers the board with DPS from its committed configuration,
// as its firmware does at first boot: over HTTPS to the global endpoint,
// with its TPM, its certificate and the key it keeps, or its derived
// symmetric key, trusting Config.DPSRoots. It reports the outcome; it
// does not fail otherwise.
func (b *Board) Register(ctx context.Context) flasher.Registration {
	r, err := b.register(ctx)
	if err != nil {
		r.State = flasher.RegFailed
		r.Error = err.Error()
		var de *device.Error
		if errors.As(err, &de) {
			r.Status, r.ErrorCode = de.Status, de.Code
		}
		if errors.Is(err, device.ErrDisabled) {
			r.State = flasher.RegDisabled
		}
		b.log.Warn("DPS registration failed", "state", r.State, "err", err)
		return r
	}
	b.log.Info("DPS registration", "registration_id", r.RegistrationID, "hub", r.Hub, "device_id", r.DeviceID)
	return r
}

func (b *Board) register(ctx context.Context) (flasher.Registration, error) {
	var r flasher.Registration
	b.mu.Lock()
	name := b.st.ConfigPath
	b.mu.Unlock()
	p, err := b.fsPath(name)
	if err != nil {
		return r, fmt.Errorf("configuration %s: %w", name, err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return r, fmt.Errorf("read the configuration: %w", err)
	}
	bc, err := parseBootConfig(data)
	if err != nil {
		return r, fmt.Errorf("configuration %s: %w", name, err)
	}
	r.RegistrationID = bc.RegistrationID
	cfg := device.Config{GlobalEndpoint: bc.GlobalEndpoint, IDScope: bc.IDScope, RegistrationID: bc.RegistrationID,
		Logger: b.log, MinWait: 50 * time.Millisecond}
	if b.cfg.DPSRoots != "" {
		pem, err := os.ReadFile(b.cfg.DPSRoots)
		if err != nil {
			return r, fmt.Errorf("the board's DPS roots: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return r, fmt.Errorf("the board's DPS roots %s hold no PEM certificate", b.cfg.DPSRoots)
		}
		cfg.TLS = &tls.Config{RootCAs: pool}
	}
	switch bc.Attestation {
	case attSymmetricKey:
		cfg.SymmetricKey = bc.SymmetricKey
	case attX509:
		chain := bc.CertificateChain
		if chain == "" {
			if chain, err = b.certificateFile(bc.CertificatePath); err != nil {
				return r, fmt.Errorf("configuration %s (%s): %w", name, bc.Format, err)
			}
		}
		if cfg.X509, err = b.deviceCertificate(ctx, chain, bc.KeyURI); err != nil {
			return r, err
		}
		if cfg.RegistrationID == "" {
			// aziot's rule when registration_id is left out: the
			// certificate's common name.
			cfg.RegistrationID = cfg.X509.Leaf.Subject.CommonName
			r.RegistrationID = cfg.RegistrationID
		}
	case attTPM:
		if cfg.TPM, err = b.bootTPM(ctx); err != nil {
			return r, err
		}
		if cfg.RegistrationID == "" {
			cfg.RegistrationID = regid.FromEK(cfg.TPM.EndorsementKey())
			r.RegistrationID = cfg.RegistrationID
		}
	}
	oc, err := readOperationalCertificate(data, bc.Format, name)
	if err != nil {
		return r, fmt.Errorf("configuration %s: %w", name, err)
	}
	var opKey crypto.Signer
	if oc != nil {
		if opKey, cfg.CSR, err = operationalCSR(cfg.RegistrationID); err != nil {
			return r, err
		}
	}
	res, err := device.Register(ctx, cfg)
	if err != nil {
		return r, err
	}
	if oc != nil {
		if err := b.keepOperationalCertificate(oc.Path, opKey, res.IssuedCertificateChain); err != nil {
			return r, err
		}
	}
	r.State = flasher.RegAssigned
	r.RegistrationID, r.Hub, r.DeviceID, r.Substatus = res.RegistrationID, res.AssignedHub, res.DeviceID, res.Substatus
	return r, nil
}

// Operational certificates from DPS. A configuration in the json format
// that holds
//
//	"provisioning": {..., "operationalCertificate": {"issuer": "dps", "path": "/lfs/zerotouch/operational.pem"}}
//
// has the board make a key (ECDSA P-256, kept in its RAM as keygen's
// keys) at registration and send its CSR (CN = the registration ID) with
// the register request, api-version 2026-04-01: DPS issues the
// certificate under the credential policy of the board's enrollment. The
// board checks the chain (device.VerifyIssuedChain) and writes it, PEM,
// device certificate first and root last, to path (default:
// operational.pem beside the configuration), where the station's
// end-of-line check reads it. The other formats have no such setting.

// Log attribute keys of the operational certificate.
const (
	keyCertPath = "path"
	keySubject  = "subject"
	keyNotAfter = "not_after"
	keyRoot     = "root"
)

// operationalKeyName is the operational key's entry among the board's
// keys.
const operationalKeyName = "operational"

// operationalCertificate is the configuration's
// provisioning.operationalCertificate.
type operationalCertificate struct {
	Issuer string `json:"issuer"` // "dps"
	Path   string `json:"path"`   // where the chain is kept
}

// readOperationalCertificate reads provisioning.operationalCertificate
// from a json configuration at configPath; nil when there is none (or
// the format has no such setting).
func readOperationalCertificate(data []byte, format, configPath string) (*operationalCertificate, error) {
	if format != formatJSON {
		return nil, nil
	}
	var doc struct {
		Provisioning struct {
			OperationalCertificate *operationalCertificate `json:"operationalCertificate"`
		} `json:"provisioning"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	oc := doc.Provisioning.OperationalCertificate
	if oc == nil {
		return nil, nil
	}
	if oc.Issuer != "dps" {
		return nil, fmt.Errorf("provisioning.operationalCertificate.issuer %q: the board requests its certificate from \"dps\" only", oc.Issuer)
	}
	if oc.Path == "" {
		oc.Path = path.Join(path.Dir(configPath), "operational.pem")
	}
	return oc, nil
}

// operationalCSR makes the operational key and its CSR for regID.
func operationalCSR(regID string) (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("make the operational key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: regID}}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("make the operational key's CSR: %w", err)
	}
	return key, csr, nil
}

// keepOperationalCertificate keeps the operational key in RAM and writes
// the chain DPS issued (device.Register checked it) to the board's file
// name.
func (b *Board) keepOperationalCertificate(name string, key crypto.Signer, chain []*x509.Certificate) error {
	p, err := b.fsPath(name)
	if err != nil {
		return fmt.Errorf("provisioning.operationalCertificate.path: %w", err)
	}
	var out []byte
	for _, c := range chain {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("keep the operational certificate: %w", err)
	}
	write := atomicfile.Write
	if b.cfg.NoSync {
		write = atomicfile.WriteUnsynced
	}
	if err := write(p, out, 0o644); err != nil {
		return fmt.Errorf("keep the operational certificate in %s: %w", name, err)
	}
	b.mu.Lock()
	b.keys[operationalKeyName] = key
	b.mu.Unlock()
	b.log.Info("operational certificate issued", keyCertPath, name, keySubject, chain[0].Subject.String(),
		keyNotAfter, chain[0].NotAfter, keyRoot, chain[len(chain)-1].Subject.String())
	return nil
}

// certificateFile reads the certificate chain the configuration names by
// its path on the board.
func (b *Board) certificateFile(name string) (string, error) {
	p, err := b.fsPath(name)
	if err != nil {
		return "", fmt.Errorf("certificate file %s: %w", name, err)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("the configuration names the certificate file %s, which the board cannot read (was it written?): %w", name, err)
	}
	return string(data), nil
}

// deviceCertificate pairs the chain the station wrote with the key the
// board keeps for it: one keygen made, else the TPM key at the handle
// keyURI names (or tpm.DefaultKeyHandle).
func (b *Board) deviceCertificate(ctx context.Context, chainPEM, keyURI string) (*tls.Certificate, error) {
	var cert tls.Certificate
	rest := []byte(chainPEM)
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			cert.Certificate = append(cert.Certificate, blk.Bytes)
		}
	}
	if len(cert.Certificate) == 0 {
		return nil, errors.New("the configuration's certificate chain holds no certificate")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("the configuration's certificate: %w", err)
	}
	cert.Leaf = leaf
	want, err := x509.MarshalPKIXPublicKey(leaf.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("the configuration's certificate: %w", err)
	}
	b.mu.Lock()
	for _, k := range b.keys {
		if s, ok := k.(crypto.Signer); ok {
			if got, err := x509.MarshalPKIXPublicKey(s.Public()); err == nil && bytes.Equal(got, want) {
				cert.PrivateKey = s
			}
		}
	}
	b.mu.Unlock()
	if cert.PrivateKey != nil {
		return &cert, nil
	}
	if b.tpm == nil {
		return nil, errors.New("the board holds no key for its certificate: keygen made none that matches, and it has no TPM")
	}
	d := tpm.New(lockedTPM{b}, tpm.Options{Board: b.cfg.Serial, Logger: b.log})
	if m := keyHandleRE.FindString(strings.ToLower(keyURI)); m != "" {
		h, _ := strconv.ParseUint(m[2:], 16, 32)
		handle := tpm2.TPMHandle(h)
		signer, err := d.LoadSigner(ctx, handle)
		if err != nil {
			return nil, fmt.Errorf("the certificate's key in the TPM, at %#x as the key URI %q says: %w", uint32(handle), keyURI, err)
		}
		if got, err := x509.MarshalPKIXPublicKey(signer.Public()); err != nil || !bytes.Equal(got, want) {
			return nil, fmt.Errorf("the TPM key at %#x, which the key URI %q names, is not the certificate's", uint32(handle), keyURI)
		}
		cert.PrivateKey = signer
		return &cert, nil
	}
	// The key URI names no handle (a PKCS#11 URI, a file): the key is
	// the persistent signing key whose public key is the certificate's.
	handles, err := persistentHandles(lockedTPM{b})
	if err != nil {
		return nil, fmt.Errorf("the certificate's key in the TPM: %w", err)
	}
	for _, h := range handles {
		signer, err := d.LoadSigner(ctx, h)
		if err != nil {
			continue // not a signing key (the EK, the SRK, another's)
		}
		if got, err := x509.MarshalPKIXPublicKey(signer.Public()); err == nil && bytes.Equal(got, want) {
			cert.PrivateKey = signer
			return &cert, nil
		}
	}
	return nil, fmt.Errorf("the board holds no key for its certificate: keygen made none that matches, and none of the TPM's persistent keys %#x is the certificate's", handles)
}

// persistentHandles lists the TPM's persistent objects in the owner's
// range, 0x81000000-0x817FFFFF (TPM 2.0 Part 3, 30.2 TPM2_GetCapability,
// TPM_CAP_HANDLES).
func persistentHandles(t transport.TPM) ([]tpm2.TPMHandle, error) {
	var out []tpm2.TPMHandle
	next := uint32(0x81000000)
	for {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: next, PropertyCount: 64}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("list persistent handles: %w", err)
		}
		hs, err := rsp.CapabilityData.Data.Handles()
		if err != nil {
			return nil, fmt.Errorf("list persistent handles: %w", err)
		}
		for _, h := range hs.Handle {
			if h > 0x817FFFFF {
				return out, nil
			}
			out = append(out, h)
			next = uint32(h) + 1
		}
		if !rsp.MoreData || len(hs.Handle) == 0 {
			return out, nil
		}
	}
}

// keyHandleRE finds a persistent handle in a key URI.
var keyHandleRE = regexp.MustCompile(`0x81[0-9a-f]{6}`)

// bootTPM is the board's TPM as DPS registration uses it.
type bootTPM struct {
	d       *tpm.Device
	ek, srk []byte
}

func (b *Board) bootTPM(ctx context.Context) (*bootTPM, error) {
	if b.tpm == nil {
		return nil, errors.New("the configuration says tpm, and the board has no TPM")
	}
	d := tpm.New(lockedTPM{b}, tpm.Options{Board: b.cfg.Serial, NoCreate: true, Logger: b.log})
	ek, err := d.EK(ctx)
	if err != nil {
		return nil, err
	}
	srk, err := d.SRK(ctx)
	if err != nil {
		return nil, err
	}
	return &bootTPM{d: d, ek: ek.TPM2B, srk: srk.TPM2B}, nil
}

func (t *bootTPM) EndorsementKey() []byte { return t.ek }
func (t *bootTPM) StorageRootKey() []byte { return t.srk }
func (t *bootTPM) ImportIdentityKey(ctx context.Context, blob []byte) error {
	return t.d.ImportIdentityKey(ctx, blob)
}
func (t *bootTPM) IdentityHMAC(ctx context.Context, data []byte) ([]byte, error) {
	return t.d.IdentityHMAC(ctx, data)
}

// lockedTPM sends the board's own TPM commands one at a time with those
// arriving over the line.
type lockedTPM struct{ b *Board }

func (t lockedTPM) Send(cmd []byte) ([]byte, error) {
	t.b.tpmMu.Lock()
	defer t.b.tpmMu.Unlock()
	return t.b.tpm.Send(cmd)
}
