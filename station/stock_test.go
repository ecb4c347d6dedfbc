package station_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"zerotouch/board"
	"zerotouch/ca"
	"zerotouch/flasher"
	"zerotouch/station"
	"zerotouch/station/records"
)

// stockBoard starts a virtual stock board that trusts the line's DPS
// emulator and registers at boot.
func (l *line) stockBoard(t *testing.T, serial string, cfg board.Config) *board.Board {
	t.Helper()
	cfg.Serial, cfg.Profile, cfg.Dir, cfg.TPM = serial, board.ProfileStock, t.TempDir(), board.TPMNone
	if cfg.Baud == 0 {
		cfg.Baud = 2_000_000
	}
	if l.enrolled != nil { // a verifyingLine
		cfg.DPSRoots, cfg.RegisterAtBoot = l.dps.CAFile, true
	}
	b, err := board.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// logBuffer is a logger at debug level into a buffer the test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (lb *logBuffer) Write(p []byte) (int, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.buf.Write(p)
}

func (lb *logBuffer) String() string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.buf.String()
}

func (lb *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

const stockSequence = "board:\n  profile: stock\n  serial: {source: sequence, prefix: ZS-}\n"

// TestStockModes provisions a stock board in each mode it takes, with and
// without the fs hash command, end to end: the files written and checked,
// the reset, the record, the enrollment or group, and the board's own
// registration with DPS at its boot.
func TestStockModes(t *testing.T) {
	for _, mode := range []string{station.ModeSymmetricKey, station.ModeX509StationKey} {
		for _, hash := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/fs-hash=%v", mode, hash), func(t *testing.T) {
				ctx := context.Background()
				l := verifyingLine(t, nil)
				l.extra += stockSequence
				var logs logBuffer
				l.log = logs.logger()
				b := l.stockBoard(t, "factory-label", board.Config{NoFSHash: !hash})
				st := l.station(t, mode, b)
				sum, err := st.Run(ctx, station.RunOptions{Once: true})
				if err != nil || sum.Passed != 1 || sum.Failed != 0 {
					t.Fatalf("Run = %+v, %v; events %+v", sum, err, l.events)
				}
				rec, err := l.store.Get(ctx, "ZS-000001")
				if err != nil {
					t.Fatalf("Get(the first serial number of the sequence): %v", err)
				}
				if rec.Attestation != mode || rec.Result != records.ResultPassed || rec.Model != "stock" {
					t.Errorf("record: attestation %q, result %q, model %q", rec.Attestation, rec.Result, rec.Model)
				}
				conf, err := b.ReadFile(flasher.StockConfigPath)
				if err != nil {
					t.Fatal(err)
				}
				if s := sha256.Sum256(conf); !bytes.Equal(rec.ConfigSHA256, s[:]) {
					t.Errorf("record's config hash %x, the board holds %x", rec.ConfigSHA256, s)
				}
				if rec.Registration == nil || rec.Registration.State != flasher.RegAssigned {
					t.Errorf("registration at the end of the line = %+v, want assigned", rec.Registration)
				}
				if !l.saw(station.StepRegister) {
					t.Errorf("no %s step", station.StepRegister)
				}
				fallback := strings.Count(logs.String(), "the board has no fs hash command")
				want := map[bool]int{true: 0, false: 1}[hash]
				if fallback != want {
					t.Errorf("the log says %d times that the board has no fs hash command, want %d (once per board)", fallback, want)
				}
				told := 0
				for _, e := range l.events {
					if strings.Contains(e.Message, "no fs hash command") {
						told++
					}
				}
				if told != want {
					t.Errorf("the operator was told %d times that the board has no fs hash command, want %d", told, want)
				}
				switch mode {
				case station.ModeSymmetricKey:
					m := hmac.New(sha256.New, groupKey)
					m.Write([]byte(rec.RegistrationID))
					if key := base64.StdEncoding.EncodeToString(m.Sum(nil)); !bytes.Contains(conf, []byte(key)) {
						t.Errorf("the configuration lacks the derived key %s", key)
					}
					if rec.Enrollment != nil {
						t.Errorf("a group mode's record has an enrollment: %+v", rec.Enrollment)
					}
				case station.ModeX509StationKey:
					checkStationKey(t, l, b, rec)
				}
			})
		}
	}
}

