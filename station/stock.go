package station

// Boards as they come: the stock board profile. A stock board runs stock
// MCUmgr (os, image and fs groups, as Zephyr's smp_svr sample): it cannot
// say its serial number, make a key or commit a configuration. The
// station gives it a serial number (a sequence, a scan or a file on the
// board), writes its configuration (and in x509-station-key its device
// key and certificate) by fs_mgmt, checks every file by the fs hash
// command or, on a board without it, by reading it back, and resets the
// board: it is provisioned when its configuration verifies.

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"zerotouch/ca"
	"zerotouch/enroll"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/flasher"
	"zerotouch/internal/pause"
	"zerotouch/internal/regid"
	"zerotouch/internal/textsafe"
	"zerotouch/station/records"
)

// StepReset is a stock board's last step on the line before its record:
// the board restarts to read its new configuration.
const StepReset = "reset"

// Sequencer hands out the numbers of named serial sequences, never the
// same number twice (records.Store and records.PGStore satisfy it; see
// their NextSerial). A stock line with board.serial.source sequence needs
// a records store that is one.
type Sequencer interface {
	NextSerial(ctx context.Context, name string) (int64, error)
}

// ErrScanRefused means a scanned serial number was refused: it breaks
// the rules of serial numbers (flasher.CheckSerial) or the line's
// serial_pattern, or the line takes no scans.
var ErrScanRefused = errors.New("scanned serial number refused")

// Scan gives the slot named slot the serial number the operator scanned
// from its next board's label (board.serial.source scan). Scans queue in
// order: the slot's next stock board takes the first. An unknown slot is
// ErrNoSlot; a serial number that breaks the rules, or a line that takes
// no scans, an error wrapping ErrScanRefused, and nothing is queued.
// Whether another board already holds the number is checked when the
// board runs, against the records. Safe for concurrent use.
func (s *Station) Scan(slot, serial string) error {
	serial = strings.TrimSpace(serial)
	if !s.hasSlot(slot) {
		return fmt.Errorf("slot %q: %w", slot, ErrNoSlot)
	}
	if s.cfg.Board.Profile != ProfileStock || s.cfg.Board.Serial.Source != SerialScan {
		return fmt.Errorf("slot %s: %w: this line's boards do not take scanned serial numbers (board.serial.source)", slot, ErrScanRefused)
	}
	if err := flasher.CheckSerial(serial); err != nil {
		return fmt.Errorf("slot %s: %w: %w", slot, ErrScanRefused, err)
	}
	if s.serials != nil && !s.serials.MatchString(serial) {
		return fmt.Errorf("slot %s: %w: %q does not match serial_pattern %q", slot, ErrScanRefused, serial, s.cfg.SerialPattern)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.scans == nil {
		s.scans = map[string][]string{}
	}
	s.scans[slot] = append(s.scans[slot], serial)
	if s.scanned != nil {
		close(s.scanned)
		s.scanned = nil
	}
	s.log.Info("serial number scanned", "slot", slot, "serial", serial)
	return nil
}

// ReadScans reads scanned serial numbers from r until it ends or ctx
// does, one a line, and gives each to a slot (Scan): "SLOT SERIAL" to the
// slot named, a bare "SERIAL" to the line's slots in turn. Blank lines and
// lines starting with # are skipped. A line Scan refuses is logged and
// skipped. For a headless station, whose scans come from a file or
// standard input. It returns r's error, if any.
func (s *Station) ReadScans(ctx context.Context, r io.Reader) error {
	sc := bufio.NewScanner(r)
	next := 0
	for sc.Scan() && ctx.Err() == nil {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		slot, serial := "", line
		if f := strings.Fields(line); len(f) == 2 && s.hasSlot(f[0]) {
			slot, serial = f[0], f[1]
		} else {
			slot = s.cfg.Slots[next%len(s.cfg.Slots)].Name
			next++
		}
		if err := s.Scan(slot, serial); err != nil {
			s.log.Warn("scanned serial number refused", "slot", slot, "line", textsafe.Truncate(line, 80), "err", err)
		}
	}
	return sc.Err()
}

func (s *Station) hasSlot(name string) bool {
	for _, sc := range s.cfg.Slots {
		if sc.Name == name {
			return true
		}
	}
	return false
}

// takeScan waits for the slot's next scanned serial number.
func (s *Station) takeScan(ctx context.Context, slot string) (string, error) {
	for {
		s.mu.Lock()
		if q := s.scans[slot]; len(q) > 0 {
			s.scans[slot] = q[1:]
			s.mu.Unlock()
			return q[0], nil
		}
		if s.scanned == nil {
			s.scanned = make(chan struct{})
		}
		wake := s.scanned
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return "", context.Cause(ctx)
		}
	}
}

