package station_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"zerotouch/board"
	"zerotouch/ca"
	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/labels"
	"zerotouch/station"
	"zerotouch/station/records"
)

// line is a station's world for one test: records, a CA, a DPS emulator.
type line struct {
	store  *records.Store
	issuer ca.Issuer
	dps    *emulator.Server
	client *enroll.Client
	events []station.Event
	mu     sync.Mutex
	// extra is YAML added to the configurations build makes; enrolled
	// becomes their stations' Deps.Enrolled.
	extra    string
	enrolled func(ctx context.Context, serial string) error
	log      *slog.Logger        // the stations' logger; nil discards
	onEvent  func(station.Event) // the stations' events; nil: l.event
	printer  labels.Printer      // the stations' label printer; nil: none
}

func newLine(t *testing.T) *line {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	store, err := records.Open(ctx, filepath.Join(dir, "records.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	issuer, err := ca.Init(ctx, filepath.Join(dir, "ca"), ca.InitOptions{Password: []byte("test password")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { issuer.Close() })
	dps, err := emulator.Start(ctx, "127.0.0.1:0", filepath.Join(dir, "dps"), emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dps.Close() })
	cs, _ := enroll.ParseConnectionString(dps.ConnectionString)
	client, err := enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: dps.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	return &line{store: store, issuer: issuer, dps: dps, client: client}
}

func (l *line) event(e station.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

var groupKey = []byte("the enrollment group's primary key")

func (l *line) station(t *testing.T, mode string, boards ...*board.Board) *station.Station {
	t.Helper()
	return l.stationWith(t, mode, nil, nil, boards...)
}

// saw reports whether an event of step came.
func (l *line) saw(step string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Step == step {
			return true
		}
	}
	return false
}

// stationAt is a station whose slots are the given port paths.
func (l *line) stationAt(t *testing.T, mode string, ports ...string) *station.Station {
	t.Helper()
	return l.build(t, mode, nil, nil, ports)
}

func (l *line) stationWith(t *testing.T, mode string, fw *station.FirmwareConfig, image []byte, boards ...*board.Board) *station.Station {
	t.Helper()
	var ports []string
	for _, b := range boards {
		ports = append(ports, b.Path())
	}
	return l.build(t, mode, fw, image, ports)
}

func (l *line) build(t *testing.T, mode string, fw *station.FirmwareConfig, image []byte, ports []string) *station.Station {
	t.Helper()
	var y strings.Builder
	scope := "0ne0001A2B3"
	if l.extra != "" {
		scope = l.dps.IDScope // the emulator's: boards register there
	}
	y.WriteString("station: st-test\nline: line-test\nattestation: " + mode + "\nid_scope: " + scope + "\n")
	y.WriteString("ca:\n  dir: unused-here\nsymmetric_key:\n  group_id: line-test-group\nslots:\n")
	for _, p := range ports {
		y.WriteString("  - port: " + p + "\n")
	}
	y.WriteString("baud: 2000000\n" + l.extra)
	cfg, err := station.ParseConfig([]byte(y.String()))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Firmware = fw
	tmpl, err := fwtemplates.Builtin("json")
	if err != nil {
		t.Fatal(err)
	}
	events := l.event
	if l.onEvent != nil {
		events = l.onEvent
	}
	st, err := station.New(cfg, station.Deps{Store: l.store, Template: tmpl, Issuer: l.issuer, GroupKey: groupKey, Firmware: image, Events: events,
		Enrolled: l.enrolled, Logger: l.log, Printer: l.printer})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func startBoard(t *testing.T, serial, tpm string) *board.Board {
	t.Helper()
	b, err := board.Start(board.Config{Serial: serial, Dir: t.TempDir(), TPM: tpm, Baud: 2_000_000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestModes provisions a board in each attestation mode, end to end:
// the board's written configuration, its record, and its enrollment in
// the DPS emulator once uploaded.
func TestModes(t *testing.T) {
	for _, tt := range []struct {
		mode, tpm string
		attest    string
		enrolled  bool
	}{
		{station.ModeTPM, board.TPMSim, enroll.AttestationTPM, true},
		{station.ModeX509TPM, board.TPMSim, enroll.AttestationX509, true},
		{station.ModeX509Keygen, board.TPMNone, enroll.AttestationX509, true},
		{station.ModeSymmetricKey, board.TPMNone, enroll.AttestationSymmetricKey, false},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			ctx := context.Background()
			l := newLine(t)
			b := startBoard(t, "ZT-"+strings.ToUpper(tt.mode), tt.tpm)
			st := l.station(t, tt.mode, b)
			sum, err := st.Run(ctx, station.RunOptions{Once: true})
			if err != nil || sum.Passed != 1 || sum.Failed != 0 {
				t.Fatalf("Run = %+v, %v; events %+v", sum, err, l.events)
			}
			if !b.Provisioned() {
				t.Errorf("the board is not marked provisioned")
			}
			rec, err := l.store.Get(ctx, b.Serial())
			if err != nil {
				t.Fatal(err)
			}
			conf, err := b.ReadFile(station.DefaultConfigPath)
			if err != nil {
				t.Fatal(err)
			}
			sum256 := sha256.Sum256(conf)
			if !bytes.Equal(rec.ConfigSHA256, sum256[:]) {
				t.Errorf("record's config hash %x, board holds %x", rec.ConfigSHA256, sum256)
			}
			for _, want := range []string{"0ne0001A2B3", rec.RegistrationID, station.DefaultGlobalEndpoint} {
				if !bytes.Contains(conf, []byte(want)) {
					t.Errorf("the board's configuration lacks %q:\n%s", want, conf)
				}
			}
			switch tt.mode {
			case station.ModeTPM:
				if len(rec.RegistrationID) != 52 || len(rec.EKPublic) == 0 {
					t.Errorf("TPM record: registration ID %q, EK %d bytes", rec.RegistrationID, len(rec.EKPublic))
				}
			case station.ModeX509TPM, station.ModeX509Keygen:
				if !strings.Contains(string(conf), "BEGIN CERTIFICATE") && !strings.Contains(string(conf), `BEGIN CERTIFICATE`) {
					t.Errorf("X.509 configuration has no certificate chain")
				}
				if rec.CertSerial == "" || rec.RegistrationID != strings.ToLower(b.Serial()) {
					t.Errorf("X.509 record: serial %q, registration ID %q", rec.CertSerial, rec.RegistrationID)
				}
			case station.ModeSymmetricKey:
				m := hmac.New(sha256.New, groupKey)
				m.Write([]byte(rec.RegistrationID))
				if key := base64.StdEncoding.EncodeToString(m.Sum(nil)); !bytes.Contains(conf, []byte(key)) {
					t.Errorf("the configuration lacks the derived key %s", key)
				}
			}
			if (rec.Enrollment != nil) != tt.enrolled {
				t.Fatalf("record's enrollment = %+v, want one: %v", rec.Enrollment, tt.enrolled)
			}
			if !tt.enrolled {
				return
			}
			up, err := enroll.NewUploader(enroll.UploaderConfig{Client: l.client, Queue: l.store, Quota: 600000})
			if err != nil {
				t.Fatal(err)
			}
			if stats, err := up.Run(ctx); err != nil || stats.Uploaded != 1 {
				t.Fatalf("upload = %+v, %v", stats, err)
			}
			e, err := l.client.Get(ctx, rec.RegistrationID)
			if err != nil {
				t.Fatalf("the enrollment is not in DPS: %v", err)
			}
			if e.Attestation.Type != tt.attest {
				t.Errorf("enrollment attestation %q, want %q", e.Attestation.Type, tt.attest)
			}
			if n, _ := l.dps.Emulator.Writes(ctx, rec.RegistrationID); n != 1 {
				t.Errorf("enrollment written %d times", n)
			}

			// The same board again: one record; a TPM board's enrollment
			// is unchanged, so nothing more goes to DPS.
			if _, err := st.Provision(ctx, station.SlotConfig{Name: "slot-1"}, b.Path()); err != nil {
				t.Fatalf("second run: %v", err)
			}
			if tt.mode == station.ModeTPM {
				if stats, _ := up.Run(ctx); stats.Requests != 0 {
					t.Errorf("second upload sent %d requests, want none", stats.Requests)
				}
			}
			list, _ := l.store.List(ctx, records.Filter{})
			if len(list) != 1 {
				t.Errorf("%d records after a second run, want 1", len(list))
			}
		})
	}
}