// checkStationKey checks an x509-station-key board: its certificate
// verifies against the CA and holds the public half of the key written
// to the board; the record holds the certificate and not the key.
func checkStationKey(t *testing.T, l *line, b *board.Board, rec *records.Record) {
	t.Helper()
	keyPEM, err := b.ReadFile(flasher.StockKeyPath)
	if err != nil {
		t.Fatalf("the board holds no key file: %v", err)
	}
	blk, _ := pem.Decode(keyPEM)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatalf("the board's key file is not a PEM private key:\n%s", keyPEM)
	}
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	var certs []*x509.Certificate
	for rest := []byte(rec.CertificateChain); ; {
		var c *pem.Block
		if c, rest = pem.Decode(rest); c == nil {
			break
		}
		cert, err := x509.ParseCertificate(c.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		t.Fatalf("the record holds no certificate")
	}
	leaf := certs[0]
	if !key.(crypto.Signer).Public().(*ecdsa.PublicKey).Equal(leaf.PublicKey) {
		t.Errorf("the certificate's key is not the key written to the board")
	}
	if leaf.Subject.CommonName != rec.RegistrationID {
		t.Errorf("certificate CN %q, registration ID %q", leaf.Subject.CommonName, rec.RegistrationID)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	rootPEM, err := os.ReadFile(filepath.Join(filepath.Dir(l.store.Path()), "ca", ca.RootFile))
	if err != nil {
		t.Fatal(err)
	}
	roots.AppendCertsFromPEM(rootPEM)
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("the certificate does not verify against the CA: %v", err)
	}
	if strings.Contains(rec.CertificateChain, "PRIVATE KEY") {
		t.Errorf("the record's chain holds a private key")
	}
	conf, _ := b.ReadFile(flasher.StockConfigPath)
	if !bytes.Contains(conf, []byte("file://"+flasher.StockKeyPath)) {
		t.Errorf("the configuration does not name the key file:\n%s", conf)
	}
}

// stockLine is a line of stock boards without DPS: extra is its board
// section.
func stockLine(t *testing.T, extra string) *line {
	t.Helper()
	l := newLine(t)
	l.extra = extra
	return l
}

// TestStockKeyLeavesNoTrace provisions a board in x509-station-key and
// searches the records database, the log (at debug level), the event
// stream and the station's folders for any 16-byte run of the device key
// written to the board: the key, its PEM text, its private scalar in
// bytes and in hex.
func TestStockKeyLeavesNoTrace(t *testing.T) {
	ctx := context.Background()
	l := verifyingLine(t, nil)
	l.extra += stockSequence
	var logs logBuffer
	l.log = logs.logger()
	var stream logBuffer
	enc := json.NewEncoder(&stream)
	l.onEvent = func(e station.Event) { enc.Encode(e) }
	b := l.stockBoard(t, "label", board.Config{})
	st := l.station(t, station.ModeX509StationKey, b)
	if sum, err := st.Run(ctx, station.RunOptions{Once: true}); err != nil || sum.Passed != 1 {
		t.Fatalf("Run = %+v, %v; log:\n%s", sum, err, logs.String())
	}
	keyPEM, err := b.ReadFile(flasher.StockKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(keyPEM)
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	d := key.(*ecdsa.PrivateKey).D.FillBytes(make([]byte, 32))
	// The private scalar, raw, in hex, and as the base64 of the key file
	// spells it (the PKCS #8 bytes around it are the same for every P-256
	// key, and hold the public key, which the certificate holds too).
	der := blk.Bytes
	off := bytes.Index(der, d)
	if off < 0 || off%3 != 0 {
		t.Fatalf("the scalar is at byte %d of the key's PKCS #8", off)
	}
	b64 := base64.StdEncoding.EncodeToString(der)
	secrets := map[string][]byte{"scalar": d, "scalar in hex": []byte(hex.EncodeToString(d)),
		"scalar in the key file's base64": []byte(b64[off/3*4 : (off+30)/3*4])}
	unfold := strings.NewReplacer("\n", "", `\n`, "")
	leaks := func(where string, data []byte) {
		flat := []byte(unfold.Replace(string(data)))
		for name, secret := range secrets {
			for i := 0; i+16 <= len(secret); i++ {
				if bytes.Contains(data, secret[i:i+16]) || bytes.Contains(flat, secret[i:i+16]) {
					t.Errorf("%s holds 16 bytes of the device key (%s, from byte %d)", where, name, i)
					break
				}
			}
		}
	}
	// Sanity: the search finds the key where it is.
	if data, _ := b.ReadFile(flasher.StockKeyPath); !bytes.Contains([]byte(unfold.Replace(string(data))), secrets["scalar in the key file's base64"]) {
		t.Fatal("the search does not find the key in the board's own key file")
	}
	leaks("the log", []byte(logs.String()))
	leaks("the event stream", []byte(stream.String()))
	l.store.Close() // everything on disk
	dir := filepath.Dir(l.store.Path())
	files := 0
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		leaks(p, data)
		return nil
	})
	if err != nil || files < 2 {
		t.Fatalf("searched %d files of %s: %v", files, dir, err)
	}
}