// noteHanded remembers the serial number a stock board on slot was
// given, for a Retry of the same board; forgetHanded forgets it when the
// slot takes another board.
func (s *Station) noteHanded(slot, serial string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.handed == nil {
		s.handed = map[string]string{}
	}
	s.handed[slot] = serial
}

func (s *Station) forgetHanded(slot string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.handed, slot)
}

func (s *Station) handedTo(slot string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handed[slot]
}

// fileCheck checks files on a stock board: by the fs hash command while
// the board has it, else by reading each back. A board that answers that
// it lacks the command is asked once, not once per file.
type fileCheck struct {
	r      *run
	c      *flasher.Client
	noHash bool
}

// sum returns the sha256 and length of the board's file name.
func (v *fileCheck) sum(ctx context.Context, name string) ([]byte, int, error) {
	if !v.noHash {
		got, n, err := v.c.FileHash(ctx, name, 0, 0)
		if !errors.Is(err, flasher.ErrNotSupported) {
			return got, n, err
		}
		v.noHash = true
		v.r.s.log.Info("the board has no fs hash command: its files are checked by reading them back",
			"slot", v.r.slot.Name, "serial", v.r.serialNow(), "err", err)
		v.r.say("the board has no fs hash command: its files are checked by reading them back (slower)")
	}
	data, err := v.c.FileDownload(ctx, name, nil)
	if err != nil {
		return nil, 0, err
	}
	sum := sha256.Sum256(data)
	clear(data) // it may be the device key
	return sum[:], len(data), nil
}

// verify checks that the board's file name holds size bytes whose sha256
// is want; other bytes are an error wrapping flasher.ErrVerify.
func (v *fileCheck) verify(ctx context.Context, name string, want []byte, size int) error {
	got, n, err := v.sum(ctx, name)
	if err != nil {
		return fmt.Errorf("verify %s: %w", name, err)
	}
	if n != size || !bytes.Equal(got, want) {
		how := "by the board's hash"
		if v.noHash {
			how = "read back"
		}
		return fmt.Errorf("verify %s on %s (%s): %w: board holds %d bytes with sha256 %x, sent %d bytes with sha256 %x",
			name, v.r.slot.Name, how, flasher.ErrVerify, n, got, size, want)
	}
	return nil
}

// say tells the operator msg in a running event of the current step.
func (r *run) say(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.emitLocked(Running, msg, "", nil)
}

func (r *run) serialNow() string {
	serial, _ := r.current()
	return serial
}

// stockFile is one file the station writes to a stock board.
type stockFile struct {
	what string // for the operator: "the configuration"
	path string
	data []byte
	sum  [sha256.Size]byte
	size int
}

