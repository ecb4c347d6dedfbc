package zephyrtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"zerotouch/ca"
	"zerotouch/enroll/emulator"
	"zerotouch/flasher"
	"zerotouch/internal/swtpm"
	"zerotouch/station/records"
	zttpm "zerotouch/tpm"
)

// What the module's native_sim build (native_sim.conf) says and keeps.
const (
	serial     = "ZT-SIM-0001"
	regID      = "zt-sim-0001" // the station lower-cases registration IDs
	configPath = "/lfs1/zerotouch/config"
	certPath   = "/lfs1/zerotouch/device.pem"
	statePath  = "/lfs1/zerotouch.state"
	itsDir     = "/lfs1/.psa"
	keyIDBase  = 0x3a740000
)

const howToBuild = `ZEROTOUCH_ZEPHYR_EXE is not set: build the module for native_sim with the test bed's script
(its header names the repository snapshots MIR must hold) and point the test at the executable:
  MIR=/work/.mirror W=/work/zephyr-bed MBEDTLS=1 MODULE=$PWD/firmware/zephyr \
    CONF="$PWD/firmware/zephyr/zerotouch.conf;$PWD/firmware/zephyr/native_sim.conf" /work/shared/zephyr/bed.sh
  ZEROTOUCH_ZEPHYR_EXE=/work/zephyr-bed/build/zephyr/zephyr.exe go test -v ./firmware/zephyr/test/
(firmware/zephyr/README.md, "Testing on native_sim")`

// waitLimit bounds every wait for the simulator: generous, so that a slow
// machine is not a failure, and finite, so that a hung board is.
const waitLimit = 2 * time.Minute

var (
	buildOnce    sync.Once
	zerotouchExe string
	buildErr     error
)

// zerotouchBinary builds cmd/zerotouch once for the package's tests.
func zerotouchBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "zerotouch-zephyr-")
		if err != nil {
			buildErr = err
			return
		}
		zerotouchExe = filepath.Join(dir, "zerotouch")
		out, err := exec.Command("go", "build", "-o", zerotouchExe, "zerotouch/cmd/zerotouch").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/zerotouch: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return zerotouchExe
}

func TestMain(m *testing.M) {
	code := m.Run()
	if zerotouchExe != "" {
		os.RemoveAll(filepath.Dir(zerotouchExe))
	}
	os.Exit(code)
}

// sim is one run of the native_sim executable: a board whose flash is a
// file, so that a new run on the same file is the board after a reset.
type sim struct {
	t       *testing.T
	flash   string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	port    string // MCUmgr's UART
	tpmPort string // the second UART, the TPM's
}

var ptyLine = regexp.MustCompile(`(uart|uart_1) connected to pseudotty: (/dev/pts/\d+)`)

// startSim starts the board on flash (a new file for a new board).
func startSim(t *testing.T, flash string) *sim {
	t.Helper()
	exe := os.Getenv("ZEROTOUCH_ZEPHYR_EXE")
	if exe == "" {
		t.Skip(howToBuild)
	}
	s := &sim{t: t, flash: flash, done: make(chan struct{})}
	logf, err := os.CreateTemp(filepath.Dir(flash), "zephyr-*.log")
	if err != nil {
		t.Fatal(err)
	}
	s.logPath = logf.Name()
	args := []string{"-flash=" + flash}
	if hasSeed(exe) {
		// A seed of its own for each run: native_sim's entropy is a
		// PRNG, and a build without an entropy driver has no -seed.
		args = append(args, fmt.Sprintf("-seed=%d", rand.Uint32()))
	}
	s.cmd = exec.Command(exe, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", exe, err)
	}
	go func() { s.cmd.Wait(); logf.Close(); close(s.done) }()
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("board log (%s):\n%s", flash, s.log())
		}
	})
	s.waitLog(func(text string) bool {
		for _, m := range ptyLine.FindAllStringSubmatch(text, -1) {
			if m[1] == "uart" {
				s.port = m[2]
			} else {
				s.tpmPort = m[2]
			}
		}
		return s.port != "" && s.tpmPort != ""
	}, "the pseudo-terminals")
	return s
}

var seedOption sync.Map // executable -> whether it takes -seed

// hasSeed reports whether the native_sim executable takes -seed (its
// entropy driver is built in), from its usage text.
func hasSeed(exe string) bool {
	if v, ok := seedOption.Load(exe); ok {
		return v.(bool)
	}
	out, _ := exec.Command(exe, "--help").CombinedOutput()
	has := strings.Contains(string(out), "-seed=")
	seedOption.Store(exe, has)
	return has
}