// TestStockRefusesModesNeedingTheGroup: a stock line in a mode that needs
// the provisioning group is refused at start, naming the group.
func TestStockRefusesModesNeedingTheGroup(t *testing.T) {
	base := "station: s\nid_scope: 0ne0001A2B3\nca: {dir: ca}\nsymmetric_key: {group_id: g}\nslots: [{port: /dev/null}]\n"
	for _, tt := range []struct {
		yaml, field, want string
	}{
		{"attestation: tpm\n" + stockSequence, "attestation", "SMP group 64: tpm"},
		{"attestation: x509-tpm\n" + stockSequence, "attestation", "SMP group 64: tpm"},
		{"attestation: x509-keygen\n" + stockSequence, "attestation", "SMP group 64: keygen"},
		{"attestation: x509-station-key\n", "attestation", "board.profile: stock"},
		{"attestation: symmetric-key\nboard: {profile: stock}\n", "board.serial.source", "sequence, scan or file"},
		{"attestation: symmetric-key\nboard: {profile: stock, serial: {source: dice}}\n", "board.serial.source", `"dice"`},
		{"attestation: symmetric-key\nboard: {profile: stock, serial: {source: file}}\n", "board.serial.path", "missing"},
		{"attestation: symmetric-key\nboard: {profile: stock, serial: {source: sequence}}\n", "board.serial.prefix", "missing"},
		{"attestation: symmetric-key\nboard: {profile: stock, serial: {source: sequence, prefix: 'Z S'}}\n", "board.serial.prefix", "Z S"},
		{"attestation: symmetric-key\nboard: {profile: custom}\n", "board.profile", `"custom"`},
		{"attestation: symmetric-key\nboard: {serial: {source: scan}}\n", "board.serial", "only for board.profile: stock"},
	} {
		_, err := station.ParseConfig([]byte(base + tt.yaml))
		var ce *station.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field || !strings.Contains(ce.Msg, tt.want) {
			t.Errorf("ParseConfig(%q) = %v, want a ConfigError on %s saying %q", tt.yaml, err, tt.field, tt.want)
		}
	}
	for _, mode := range []string{station.ModeSymmetricKey, station.ModeX509StationKey} {
		c, err := station.ParseConfig([]byte(base + "attestation: " + mode + "\n" + stockSequence))
		if err != nil {
			t.Errorf("ParseConfig(stock line in %s) = %v", mode, err)
			continue
		}
		if c.Template.Path != flasher.StockConfigPath {
			t.Errorf("stock line's template.path = %q, want %q", c.Template.Path, flasher.StockConfigPath)
		}
	}
}