func (r *run) provisionStock(ctx context.Context, c *flasher.Client) (*Result, error) {
	s, cfg := r.s, r.s.cfg
	check := &fileCheck{r: r, c: c}
	r.begin(StepIdentity)
	// The firmware version crosses the line while the serial number is
	// handed out.
	fwc := make(chan string, 1)
	go func() { fwc <- stockFirmware(ctx, c) }()
	serial, err := r.stockSerial(ctx, c, check)
	if err != nil {
		<-fwc
		return nil, err
	}
	if s.serials != nil && !s.serials.MatchString(serial) {
		<-fwc
		return nil, r.fail("the board's serial number is not of this line's form (serial_pattern): set the board aside and call the line engineer",
			fmt.Errorf("%w: serial number %q does not match serial_pattern %q", flasher.ErrBadIdentity, serial, cfg.SerialPattern))
	}
	r.identify(serial)
	if err := s.checkSuspect(ctx, serial); err != nil {
		<-fwc
		return nil, r.fail("this board was refused as a possible clone: it runs again only when the supervisor allows it (Unlock in the window; headless, the supervisor's password): set it aside for the supervisor", err)
	}
	rec := &records.Record{Serial: serial, Model: cfg.Board.Model,
		Attestation: cfg.Attestation, Station: cfg.Station, Line: cfg.Line, Slot: r.slot.Name, ConfigPath: cfg.Template.Path}
	s.mu.Lock()
	rec.Operator, rec.WorkOrder = s.operator, s.workOrder
	s.mu.Unlock()
	begun := *rec
	err = s.deps.Store.Begin(ctx, &begun)
	rec.Firmware = <-fwc // the record's run is open before the version is known; Save records it
	if err != nil {
		return nil, r.fail("the board's record could not be opened, so it was left untouched: call the line engineer", err)
	}
	r.rec = rec
	fw := rec.Firmware
	info := BoardInfo{Serial: serial, Model: cfg.Board.Model, Firmware: fw}
	if r.keepSerial {
		path := cfg.Board.Serial.Path
		if err := c.FileUpload(ctx, path, []byte(serial+"\n"), false, nil); err != nil {
			return nil, r.fail(fmt.Sprintf("writing the board's serial number to %s failed: reseat the board and press Retry", path), err)
		}
	}

	if cfg.Firmware != nil && len(s.deps.Firmware) > 0 && fw != cfg.Firmware.Version {
		r.begin(StepFlash)
		if err := r.flash(ctx, c); err != nil {
			return nil, err
		}
	}

	r.begin(StepIdentity)
	data := fwtemplates.Data{IDScope: cfg.IDScope, GlobalEndpoint: cfg.GlobalEndpoint, Serial: serial, Model: cfg.Board.Model,
		Custom: cfg.Template.Custom, CertificatePath: cfg.Template.CertificatePath, KeyURI: cfg.Template.KeyURI,
		OperationalCertificatePath: cfg.operationalCertificatePath()}
	var files []*stockFile
	switch cfg.Attestation {
	case ModeSymmetricKey:
		if err := r.symmetricIdentity(rec, info); err != nil {
			return nil, err
		}
		data.Attestation = enroll.AttestationSymmetricKey
		data.DerivedKey = derivedKey(s.deps.GroupKey, rec.RegistrationID)
	case ModeX509StationKey:
		keyPEM, enr, err := r.stationKeyIdentity(ctx, rec, info)
		if err != nil {
			return nil, err
		}
		// The key is written first and its bytes zeroed once written.
		files = append(files, &stockFile{what: "the device key", path: cfg.Template.KeyPath, data: keyPEM})
		defer clear(keyPEM)
		enr.CredentialPolicyName = cfg.CredentialPolicy()
		rec.Enrollment = enr
		data.Attestation = enroll.AttestationX509
		data.CertificateChain = rec.CertificateChain
	default:
		return nil, r.fail("this line's attestation cannot run on a stock board: call the line engineer",
			fmt.Errorf("attestation %s on board profile stock", cfg.Attestation))
	}
	if s.devID != nil {
		if rec.DeviceID, err = renderDeviceID(s.devID, info); err != nil {
			return nil, r.fail("this board's device ID is not one IoT Hub takes: call the line engineer (device_id in the configuration)", err)
		}
	}
	data.RegistrationID, data.DeviceID = rec.RegistrationID, rec.DeviceID
	if rec.Enrollment != nil {
		rec.Enrollment.DeviceID = rec.DeviceID
	}

	r.begin(StepRender)
	conf, err := s.deps.Template.Render(data)
	if err != nil {
		return nil, r.fail("the configuration template failed for this board: call the line engineer", err)
	}
	sum := sha256.Sum256(conf)
	rec.ConfigSHA256 = sum[:]
	if certPath, certPEM := certificateFile(cfg, rec); certPath != "" {
		files = append(files, &stockFile{what: "the device certificate", path: certPath, data: certPEM})
	}
	files = append(files, &stockFile{what: "the configuration", path: cfg.Template.Path, data: conf})

	r.begin(StepWrite)
	total, done := 0, 0
	for _, f := range files {
		f.sum, f.size = sha256.Sum256(f.data), len(f.data)
		total += f.size
	}
	for _, f := range files {
		err := c.FileWrite(ctx, f.path, f.data, false, func(n, _ int) { r.counted(done+n, total) })
		if f.what == "the device key" {
			clear(f.data) // written or not, the station keeps no copy
		}
		if err != nil {
			return nil, r.writeFailed(f, err)
		}
		done += f.size
	}

	r.begin(StepVerify)
	for i, f := range files {
		if err := check.verify(ctx, f.path, f.sum[:], f.size); errors.Is(err, flasher.ErrVerify) {
			return nil, r.fail(fmt.Sprintf("%s on the board is not what was written: press Retry; if it fails again, set the board aside", f.what), err)
		} else if err != nil {
			return nil, r.fail(fmt.Sprintf("reading %s back from the board failed: reseat the board and press Retry", f.what), err)
		}
		r.part(i+1, len(files))
	}

	verify := cfg.VerifyRegistration.Enabled
	unchecked := ""
	if verify {
		if off := s.Offline(); off != "" && rec.Enrollment != nil {
			s.log.Warn("registration check not made: the factory database is offline, so the board's enrollment cannot reach DPS yet",
				"slot", r.slot.Name, "serial", rec.Serial, "offline", off)
			verify, unchecked = false, "the factory database is offline"
		}
	}
	// Provisioned once its configuration verifies: it restarts to read
	// it, while its record is saved. A board that does not answer the
	// reset reads its configuration at its next power-up.
	reset := make(chan error, 1)
	if verify {
		reset <- nil // after the enrollment: verifyStockRegistration
	} else {
		r.begin(StepReset)
		go func() { reset <- c.Reset(ctx, false) }()
	}
	r.begin(StepRecord)
	saved, err := r.save(ctx, rec)
	if rerr := <-reset; rerr != nil {
		s.log.Warn("the board did not answer the reset: it reads its configuration at its next power-up",
			"slot", r.slot.Name, "serial", serial, "err", rerr)
	}
	if err != nil {
		return nil, err
	}
	s.forgetHanded(r.slot.Name) // the board has it now
	if verify {
		if err := r.verifyStockRegistration(ctx, c, rec); err != nil {
			return nil, err
		}
	}
	return &Result{Record: rec, Saved: saved, Unchecked: unchecked}, nil
}