// stop kills the board, as pulling its power would.
func (s *sim) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Kill()
	<-s.done
}

func (s *sim) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

// waitLog waits until ok holds of the board's console output (Zephyr's log
// is written by its own thread, after the answer that caused it).
func (s *sim) waitLog(ok func(string) bool, what string) string {
	s.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		text := s.log()
		if ok(text) {
			return text
		}
		select {
		case <-s.done:
			s.t.Fatalf("the board exited waiting for %s; its log:\n%s", what, text)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %s from the board in %v; its log:\n%s", what, waitLimit, text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// keyLog waits for the board's log line about key slot's public key
// (what: made, kept, committed) after the first n bytes of the log and
// returns the key's fingerprint: the first 8 bytes of the sha256 of its
// SubjectPublicKeyInfo, in hex.
func (s *sim) keyLog(what string, after int) (slot, fingerprint string) {
	s.t.Helper()
	re := regexp.MustCompile(what + ` key (\d) \(PSA key 0x[0-9a-f]+\): public key sha256 ([0-9a-f]{16})`)
	s.waitLog(func(text string) bool {
		if len(text) < after {
			return false
		}
		if m := re.FindStringSubmatch(text[after:]); m != nil {
			slot, fingerprint = m[1], m[2]
			return true
		}
		return false
	}, "log of the "+what+" key")
	return slot, fingerprint
}

func fingerprint(pub any) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "unmarshalable: " + err.Error()
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8])
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// connect opens the station's link to the board.
func connect(t *testing.T, port string, protocol int) *flasher.Client {
	t.Helper()
	c, err := flasher.Open(testCtx(t), port, flasher.Options{Name: "native_sim", Timeout: 10 * time.Second, Protocol: protocol})
	if err != nil {
		t.Fatalf("open %s: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// boardState reads the module's state file through MCUmgr's file system
// group, as key=value pairs.
func boardState(t *testing.T, c *flasher.Client) map[string]string {
	t.Helper()
	b, err := c.FileDownload(testCtx(t), statePath, nil)
	if err != nil {
		t.Fatalf("download %s: %v", statePath, err)
	}
	st := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			st[k] = v
		}
	}
	return st
}

// line is what a station needs: the DPS emulator, a local CA, a records
// file, and the zerotouch binary.
type line struct {
	dir, db string
	dps     *emulator.Server
	conn    string
	caDir   string
	caPW    string
}

func newLine(t *testing.T) *line {
	t.Helper()
	l := &line{dir: t.TempDir()}
	l.db = filepath.Join(l.dir, "records.db")
	srv, err := emulator.Start(context.Background(), "127.0.0.1:0", t.TempDir(), emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	l.dps = srv
	l.conn = filepath.Join(l.dir, "dps-connection-string")
	l.caDir = filepath.Join(l.dir, "ca")
	l.caPW = filepath.Join(l.dir, "ca-password")
	if err := os.WriteFile(l.conn, []byte(srv.ConnectionString+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.caPW, []byte("line password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	local, err := ca.Init(context.Background(), l.caDir, ca.InitOptions{Password: []byte("line password")})
	if err != nil {
		t.Fatal(err)
	}
	local.Close()
	return l
}

// config writes a station.yaml for one slot on port.
func (l *line) config(t *testing.T, attestation, port string) string {
	t.Helper()
	var y strings.Builder
	fmt.Fprintf(&y, "station: zephyr\nline: native_sim\nattestation: %s\nid_scope: 0ne0001A2B3\ntimeout: 10s\n", attestation)
	fmt.Fprintf(&y, "records: %s\nlabels: {dir: %s}\n", l.db, filepath.Join(l.dir, "labels"))
	fmt.Fprintf(&y, "template:\n  path: %s\n", configPath)
	if strings.HasPrefix(attestation, "x509") {
		fmt.Fprintf(&y, "  certificate_path: %s\n", certPath)
		fmt.Fprintf(&y, "ca:\n  dir: %s\n  password_file: %s\n", l.caDir, l.caPW)
	}
	fmt.Fprintf(&y, "dps:\n  connection_string_file: %s\n  ca_file: %s\n  quota: 60000\n", l.conn, l.dps.CAFile)
	fmt.Fprintf(&y, "slots:\n  - port: %s\n", port)
	name := filepath.Join(l.dir, "station-"+attestation+".yaml")
	if err := os.WriteFile(name, []byte(y.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// zerotouch runs the zerotouch command and returns its exit code and
// output.
func zerotouch(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(testCtx(t), zerotouchBinary(t), args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("zerotouch %s: %v", strings.Join(args, " "), err)
	}
	t.Logf("zerotouch %s: exit %d\n%s", strings.Join(args, " "), code, errOut.String())
	return code, out.String(), errOut.String()
}

// run provisions the board on the configured slot: zerotouch run --once.
func (l *line) run(t *testing.T, config string) (int, string) {
	t.Helper()
	code, out, _ := zerotouch(t, "run", "--config", config, "--once", "--operator", "zephyr-test")
	return code, out
}

func (l *line) record(t *testing.T) *records.Record {
	t.Helper()
	st, err := records.OpenReadOnly(testCtx(t), l.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec, err := st.Get(testCtx(t), serial)
	if err != nil {
		t.Fatalf("record of %s: %v", serial, err)
	}
	return rec
}

func leaf(t *testing.T, chain []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(chain)
	if blk == nil {
		t.Fatalf("no PEM certificate in %q", chain)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// checkProvisioned checks the board against the station's record: the
// board's configuration hashes to the committed value, the record's
// certificate is the one on the board and its key is the board's
// committed PSA key (fingerprint from the board's log), and the state
// says provisioned. committedFP is unused in tpm mode (no certificate).
func checkProvisioned(t *testing.T, c *flasher.Client, rec *records.Record, committedFP string) {
	t.Helper()
	ctx := testCtx(t)
	if rec.Result != records.ResultPassed {
		t.Errorf("record result %q, want %q", rec.Result, records.ResultPassed)
	}
	conf, err := c.FileDownload(ctx, configPath, nil)
	if err != nil {
		t.Fatalf("download %s: %v", configPath, err)
	}
	if sum := sha256.Sum256(conf); !bytes.Equal(sum[:], rec.ConfigSHA256) {
		t.Errorf("sha256 of the board's %s = %x, the record's %x", configPath, sum, []byte(rec.ConfigSHA256))
	}
	st := boardState(t, c)
	if st["provisioned"] != "1" || st["config_sha256"] != hex.EncodeToString(rec.ConfigSHA256) || st["config_path"] != configPath {
		t.Errorf("board state %v, want provisioned=1 config_sha256=%x config_path=%s", st, []byte(rec.ConfigSHA256), configPath)
	}
	if rec.CertificateChain == "" {
		return // tpm mode
	}
	onBoard, err := c.FileDownload(ctx, certPath, nil)
	if err != nil {
		t.Fatalf("download %s: %v", certPath, err)
	}
	if string(onBoard) != rec.CertificateChain {
		t.Errorf("the board's %s differs from the record's chain", certPath)
	}
	cert := leaf(t, []byte(rec.CertificateChain))
	if cert.Subject.CommonName != regID {
		t.Errorf("certificate CN %q, want %q", cert.Subject.CommonName, regID)
	}
	if fp := fingerprint(cert.PublicKey); fp != committedFP {
		t.Errorf("certificate key %s, the board's committed PSA key %s", fp, committedFP)
	}
}

// TestProvisionX509Keygen: the station provisions the board in
// x509-keygen mode end to end; the certificate's key is the board's PSA
// key, the configuration hashes to the committed value, and after a reset
// the board is still provisioned with the same key.
func TestProvisionX509Keygen(t *testing.T) {
	flash := filepath.Join(t.TempDir(), "flash.bin")
	s := startSim(t, flash)
	l := newLine(t)

	code, out, _ := zerotouch(t, "link", "identity", "--port", s.port)
	var id flasher.Identity
	if code != 0 || json.Unmarshal([]byte(out), &id) != nil || id.Serial != serial || !id.Has(flasher.CapKeygen) {
		t.Fatalf("zerotouch link identity: exit %d, %s", code, out)
	}

	if code, out := l.run(t, l.config(t, "x509-keygen", s.port)); code != 0 {
		t.Fatalf("zerotouch run: exit %d\n%s\nboard log:\n%s", code, out, s.log())
	}
	slot, fp := s.keyLog("committed", 0)
	rec := l.record(t)
	c := connect(t, s.port, 0)
	checkProvisioned(t, c, rec, fp)
	if n, _ := l.dps.Emulator.Writes(testCtx(t), regID); n != 1 {
		t.Errorf("enrollment %s written to DPS %d times, want 1", regID, n)
	}
	if st := boardState(t, c); st["committed_key"] != slot {
		t.Errorf("board state committed_key=%s, the log's %s", st["committed_key"], slot)
	}
	c.Close()

	// A reset (the power cut: the process killed) keeps the flag and
	// the key, which the board reloads from PSA storage.
	s.stop()
	s = startSim(t, flash)
	c = connect(t, s.port, 0)
	if _, err := c.Identity(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	s.waitLog(func(text string) bool {
		return strings.Contains(text, "provisioned: config "+configPath+" sha256 "+hex.EncodeToString(rec.ConfigSHA256))
	}, "provisioned state after the reset")
	if slot2, fp2 := s.keyLog("committed", 0); slot2 != slot || fp2 != fp {
		t.Errorf("after the reset the committed key is %s (%s), before it %s (%s)", slot2, fp2, slot, fp)
	}
	checkProvisioned(t, c, rec, fp)
}

// TestGroupErrors: each refusal answers the group code the station maps to
// its sentinel, in both SMP protocol versions; the CN goes into the CSR as
// given; a repeated keygen keeps its key until a commit.
func TestGroupErrors(t *testing.T) {
	s := startSim(t, filepath.Join(t.TempDir(), "flash.bin"))
	for _, protocol := range []int{2, 1} {
		t.Run(fmt.Sprintf("protocol %d", protocol), func(t *testing.T) {
			c := connect(t, s.port, protocol)
			ctx := testCtx(t)
			good := []byte("{\"id\": 1}\n")
			sum := sha256.Sum256(good)
			if err := c.FileWrite(ctx, "/lfs1/errors.cfg", good, false, nil); err != nil {
				t.Fatal(err)
			}
			tests := []struct {
				name string
				call func() error
				want error
			}{
				{"commit of a missing file", func() error { return c.Commit(ctx, "/lfs1/missing.cfg", sum[:]) }, flasher.ErrNotFound},
				{"commit of another hash", func() error {
					other := sha256.Sum256([]byte("other"))
					return c.Commit(ctx, "/lfs1/errors.cfg", other[:])
				}, flasher.ErrMismatch},
				{"keygen rsa-2048", func() error { _, err := c.Keygen(ctx, flasher.AlgRSA2048, "cn"); return err }, flasher.ErrNotSupported},
				{"keygen ed25519", func() error { _, err := c.Keygen(ctx, "ed25519", "cn"); return err }, flasher.ErrNotSupported},
				{"keygen empty CN", func() error { _, err := c.Keygen(ctx, flasher.AlgECDSAP256, ""); return err }, flasher.ErrInvalid},
				{"keygen 65-byte CN", func() error {
					_, err := c.Keygen(ctx, flasher.AlgECDSAP256, strings.Repeat("a", 65))
					return err
				}, flasher.ErrInvalid},
				{"keygen 64-byte CN", func() error {
					_, err := c.Keygen(ctx, flasher.AlgECDSAP256, strings.Repeat("a", 64))
					return err
				}, nil},
				{"commit", func() error { return c.Commit(ctx, "/lfs1/errors.cfg", sum[:]) }, nil},
			}
			for _, tt := range tests {
				err := tt.call()
				if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
					t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
				}
			}
		})
	}

	c := connect(t, s.port, 0)
	ctx := testCtx(t)
	if st := boardState(t, c); st["provisioned"] != "1" || st["config_path"] != "/lfs1/errors.cfg" {
		t.Errorf("after the commit: state %v, want provisioned=1 config_path=/lfs1/errors.cfg", st)
	}
	// Rewriting the committed file unprovisions the board.
	if err := c.FileWrite(ctx, "/lfs1/errors.cfg", []byte("changed"), false, nil); err != nil {
		t.Fatal(err)
	}
	if st := boardState(t, c); st["provisioned"] != "0" {
		t.Errorf("after rewriting the configuration: provisioned=%s, want 0", st["provisioned"])
	}

	// The CN is the attribute's value as sent: no DN escaping is lost.
	odd := `x,o=evil+cn="q"\<>;#é`
	csr1, err := c.Keygen(ctx, flasher.AlgECDSAP256, odd)
	if err != nil {
		t.Fatal(err)
	}
	if csr1.Subject.CommonName != odd || len(csr1.Subject.Names) != 1 {
		t.Errorf("CSR subject %v (CN %q), want the one CN %q", csr1.Subject.Names, csr1.Subject.CommonName, odd)
	}
	csr2, err := c.Keygen(ctx, flasher.AlgECDSAP256, odd)
	if err != nil {
		t.Fatal(err)
	}
	if fingerprint(csr2.PublicKey) != fingerprint(csr1.PublicKey) {
		t.Errorf("keygen again for the same CN made another key")
	}
	csr3, err := c.Keygen(ctx, flasher.AlgECDSAP256, "another")
	if err != nil {
		t.Fatal(err)
	}
	if fingerprint(csr3.PublicKey) == fingerprint(csr1.PublicKey) {
		t.Errorf("keygen for another CN kept the key")
	}

	// MCUmgr's file system group may not reach the key store, nor
	// write the state.
	st := boardState(t, c)
	keyFile := fmt.Sprintf("%s/%016x", itsDir, keyIDBase+int(st["pending_key"][0]-'0'))
	// The refusal is fs_mgmt's "open failed" (README.md says why not
	// MGMT_ERR_EACCESSDENIED); the file system group still answers
	// after it.
	refused := func(err error) bool {
		var be *flasher.Error
		return errors.As(err, &be) && be.Group == flasher.GroupFS && be.GroupRC == flasher.FSRCFileOpenFailed
	}
	if _, err := c.FileDownload(ctx, keyFile, nil); !refused(err) {
		t.Errorf("download %s: %v, want refused", keyFile, err)
	}
	if err := c.FileWrite(ctx, statePath, []byte("provisioned=1\n"), false, nil); !refused(err) {
		t.Errorf("write %s: %v, want refused", statePath, err)
	}
	// Paths that name the same files otherwise are not clean paths:
	// refused as invalid names, whatever file they reach.
	for _, name := range []string{
		"/lfs1/./.psa" + strings.TrimPrefix(keyFile, itsDir),
		"/lfs1//zerotouch.state",
		"/lfs1/zerotouch/../zerotouch.state",
	} {
		if _, err := c.FileDownload(ctx, name, nil); !errors.Is(err, flasher.ErrInvalid) {
			t.Errorf("download %s: %v, want an invalid name", name, err)
		}
	}
	if err := c.FileWrite(ctx, "/lfs1/./zerotouch.state", []byte("provisioned=1\n"), false, nil); !errors.Is(err, flasher.ErrInvalid) {
		t.Errorf("write /lfs1/./zerotouch.state: %v, want an invalid name", err)
	}
	if st2 := boardState(t, c); st2["pending_key"] != st["pending_key"] || st2["provisioned"] != "0" {
		t.Errorf("state after the refused write: %v, before: %v", st2, st)
	}
}

// bridge joins the board's TPM UART to swtpm's command port until the
// returned function closes both.
func bridge(t *testing.T, pty, addr string) (closeBridge func()) {
	t.Helper()
	p, err := flasher.OpenPort(pty, 115200)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		p.Close()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { copyCommands(conn, p); conn.Close(); wg.Done() }()
	go func() { io.Copy(p, conn); wg.Done() }()
	var once sync.Once
	closeBridge = func() { once.Do(func() { conn.Close(); p.Close(); wg.Wait() }) }
	t.Cleanup(closeBridge)
	return closeBridge
}

// copyCommands copies TPM commands from the board to swtpm, each in one
// write: swtpm takes what one read of its socket returns as the whole
// command, and the board's UART delivers a command a few bytes at a time.
func copyCommands(w io.Writer, r io.Reader) error {
	hdr := make([]byte, 10) // tag, commandSize, commandCode (TPM 2.0 Part 1, 18.2)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return err
		}
		size := binary.BigEndian.Uint32(hdr[2:6])
		if size < 10 || size > 4096 {
			return fmt.Errorf("TPM command of %d bytes from the board", size)
		}
		cmd := make([]byte, size)
		copy(cmd, hdr)
		if _, err := io.ReadFull(r, cmd[10:]); err != nil {
			return err
		}
		if _, err := w.Write(cmd); err != nil {
			return err
		}
	}
}

// TestProvisionTPM: the board's TPM is swtpm, through the second UART; the
// station provisions it in tpm mode (the EK is made through the board),
// and the EK and registration ID it records are those zerotouch tpm ek
// then reads from the same swtpm directly.
func TestProvisionTPM(t *testing.T) {
	s := startSim(t, filepath.Join(t.TempDir(), "flash.bin"))
	tpm, err := swtpm.Start(t.TempDir(), true)
	if errors.Is(err, swtpm.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tpm.Close() })

	closeBridge := bridge(t, s.tpmPort, tpm.Addr)
	c := connect(t, s.port, 0)
	if id, err := c.Identity(testCtx(t)); err != nil || !id.Has(flasher.CapTPM) {
		t.Fatalf("identity %+v, %v: want the tpm capability", id, err)
	}
	c.Close()
	l := newLine(t)
	if code, out := l.run(t, l.config(t, "tpm", s.port)); code != 0 {
		t.Fatalf("zerotouch run: exit %d\n%s", code, out)
	}
	rec := l.record(t)
	c = connect(t, s.port, 0)
	checkProvisioned(t, c, rec, "")
	c.Close()
	if n, _ := l.dps.Emulator.Writes(testCtx(t), rec.RegistrationID); n != 1 {
		t.Errorf("enrollment %s written to DPS %d times, want 1", rec.RegistrationID, n)
	}

	// A command repeated byte for byte is the station resending after a
	// lost answer: answered again, not run again (one object in the
	// TPM, one handle). GetRandom always runs.
	c = connect(t, s.port, 0)
	ctx := testCtx(t)
	cmd := commandBytes(t, func(tp transport.TPM) {
		tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(tp)
	})
	rsp1, err := c.TPMCommand(ctx, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if rc := binary.BigEndian.Uint32(rsp1[6:]); rc != 0 || len(rsp1) < 14 {
		t.Fatalf("CreatePrimary through the board: TPM rc %#x, response %x", rc, rsp1)
	}
	rsp2, err := c.TPMCommand(ctx, cmd)
	if err != nil || !bytes.Equal(rsp1, rsp2) {
		t.Errorf("CreatePrimary again: %x, %v; want the first answer %x", rsp2, err, rsp1)
	}
	handle := tpm2.TPMHandle(binary.BigEndian.Uint32(rsp1[10:]))
	if _, err := (tpm2.FlushContext{FlushHandle: handle}).Execute(c.TPM(ctx)); err != nil {
		t.Errorf("flush %#x: %v", handle, err)
	}
	if _, err := (tpm2.FlushContext{FlushHandle: handle + 1}).Execute(c.TPM(ctx)); err == nil {
		t.Errorf("a second object %#x was made in the TPM", handle+1)
	}
	random := commandBytes(t, func(tp transport.TPM) { tpm2.GetRandom{BytesRequested: 16}.Execute(tp) })
	r1, err1 := c.TPMCommand(ctx, random)
	r2, err2 := c.TPMCommand(ctx, random)
	if err1 != nil || err2 != nil || bytes.Equal(r1, r2) {
		t.Errorf("GetRandom twice: %x (%v), %x (%v); want two answers", r1, err1, r2, err2)
	}
	c.Close()

	// swtpm serves one connection at a time: the board's goes first.
	closeBridge()
	code, out, _ := zerotouch(t, "tpm", "ek", "--no-create", "--tpm", "tcp:"+tpm.Addr)
	var direct struct {
		RegistrationID string `json:"registrationId"`
		EndorsementKey string `json:"endorsementKey"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &direct) != nil || direct.RegistrationID == "" {
		t.Fatalf("zerotouch tpm ek --tpm tcp:%s: exit %d, %s", tpm.Addr, code, out)
	}
	if rec.RegistrationID != direct.RegistrationID {
		t.Errorf("registration ID through the board %q, directly %q", rec.RegistrationID, direct.RegistrationID)
	}
	if got := base64.StdEncoding.EncodeToString(rec.EKPublic); got != direct.EndorsementKey {
		t.Errorf("EK through the board %s, directly %s", got, direct.EndorsementKey)
	}
	t.Logf("registration ID %s, through the board and directly", rec.RegistrationID)
}

// TestProvisionX509TPM: x509-tpm mode through the board's TPM: the key is
// made and kept in swtpm, and the certificate the board holds is for the
// key swtpm then shows at the configured handle.
func TestProvisionX509TPM(t *testing.T) {
	s := startSim(t, filepath.Join(t.TempDir(), "flash.bin"))
	sw, err := swtpm.Start(t.TempDir(), true)
	if errors.Is(err, swtpm.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })
	closeBridge := bridge(t, s.tpmPort, sw.Addr)
	l := newLine(t)
	if code, out := l.run(t, l.config(t, "x509-tpm", s.port)); code != 0 {
		t.Fatalf("zerotouch run: exit %d\n%s", code, out)
	}
	closeBridge()

	conn, err := net.Dial("tcp", sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	direct := transport.FromReadWriteCloser(conn)
	defer direct.Close()
	const keyHandle = 0x81000002 // key.handle's default
	signer, err := zttpm.New(direct, zttpm.Options{}).LoadSigner(testCtx(t), keyHandle)
	if err != nil {
		t.Fatalf("the key at %#x in swtpm: %v", keyHandle, err)
	}
	c := connect(t, s.port, 0)
	checkProvisioned(t, c, l.record(t), fingerprint(signer.Public()))
}

// proxy is the station's link to the board over TCP (the slot's port is
// tcp://ADDR), through which a test cuts the line or resets the board.
type proxy struct {
	addr string
	// board returns the board's current pseudo-terminal.
	board func() string
	// mute drops what the board answers, as a line that lost its
	// receive wire would.
	mute atomic.Bool
	mu   sync.Mutex
	// cut, when set, is called with each line the station sends before
	// it goes on; false drops the connection there, the line unsent.
	cut func(line []byte) bool
}

func (p *proxy) setCut(cut func(line []byte) bool) {
	p.mu.Lock()
	p.cut = cut
	p.mu.Unlock()
}

func (p *proxy) pass(line []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut == nil || p.cut(line)
}

func newProxy(t *testing.T, board func() string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: ln.Addr().String(), board: board}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(conn)
		}
	}()
	return p
}

func (p *proxy) serve(conn net.Conn) {
	defer conn.Close()
	port, err := flasher.OpenPort(p.board(), 115200)
	if err != nil {
		return
	}
	defer port.Close()
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := port.Read(buf)
			if n > 0 && !p.mute.Load() {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		conn.Close()
	}()
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			if !p.pass(line) {
				return
			}
			if _, werr := port.Write(line); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// smpHeader decodes the SMP header of the first line of a packet (serial
// framing: 0x06 0x09, then base64 of the length, the header, ...).
func smpHeader(line []byte) (op uint8, group uint16, id uint8, ok bool) {
	if len(line) < 3 || line[0] != 0x06 || line[1] != 0x09 {
		return 0, 0, 0, false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(line[2:])))
	if err != nil || len(raw) < 2+8 {
		return 0, 0, 0, false
	}
	h := raw[2:] // SMP header: version and op, flags, length, group, sequence, ID
	return h[0] & 0x07, uint16(h[4])<<8 | uint16(h[5]), h[7], true
}

// TestFaults: the line cut in the middle of the write, then a reset while
// the commit is on its way; after each, a retry. The board ends provisioned
// once, with the configuration and the key the record holds, and the key
// is the one its first keygen made.
func TestFaults(t *testing.T) {
	flash := filepath.Join(t.TempDir(), "flash.bin")
	var mu sync.Mutex
	s := startSim(t, flash)
	current := func() *sim { mu.Lock(); defer mu.Unlock(); return s }
	p := newProxy(t, func() string { return current().port })
	l := newLine(t)
	config := l.config(t, "x509-keygen", "tcp://"+p.addr)

	// 1. The line drops during the write of the certificate and the
	// configuration (the first upload frame after the keygen).
	keygenSeen := false
	p.setCut(func(line []byte) bool {
		if op, group, id, ok := smpHeader(line); ok {
			if group == flasher.GroupProvisioning && id == flasher.CmdProvKeygen {
				keygenSeen = true
			}
			if keygenSeen && group == flasher.GroupFS && op == uint8(flasher.OpWrite) {
				return false
			}
		}
		return true
	})
	if code, out := l.run(t, config); code != 1 {
		t.Fatalf("run with the line cut: exit %d, want 1\n%s", code, out)
	}
	_, firstKey := s.keyLog("made", 0)

	// 2. The retry: the same CN finds the same key; the board is reset
	// (killed, then started again on its flash) while the commit is on
	// its way, so that it never arrives.
	logMark := len(s.log())
	var resetOnce sync.Once
	p.setCut(func(line []byte) bool {
		if _, group, id, ok := smpHeader(line); ok && group == flasher.GroupProvisioning && id == flasher.CmdProvCommit {
			resetOnce.Do(func() {
				old := current()
				old.stop()
				// The new board is started by the test below, once
				// the station has given up on this run.
			})
			return false
		}
		return true
	})
	if code, out := l.run(t, config); code != 1 {
		t.Fatalf("run with the reset at commit: exit %d, want 1\n%s", code, out)
	}
	if _, kept := s.keyLog("kept", logMark); kept != firstKey {
		t.Errorf("the retry's keygen used key %s, the first keygen made %s", kept, firstKey)
	}
	mu.Lock()
	s = startSim(t, flash)
	mu.Unlock()

	// 3. The last retry, on a clean line, passes.
	p.setCut(nil)
	if code, out := l.run(t, config); code != 0 {
		t.Fatalf("retry: exit %d\n%s\nboard log:\n%s", code, out, s.log())
	}
	_, committed := s.keyLog("committed", 0)
	if committed != firstKey {
		t.Errorf("committed key %s, the first keygen made %s", committed, firstKey)
	}
	rec := l.record(t)
	c := connect(t, s.port, 0)
	checkProvisioned(t, c, rec, committed)
	if n, _ := l.dps.Emulator.Writes(testCtx(t), regID); n != 1 {
		t.Errorf("enrollment %s written to DPS %d times, want 1", regID, n)
	}
	store, err := records.OpenReadOnly(testCtx(t), l.db)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	all, err := store.List(testCtx(t), records.Filter{})
	if err != nil || len(all) != 1 {
		t.Errorf("records: %d (%v), want the one board's", len(all), err)
	}
}

// TestFaultResetAfterCommit: the board commits, and is reset before its
// answer reaches the station. The station's retry rewrites the board and
// makes a new key (the last one was committed); the board ends
// provisioned once, with the configuration and the key the record holds.
func TestFaultResetAfterCommit(t *testing.T) {
	flash := filepath.Join(t.TempDir(), "flash.bin")
	var mu sync.Mutex
	s := startSim(t, flash)
	current := func() *sim { mu.Lock(); defer mu.Unlock(); return s }
	p := newProxy(t, func() string { return current().port })
	l := newLine(t)
	config := l.config(t, "x509-keygen", "tcp://"+p.addr)

	p.setCut(func(line []byte) bool {
		if _, group, id, ok := smpHeader(line); ok && group == flasher.GroupProvisioning && id == flasher.CmdProvCommit && !p.mute.Swap(true) {
			// The commit goes on, its answer is lost, and once
			// the board has committed it is reset.
			board := current()
			go func() {
				for deadline := time.Now().Add(waitLimit); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					if strings.Contains(board.log(), "provisioned: config") {
						break
					}
				}
				board.stop()
			}()
		}
		return true
	})
	if code, out := l.run(t, config); code != 1 {
		t.Fatalf("run with the reset after the commit: exit %d, want 1\n%s", code, out)
	}
	_, lostKey := s.keyLog("committed", 0)
	if !strings.Contains(s.log(), "provisioned: config "+configPath) {
		t.Fatalf("the board did not commit before its reset; its log:\n%s", s.log())
	}

	mu.Lock()
	s = startSim(t, flash)
	mu.Unlock()
	p.mute.Store(false)
	p.setCut(nil)
	if code, out := l.run(t, config); code != 0 {
		t.Fatalf("retry: exit %d\n%s", code, out)
	}
	// The reloaded state named the lost run's key; the retry replaced it.
	if _, reloaded := s.keyLog("committed", 0); reloaded != lostKey {
		t.Errorf("after the reset the board reloaded key %s, it had committed %s", reloaded, lostKey)
	}
	_, committed := s.keyLog("committed", strings.Index(s.log(), "made key"))
	if committed == lostKey {
		t.Errorf("the retry committed the lost run's key %s again, want a new one", committed)
	}
	rec := l.record(t)
	c := connect(t, s.port, 0)
	checkProvisioned(t, c, rec, committed)
	if n, _ := l.dps.Emulator.Writes(testCtx(t), regID); n != 1 {
		t.Errorf("enrollment %s written to DPS %d times, want 1", regID, n)
	}
	if st := boardState(t, c); st["pending_key"] != "none" {
		t.Errorf("board state after the retry: %v, want no pending key", st)
	}
}

// capture is a go-tpm transport that keeps the command it is sent and
// answers nothing, to get a command's bytes.
type capture struct{ cmd []byte }

func (c *capture) Send(cmd []byte) ([]byte, error) {
	c.cmd = append([]byte(nil), cmd...)
	return nil, errors.New("captured")
}

// commandBytes returns the bytes of the TPM command that run sends.
func commandBytes(t *testing.T, run func(transport.TPM)) []byte {
	t.Helper()
	var c capture
	run(&c)
	if c.cmd == nil {
		t.Fatal("no TPM command sent")
	}
	return c.cmd
}