// TestStockScan: a scanned serial number names the board; a scan that
// another board's record holds is refused with the operator's words, and
// the board that holds it may run again under it.
func TestStockScan(t *testing.T) {
	ctx := context.Background()
	l := stockLine(t, "board: {profile: stock, serial: {source: scan}}\n")
	first := l.stockBoard(t, "a", board.Config{})
	st := l.station(t, station.ModeSymmetricKey, first)
	slot := station.SlotConfig{Name: "slot-1"}
	if err := st.Scan("slot-1", "SCAN-0001"); err != nil {
		t.Fatal(err)
	}
	res, err := st.Provision(ctx, slot, first.Path())
	if err != nil || res.Record.Serial != "SCAN-0001" {
		t.Fatalf("Provision(scanned SCAN-0001) = %+v, %v", res, err)
	}

	// Another board scanned with the same label.
	second := l.stockBoard(t, "b", board.Config{})
	if err := st.Scan("slot-1", "SCAN-0001"); err != nil {
		t.Fatal(err)
	}
	_, err = st.Provision(ctx, slot, second.Path())
	var be *station.BoardError
	if !errors.As(err, &be) || !errors.Is(err, station.ErrScanRefused) || !strings.Contains(be.Message, "already another board's") {
		t.Fatalf("Provision(another board scanned SCAN-0001) = %v, want refused as another board's", err)
	}
	if _, err := second.ReadFile(flasher.StockConfigPath); err == nil {
		t.Errorf("the refused board was written to")
	}
	// The first board again, under its own label.
	if err := st.Scan("slot-1", "SCAN-0001"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Provision(ctx, slot, first.Path()); err != nil {
		t.Errorf("Provision(the board that holds SCAN-0001, again) = %v", err)
	}

	// Scans that break the rules, and scans from a file.
	for _, bad := range []string{"", "has space", "a/b", strings.Repeat("x", 65)} {
		if err := st.Scan("slot-1", bad); !errors.Is(err, station.ErrScanRefused) {
			t.Errorf("Scan(%q) = %v, want ErrScanRefused", bad, err)
		}
	}
	if err := st.Scan("slot-9", "SCAN-9"); !errors.Is(err, station.ErrNoSlot) {
		t.Errorf("Scan(unknown slot) = %v, want ErrNoSlot", err)
	}
	if err := st.ReadScans(ctx, strings.NewReader("# labels\n\nslot-1 SCAN-0002\nSCAN-0003\nbad label here\n")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SCAN-0002", "SCAN-0003"} {
		b := l.stockBoard(t, want, board.Config{})
		res, err := st.Provision(ctx, slot, b.Path())
		if err != nil || res.Record.Serial != want {
			t.Errorf("Provision after ReadScans = %+v, %v; want serial %s", res, err, want)
		}
	}
}

// TestStockSerialFile reads a board's serial number from a file on it,
// and refuses a board without one, or with a bad one.
func TestStockSerialFile(t *testing.T) {
	ctx := context.Background()
	l := stockLine(t, "board: {profile: stock, serial: {source: file, path: /lfs1/serial}}\n")
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "fs", "lfs1"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fs", "lfs1", "serial"), []byte("FILE-0042\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := board.Start(board.Config{Serial: "x", Profile: board.ProfileStock, Dir: dir, TPM: board.TPMNone, Baud: 2_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	none := l.stockBoard(t, "y", board.Config{})
	st := l.station(t, station.ModeSymmetricKey, b)
	slot := station.SlotConfig{Name: "slot-1"}
	if res, err := st.Provision(ctx, slot, b.Path()); err != nil || res.Record.Serial != "FILE-0042" {
		t.Fatalf("Provision(board with /lfs1/serial) = %+v, %v", res, err)
	}
	_, err = st.Provision(ctx, slot, none.Path())
	var be *station.BoardError
	if !errors.As(err, &be) || !strings.Contains(be.Message, "has no serial number file /lfs1/serial") {
		t.Errorf("Provision(board without the file) = %v, want the operator told the file is missing", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fs", "lfs1", "serial"), []byte("two words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = st.Provision(ctx, slot, b.Path())
	if !errors.As(err, &be) || !strings.Contains(be.Message, "does not hold a valid serial number") {
		t.Errorf("Provision(board with a bad serial file) = %v, want it refused", err)
	}
}

// TestStockSequenceKeepsSerial: a sequence line that keeps the serial
// number on the board (board.serial.path) gives a board provisioned again
// the same number, and the next board the next.
func TestStockSequenceKeepsSerial(t *testing.T) {
	ctx := context.Background()
	l := stockLine(t, "board: {profile: stock, serial: {source: sequence, prefix: ZK-, digits: 4, path: /lfs1/serial}}\n")
	a, b := l.stockBoard(t, "a", board.Config{}), l.stockBoard(t, "b", board.Config{})
	st := l.station(t, station.ModeSymmetricKey, a)
	slot := station.SlotConfig{Name: "slot-1"}
	for i, tt := range []struct {
		b    *board.Board
		want string
	}{{a, "ZK-0001"}, {a, "ZK-0001"}, {b, "ZK-0002"}} {
		res, err := st.Provision(ctx, slot, tt.b.Path())
		if err != nil || res.Record.Serial != tt.want {
			t.Fatalf("run %d: Provision = %+v, %v; want serial %s", i, res, err, tt.want)
		}
		if got, _ := tt.b.ReadFile("/lfs1/serial"); strings.TrimSpace(string(got)) != tt.want {
			t.Errorf("run %d: the board's /lfs1/serial holds %q, want %s", i, got, tt.want)
		}
	}
}

// TestStockFaults: a board whose file system is full, and one whose line
// drops half-way through the write, each fail with a clear message; a
// retry passes once the cause is gone.
func TestStockFaults(t *testing.T) {
	ctx := context.Background()
	slot := station.SlotConfig{Name: "slot-1"}
	t.Run("full", func(t *testing.T) {
		l := stockLine(t, stockSequence)
		b := l.stockBoard(t, "full", board.Config{FSSize: 4096})
		junk := filepath.Join(b.Config().Dir, "fs", "lfs1", "log.bin")
		if err := os.WriteFile(junk, make([]byte, 4000), 0o600); err != nil {
			t.Fatal(err)
		}
		st := l.station(t, station.ModeSymmetricKey, b)
		_, err := st.Provision(ctx, slot, b.Path())
		var be *station.BoardError
		if !errors.As(err, &be) || be.Step != station.StepWrite || !strings.Contains(be.Message, "file system is full") {
			t.Fatalf("Provision(full board) = %v, want the write to fail as a full file system", err)
		}
		rec, _ := l.store.Get(ctx, be.Serial)
		if rec == nil || rec.Result != records.ResultFailed || rec.FailedStep != station.StepWrite {
			t.Errorf("record of the full board = %+v, want failed at %s", rec, station.StepWrite)
		}
		os.Remove(junk)
		res, err := st.Provision(ctx, slot, b.Path())
		if err != nil {
			t.Fatalf("Provision(room made) = %v", err)
		}
		if res.Record.Serial != be.Serial {
			t.Errorf("the retried board got serial %s, it had %s", res.Record.Serial, be.Serial)
		}
	})
	t.Run("drop", func(t *testing.T) {
		l := stockLine(t, stockSequence)
		l.extra += "timeout: 300ms\n"
		b := l.stockBoard(t, "drop", board.Config{})
		st := l.station(t, station.ModeSymmetricKey, b)
		b.SetFaults(board.Faults{DropAfter: 300})
		_, err := st.Provision(ctx, slot, b.Path())
		var be *station.BoardError
		if !errors.As(err, &be) || !strings.Contains(be.Message, "stopped answering while the configuration was written") {
			t.Fatalf("Provision(line dropped mid-write) = %v, want the operator told the board stopped answering", err)
		}
		b.SetFaults(board.Faults{})
		if _, err := st.Provision(ctx, slot, b.Path()); err != nil {
			t.Errorf("Provision(retry) = %v", err)
		}
	})
}

// TestStockNextBoard: a slot that provisioned a stock board takes the next
// one once the board on its port no longer holds the configuration it was
// given, though the port never went away; the board left on it is not
// run twice.
func TestStockNextBoard(t *testing.T) {
	l := stockLine(t, stockSequence)
	b := l.stockBoard(t, "on-fixture", board.Config{BootTime: time.Millisecond})
	var mu sync.Mutex
	passed := 0
	first := make(chan struct{})
	l.onEvent = func(e station.Event) {
		if e.Result == station.Passed {
			mu.Lock()
			passed++
			if passed == 1 {
				close(first)
			}
			mu.Unlock()
		}
	}
	st := l.station(t, station.ModeSymmetricKey, b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := st.Run(ctx, station.RunOptions{Count: 2, Poll: 10 * time.Millisecond})
		done <- err
	}()
	<-first
	// The board stays on the fixture: probed a few times, it is not run
	// again.
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	if passed != 1 {
		t.Errorf("%d runs passed with the same board left on the fixture, want 1", passed)
	}
	mu.Unlock()
	// Another board (blank: no configuration) takes its place.
	if err := os.Remove(filepath.Join(b.Config().Dir, "fs", "lfs1", "zerotouch.conf")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	for _, serial := range []string{"ZS-000001", "ZS-000002"} {
		if rec, err := l.store.Get(context.Background(), serial); err != nil || rec.Result != records.ResultPassed {
			t.Errorf("record %s = %+v, %v; want passed", serial, rec, err)
		}
	}
}