// writeFailed is the operator's failure for a file the board did not
// take.
func (r *run) writeFailed(f *stockFile, err error) error {
	var be *flasher.Error
	switch {
	case errors.As(err, &be) && be.Group == flasher.GroupFS && be.GroupRC == flasher.FSRCFileWriteFailed:
		return r.fail(fmt.Sprintf("the board could not store %s (%s): its file system is full or its flash failed; erase its file system (or reflash it) and press Retry, else set it aside", f.what, f.path), err)
	case errors.As(err, &be) && be.Group == flasher.GroupFS && (be.GroupRC == flasher.FSRCMountNotFound || be.GroupRC == flasher.FSRCFileOpenFailed):
		return r.fail(fmt.Sprintf("the board cannot create %s: no file system is mounted there or its folder does not exist (a stock board makes none): call the line engineer (the paths in the configuration, as %s)", f.path, flasher.StockConfigPath), err)
	case errors.As(err, &be):
		return r.fail(fmt.Sprintf("the board refused %s (%s): press Retry; if it fails again, set the board aside", f.what, f.path), err)
	case errors.Is(err, flasher.ErrTimeout) || errors.Is(err, flasher.ErrDisconnected):
		return r.fail(fmt.Sprintf("the board stopped answering while %s was written (%s): reseat the board and press Retry", f.what, f.path), err)
	}
	return r.fail(fmt.Sprintf("writing %s to the board failed: reseat the board and press Retry", f.what), err)
}

