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
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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
	if l.dps != nil {
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
				if want := map[bool]int{true: 0, false: 1}[hash]; fallback != want {
					t.Errorf("the log says %d times that the board has no fs hash command, want %d (once per board)", fallback, want)
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