// stockFirmware is the version of the image the board runs, "" when it
// cannot say.
func stockFirmware(ctx context.Context, c *flasher.Client) string {
	states, err := c.ImageStates(ctx)
	if err != nil {
		return ""
	}
	for _, st := range states {
		if st.Active {
			return st.Version
		}
	}
	return ""
}

// stockSerial is the serial number the line's source gives the board.
func (r *run) stockSerial(ctx context.Context, c *flasher.Client, check *fileCheck) (string, error) {
	s, sc := r.s, r.s.cfg.Board.Serial
	switch sc.Source {
	case SerialFile:
		serial, err := r.serialFile(ctx, c, sc.Path)
		if errors.Is(err, flasher.ErrNotFound) {
			return "", r.fail(fmt.Sprintf("the board has no serial number file %s: was it written earlier in the line? Set the board aside for the line engineer", sc.Path), err)
		}
		if errors.Is(err, flasher.ErrBadIdentity) {
			return "", r.fail(fmt.Sprintf("the board's serial number file %s does not hold a valid serial number: set the board aside for the line engineer", sc.Path), err)
		}
		if err != nil {
			return "", r.fail(fmt.Sprintf("the board's serial number file %s could not be read: reseat the board and press Retry", sc.Path), err)
		}
		return serial, nil
	case SerialScan:
		r.waitFor("the operator to scan the board's label")
		serial, err := s.takeScan(ctx, r.slot.Name)
		r.waitFor("")
		if err != nil {
			return "", r.fail("no serial number was scanned for this board: scan its label", err)
		}
		r.mu.Lock()
		r.serial = serial // for the events of the check; identify counts the attempt
		r.mu.Unlock()
		if err := r.checkScanned(ctx, serial, check); err != nil {
			return "", err
		}
		return serial, nil
	}
	// A sequence: a board that keeps its serial number on its file
	// system keeps it; a Retry of the same board keeps the one it had.
	if sc.Path != "" {
		serial, err := r.serialFile(ctx, c, sc.Path)
		if err == nil {
			return serial, nil
		}
		if !errors.Is(err, flasher.ErrNotFound) {
			return "", r.fail(fmt.Sprintf("the board's serial number file %s could not be read: reseat the board and press Retry", sc.Path), err)
		}
	}
	serial := s.handedTo(r.slot.Name)
	if serial == "" {
		seq := s.deps.Store.(Sequencer) // checked by New
		n, err := seq.NextSerial(ctx, sc.Sequence)
		if errors.Is(err, records.ErrSequenceOffline) {
			return "", r.fail("serial numbers come from the factory database, which is offline: wait until it is back, then press Retry", err)
		}
		if err != nil {
			return "", r.fail("the records database did not hand out a serial number: call the line engineer", err)
		}
		serial = sequenceSerial(sc.Prefix, sc.Digits, n)
		s.noteHanded(r.slot.Name, serial)
		s.log.Info("serial number handed out", "slot", r.slot.Name, "serial", serial, "sequence", sc.Sequence)
	}
	if sc.Path != "" {
		r.keepSerial = true // written once the record is open
	}
	return serial, nil
}

// serialFile reads the serial number in the board's file path.
func (r *run) serialFile(ctx context.Context, c *flasher.Client, path string) (string, error) {
	data, err := c.FileDownload(ctx, path, nil)
	if err != nil {
		return "", err
	}
	serial := strings.TrimSpace(string(data))
	if err := flasher.CheckSerial(serial); err != nil {
		return "", fmt.Errorf("serial number file %s: %w", path, err)
	}
	return serial, nil
}

// checkScanned refuses a scanned serial number that the records hold for
// another board: one that passed with a configuration other than the one
// on this board. The same board run again (its configuration still the
// one recorded) keeps its number.
func (r *run) checkScanned(ctx context.Context, serial string, check *fileCheck) error {
	rec, err := r.s.deps.Store.Get(ctx, serial)
	if errors.Is(err, records.ErrNotFound) {
		return nil
	}
	if err != nil {
		return r.fail("the records could not be searched for the scanned serial number: call the line engineer", err)
	}
	if rec.Result != records.ResultPassed {
		return nil
	}
	got, _, err := check.sum(ctx, r.s.cfg.Template.Path)
	if err == nil && len(rec.ConfigSHA256) > 0 && bytes.Equal(got, rec.ConfigSHA256) {
		return nil // the board recorded under it, run again
	}
	where := ""
	if rec.Station != "" {
		where = " at station " + textsafe.Escape(rec.Station)
	}
	return r.fail(fmt.Sprintf("the scanned serial number %s is already another board's (provisioned %s%s): scan this board's own label; if it has none, set it aside for the line engineer",
		textsafe.Escape(serial), rec.UpdatedAt.Format("2006-01-02 15:04"), where),
		fmt.Errorf("%w: serial number %q is recorded for a board that passed, and this board does not hold its configuration", ErrScanRefused, serial))
}

// stationKeyIdentity makes the board's device key in memory, has the CA
// sign it and returns the key as PEM (PKCS #8) for the board, and the
// enrollment (nil with ca.group_id). The caller zeroes the PEM once it is
// written; the record gets the certificate alone.
func (r *run) stationKeyIdentity(ctx context.Context, rec *records.Record, info BoardInfo) ([]byte, *enroll.Enrollment, error) {
	cfg := r.s.cfg
	id, err := renderID(r.s.regID, info)
	if err == nil {
		err = regid.Check(id, regid.MaxLenX509)
	}
	if err != nil {
		return nil, nil, r.fail("this board's registration ID is not valid: call the line engineer (registration_id in the configuration)", err)
	}
	rec.RegistrationID = id
	r.setRegID(id)
	key, err := newDeviceKey(cfg.Key.Alg)
	if err != nil {
		return nil, nil, r.fail("the station could not make the board's key: call the line engineer", err)
	}
	defer zeroKey(key)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, r.fail("the station could not make the board's key: call the line engineer", err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	clear(der)
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}}, key)
	var csr *x509.CertificateRequest
	if err == nil {
		csr, err = x509.ParseCertificateRequest(csrDER)
	}
	if err != nil {
		clear(keyPEM)
		return nil, nil, r.fail("the station could not make the board's certificate request: call the line engineer", err)
	}
	r.begin(StepCertificate)
	cert, err := r.s.deps.Issuer.Issue(ctx, csr, id)
	if err != nil {
		clear(keyPEM)
		var pe *ca.PolicyError
		if errors.As(err, &pe) {
			return nil, nil, r.fail("the CA refused the board's certificate request: set the board aside for the line engineer", err)
		}
		return nil, nil, r.fail("the CA did not issue the certificate: check the CA, then press Retry", err)
	}
	rec.CertificateChain = string(cert.PEM())
	rec.CertSerial, rec.CertNotAfter = cert.Serial, cert.NotAfter
	if cfg.CA.GroupID != "" {
		return keyPEM, nil, nil
	}
	return keyPEM, &enroll.Enrollment{RegistrationID: id, Attestation: enroll.Attestation{Type: enroll.AttestationX509,
		X509: &enroll.X509Attestation{ClientCertificates: &enroll.X509Certificates{
			Primary: &enroll.X509Certificate{Certificate: string(ca.EncodePEM(cert.Leaf()))}}}}}, nil
}

// newDeviceKey makes a key of alg (Config.Key.Alg).
func newDeviceKey(alg string) (crypto.Signer, error) {
	switch alg {
	case flasher.AlgRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case flasher.AlgECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("key algorithm %q: want %s or %s", alg, flasher.AlgECDSAP256, flasher.AlgRSA2048)
}

// zeroKey overwrites the private numbers of key, best effort: the
// runtime may hold copies the station cannot reach (precomputed values
// inside crypto/ecdsa and crypto/rsa).
func zeroKey(key crypto.Signer) {
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		clear(k.D.Bits())
	case *rsa.PrivateKey:
		clear(k.D.Bits())
		for _, p := range k.Primes {
			clear(p.Bits())
		}
		if k.Precomputed.Dp != nil {
			clear(k.Precomputed.Dp.Bits())
			clear(k.Precomputed.Dq.Bits())
			clear(k.Precomputed.Qinv.Bits())
		}
	}
}

// save records a board that passed, with the operator's words for what
// the records refuse.
func (r *run) save(ctx context.Context, rec *records.Record) (records.SaveResult, error) {
	rec.Result = Passed
	saved, err := r.s.deps.Store.Save(ctx, rec)
	if err == nil {
		return saved, nil
	}
	if errors.Is(err, records.ErrClone) {
		return saved, r.fail("this board's identity is already recorded under another serial number"+cloneHolder(err)+
			": set it aside for the supervisor (possible clone)", err)
	}
	if errors.Is(err, records.ErrDuplicateID) {
		return saved, r.fail("this board's registration ID is already another board's: set it aside and call the line engineer (registration_id in the configuration)", err)
	}
	return saved, r.fail("the record could not be saved: the board is provisioned but not recorded; call the line engineer", err)
}

// verifyStockRegistration is the end-of-line check on a stock board: once
// its enrollment is in DPS, the station empties the file its firmware
// reports its registration in, resets it, and reads the file until the
// registration has ended.
func (r *run) verifyStockRegistration(ctx context.Context, c *flasher.Client, rec *records.Record) error {
	s := r.s
	path := s.cfg.Board.RegistrationPath
	vctx, cancel := context.WithTimeout(ctx, s.cfg.VerifyRegistration.Timeout)
	defer cancel()
	if rec.Enrollment != nil && s.deps.Enrolled != nil {
		r.begin(StepEnrollment)
		if err := s.deps.Enrolled(vctx, rec.Serial); err != nil {
			return r.fail("the board's enrollment has not reached DPS: check the upload queue and the DPS connection, then press Retry", err)
		}
	}
	r.begin(StepRegister)
	if err := c.FileWrite(vctx, path, nil, false, nil); err != nil {
		return r.fail(fmt.Sprintf("the board's registration file %s could not be emptied before its restart: reseat the board and press Retry", path), err)
	}
	if p := s.cfg.operationalCertificatePath(); p != "" {
		// A chain left from an earlier run must not pass for this one.
		if err := c.FileWrite(vctx, p, nil, false, nil); err != nil {
			return r.fail(fmt.Sprintf("the board's operational certificate file %s could not be emptied before its restart: reseat the board and press Retry", p), err)
		}
	}
	if err := c.Reset(vctx, false); err != nil {
		return r.fail("the board did not restart after its configuration was written: press Retry", err)
	}
	if err := c.WaitReady(vctx, 200*time.Millisecond); err != nil {
		return r.fail("the board did not come back after its restart: reseat it and press Retry", err)
	}
	var reg flasher.Registration
	for {
		data, err := c.FileDownload(vctx, path, nil)
		if err == nil && len(bytes.TrimSpace(data)) > 0 {
			reg = flasher.Registration{}
			if err := json.Unmarshal(data, &reg); err != nil {
				return r.fail(fmt.Sprintf("the board's registration file %s is not what the station reads (JSON of the registration's state): call the line engineer", path), err)
			}
			if reg.State != flasher.RegRegistering && reg.State != flasher.RegNone && reg.State != "" {
				break
			}
		}
		if !pause.For(vctx, 200*time.Millisecond) {
			return r.fail("the board did not finish registering with DPS in time: check its network and DPS, then press Retry",
				fmt.Errorf("%w: waiting for %s to report the registration (last: %q, %v)", flasher.ErrTimeout, path, reg.State, err))
		}
	}
	return r.registered(ctx, c, rec, reg)
}

// another reports whether the stock board on c is not the one that was
// given the configuration whose sha256 is sum: it holds no file at path,
// or another one. A board that does not answer is not known to be
// another.
func another(ctx context.Context, c *flasher.Client, path string, sum []byte) bool {
	got, _, err := c.FileHash(ctx, path, 0, 0)
	if errors.Is(err, flasher.ErrNotSupported) {
		var data []byte
		if data, err = c.FileDownload(ctx, path, nil); err == nil {
			s := sha256.Sum256(data)
			got = s[:]
		}
	}
	if errors.Is(err, flasher.ErrNotFound) {
		return true
	}
	return err == nil && !bytes.Equal(got, sum)
}
