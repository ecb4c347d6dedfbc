package board

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"

	"zerotouch/flasher"
	"zerotouch/internal/rawpty"
	"zerotouch/internal/tpmdev"
)

// Config describes one virtual board. Zero fields take the defaults noted.
type Config struct {
	Serial string // serial number; required
	Model  string // default "zt-virtual"
	HW     string // hardware revision; default "1"
	FW     string // running firmware version, MAJOR.MINOR.REVISION; default "1.0.0"
	// Baud is the line rate the board holds both directions to, at 10
	// bits a byte. Default 115200.
	Baud int
	// Dir is the board's flash: files written over the file system group,
	// the image slots and the board's state. Required.
	Dir string
	// BufSize and BufCount are the MCUmgr parameters the board reports.
	// BufSize bounds the SMP message it accepts. Default 4096 and 4.
	BufSize, BufCount int
	// TPM names the TPM backend: "sim" (default), "none", "tcp:HOST:PORT"
	// or a device path.
	TPM string
	// ConfigPath is the configuration file commit checks when the station
	// names none. Default "/lfs/zerotouch/config".
	ConfigPath string
	// SlotSize is the capacity of the secondary image slot. Default 1 MiB.
	SlotSize int
	// BootTime is how long the board is silent after a reset. Default
	// 100 ms.
	BootTime time.Duration
	// NoSync leaves out the fsync of each write to the board's flash
	// files: they still survive the board's process being killed, not
	// the host losing power. For benchmarks, where many boards' fsyncs
	// would queue on the host's one disk while real boards each write
	// their own flash.
	NoSync bool
	// DPSRoots is a PEM file of the CAs the board trusts for DPS's TLS
	// certificate when it registers: its firmware's root store. Default:
	// the host's.
	DPSRoots string
	// Faults to inject from the start; see SetFaults.
	Faults Faults
	// Profile is ProfileZerotouch (the default: the provisioning group
	// too) or ProfileStock: a board running stock MCUmgr, as Zephyr's
	// smp_svr sample, with the os, image and fs groups only, its file
	// system (littlefs) mounted at flasher.StockMount.
	Profile string
	// NoFSHash leaves the fs hash/checksum command out (a stock board's
	// firmware without CONFIG_MCUMGR_GRP_FS_CHECKSUM_HASH): it answers
	// rc 8, not supported.
	NoFSHash bool
	// FSSize is how many bytes the board's file system holds, all files
	// together; a write beyond it fails (fs error 10), as a full littlefs
	// does. Default: no limit.
	FSSize int
	// RegisterAtBoot has a stock board register with DPS at every boot
	// whose configuration (ConfigPath) is there, as its firmware does,
	// and write how it went to RegistrationPath (the JSON of a
	// flasher.Registration): the station's end-of-line check reads it.
	RegisterAtBoot bool
	// RegistrationPath is that file; default
	// flasher.StockRegistrationPath.
	RegistrationPath string
	// Listen serves the board on TCP instead of a pseudo-terminal:
	// tcp://HOST:PORT, PORT 0 for any free port. Path then returns the
	// URL a station names as the slot's port. One station is connected
	// at a time; a new connection takes over from the old (see
	// tcpLine). Default: a pseudo-terminal.
	Listen string
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Serial == "" {
		return errors.New("board: serial number is required")
	}
	if c.Dir == "" {
		return errors.New("board: flash directory is required")
	}
	if c.Model == "" {
		c.Model = "zt-virtual"
	}
	if c.HW == "" {
		c.HW = "1"
	}
	if c.FW == "" {
		c.FW = "1.0.0"
	}
	if _, err := flasher.ParseImageVersion(c.FW); err != nil {
		return fmt.Errorf("board %s: %w", c.Serial, err)
	}
	if c.Baud <= 0 {
		c.Baud = 115200
	}
	if c.BufSize <= 0 {
		c.BufSize = 4096
	}
	if c.BufSize < 128 || c.BufSize > 65535 {
		return fmt.Errorf("board %s: buffer size %d: want 128 to 65535", c.Serial, c.BufSize)
	}
	if c.BufCount <= 0 {
		c.BufCount = 4
	}
	if c.TPM == "" {
		c.TPM = TPMSim
	}
	switch c.Profile {
	case "":
		c.Profile = ProfileZerotouch
	case ProfileZerotouch, ProfileStock:
	default:
		return fmt.Errorf("board %s: profile %q: want %s or %s", c.Serial, c.Profile, ProfileZerotouch, ProfileStock)
	}
	if c.FSSize < 0 {
		return fmt.Errorf("board %s: file system size %d: want 0 (no limit) or more", c.Serial, c.FSSize)
	}
	if c.ConfigPath == "" {
		c.ConfigPath = "/lfs/zerotouch/config"
		if c.Profile == ProfileStock {
			c.ConfigPath = flasher.StockConfigPath
		}
	}
	if c.RegistrationPath == "" {
		c.RegistrationPath = flasher.StockRegistrationPath
	}
	if c.SlotSize <= 0 {
		c.SlotSize = 1 << 20
	}
	if c.BootTime <= 0 {
		c.BootTime = 100 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Listen != "" {
		if _, err := ListenAddr(c.Listen); err != nil {
			return fmt.Errorf("board %s: %w", c.Serial, err)
		}
	}
	return nil
}

// Board profiles (Config.Profile).
const (
	ProfileZerotouch = "zerotouch" // stock MCUmgr groups and the provisioning group
	ProfileStock     = "stock"     // stock MCUmgr groups only: os, image, fs
)

// Board is a virtual board serving SMP on a pseudo-terminal, or on TCP
// (Config.Listen). Its methods are safe for concurrent use. Close it to
// stop it and release its TPM.
type Board struct {
	cfg    Config
	log    *slog.Logger
	line   io.ReadWriteCloser // the pseudo-terminal's master, or a *tcpLine
	tty    *os.File           // the pseudo-terminal's own end, held open; nil on TCP
	path   string
	tpm    transport.TPMCloser
	tpmMu  sync.Mutex // one TPM command at a time: the line's, and the board's own as it registers
	rxPace *pacer
	txPace *pacer

	txq  chan txFrame
	stop chan struct{}
	wg   sync.WaitGroup

	mu         sync.Mutex // guards everything below
	st         state
	faults     Faults
	rxSince    int64     // bytes received since faults were set
	deadUntil  time.Time // line dropped until then
	dead       bool
	bootUntil  time.Time
	txBusy     int // frames queued or being sent
	txIdle     *sync.Cond
	upload     imageUpload
	lastReq    []byte
	lastRsp    []byte
	keys       map[string]any       // keygen keys, by algorithm; never written out
	keysMade   []KeyMade            // every key keygen made, oldest first
	reg        flasher.Registration // the last DPS registration
	closeOnce  sync.Once
	stopped    bool // under mu: Close has begun
	closeError error
}

// Start makes the board's flash directory if needed, opens its TPM and a
// pseudo-terminal (or listens on Config.Listen), and serves until Close.
func Start(cfg Config) (*Board, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	b := &Board{
		cfg:    cfg,
		log:    cfg.Logger.With("serial", cfg.Serial),
		txq:    make(chan txFrame, 64),
		stop:   make(chan struct{}),
		faults: cfg.Faults,
		keys:   map[string]any{},
	}
	b.txIdle = sync.NewCond(&b.mu)
	if err := b.loadFlash(); err != nil {
		return nil, err
	}
	var opened []io.Closer // closed again if Start fails
	fail := func(err error) (*Board, error) {
		for _, c := range opened {
			c.Close()
		}
		return nil, fmt.Errorf("board %s: %w", cfg.Serial, err)
	}
	var err error
	if b.rxPace, err = newPacer(cfg.Baud); err != nil {
		return fail(err)
	}
	opened = append(opened, b.rxPace.clock)
	if b.txPace, err = newPacer(cfg.Baud); err != nil {
		return fail(err)
	}
	opened = append(opened, b.txPace.clock)
	if b.tpm, err = openTPM(cfg.TPM, cfg.Serial); err != nil {
		return fail(err)
	}
	if b.tpm != nil {
		opened = append(opened, b.tpm)
	}
	if cfg.Listen != "" {
		l, err := listenTCP(cfg.Listen)
		if err != nil {
			return fail(err)
		}
		b.line, b.path = l, l.url
	} else {
		master, tty, err := rawpty.Open()
		if err != nil {
			return fail(err)
		}
		b.line, b.tty, b.path = master, tty, tty.Name()
	}
	b.wg.Add(2)
	go b.rxLoop()
	go b.txLoop()
	b.log.Info("board up", "port", b.path, "baud", cfg.Baud, "tpm", cfg.TPM, "profile", cfg.Profile)
	b.mu.Lock()
	b.bootRegisterLocked(time.Now())
	b.mu.Unlock()
	return b, nil
}

// Path returns the pseudo-terminal the station opens to reach the board,
// or with Config.Listen its URL, tcp://HOST:PORT.
func (b *Board) Path() string { return b.path }

// Serial returns the board's serial number.
func (b *Board) Serial() string { return b.cfg.Serial }

// Config returns the board's configuration, defaults filled in.
func (b *Board) Config() Config { return b.cfg }

// Provisioned reports whether a commit has marked the board provisioned.
func (b *Board) Provisioned() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st.Provisioned
}

// FirmwareVersion returns the version of the image the board runs.
func (b *Board) FirmwareVersion() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st.Slots[0].Version
}

// ReadFile returns a file of the board's flash file system, by the name the
// station used ("/lfs/config.json").
func (b *Board) ReadFile(name string) ([]byte, error) {
	p, err := b.fsPath(name)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// Close stops the board: the station sees the port hang up. It releases
// the TPM. It is safe to call more than once.
func (b *Board) Close() error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.stopped = true
		b.txIdle.Broadcast()
		b.mu.Unlock()
		close(b.stop)
		b.line.Close()
		b.rxPace.clock.Close()
		b.txPace.clock.Close()
		b.wg.Wait()
		if b.tty != nil {
			b.tty.Close()
		}
		if b.tpm != nil {
			b.closeError = b.tpm.Close()
		}
	})
	return b.closeError
}

// rxLoop reads what the station sends at the line's rate, reassembles
// packets and answers them.
//
// The station's bytes reach the pseudo-terminal at once; the line's rate
// is kept by giving each byte the time it would cross the line (the
// pacer's schedule) and answering no earlier than the request's last byte
// crossed plus the time the board took to carry it out. The board works
// while the request is still crossing, so the sleep's own lateness (the
// runtime's timers wake up to a millisecond late) does not delay the
// answer; the sleep after the work only keeps the loop from reading on
// before the bytes it has are across.
func (b *Board) rxLoop() {
	defer b.wg.Done()
	dec := flasher.Decoder{MaxLine: flasher.MaxLine, MaxPacket: b.cfg.BufSize - 4}
	buf := make([]byte, 512)
	var line []byte
	overflow, full := false, false
	for {
		n, err := b.line.Read(buf)
		if errors.Is(err, errNewStation) {
			// A fresh connection: the line starts clean.
			line, overflow, full = line[:0], false, false
			dec.Reset()
			continue
		}
		if err != nil {
			return
		}
		// After a full read more bytes were waiting, so these continue
		// the stream rather than start it.
		continued := full
		full = n == len(buf)
		end := b.rxPace.reserve(n, continued, time.Time{})
		for i, c := range buf[:n] {
			at := end.Add(-time.Duration(n-1-i) * b.rxPace.perByte) // when c crosses
			if !b.receiveByte(&dec, at) {
				line, overflow = line[:0], false
				continue
			}
			if c != '\n' {
				if len(line) < 2*flasher.MaxLine {
					line = append(line, c)
				} else {
					overflow = true
				}
				continue
			}
			if overflow {
				// A stock board's line buffer overflows: the line is lost.
				dec.Reset()
				b.log.Debug("dropped over-long line")
			} else {
				b.handleLine(&dec, line, at)
			}
			line, overflow = line[:0], false
		}
		if !b.rxPace.clock.sleepUntil(end) {
			return
		}
	}
}

// receiveByte applies line faults to one received byte, which crosses the
// line at now, and reports whether the board takes it.
func (b *Board) receiveByte(dec *flasher.Decoder, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rxSince++
	f := &b.faults
	if f.ResetAfter > 0 && b.rxSince == f.ResetAfter {
		f.ResetAfter = 0
		b.log.Info("fault: reset mid-transfer", "after_bytes", b.rxSince)
		b.rebootLocked(now)
	}
	if f.DropAfter > 0 && b.rxSince == f.DropAfter {
		f.DropAfter = 0
		b.dead = true
		b.deadUntil = time.Time{}
		if f.DropFor > 0 {
			b.deadUntil = now.Add(f.DropFor)
		}
		b.log.Info("fault: line dropped", "after_bytes", b.rxSince)
	}
	if b.dead && !b.deadUntil.IsZero() && now.After(b.deadUntil) {
		b.dead = false
	}
	if b.dead || now.Before(b.bootUntil) {
		dec.Reset()
		return false
	}
	return true
}

// handleLine decodes a line the board received and answers a complete
// request; the line's last byte crossed at crossed.
func (b *Board) handleLine(dec *flasher.Decoder, line []byte, crossed time.Time) {
	msg, err := dec.Line(line)
	if err != nil {
		b.log.Debug("dropped frame", "err", err)
		return
	}
	if msg == nil {
		return
	}
	b.mu.Lock()
	if b.faults.CorruptRx > 0 {
		b.faults.CorruptRx--
		b.mu.Unlock()
		b.log.Info("fault: request lost to line noise")
		return
	}
	if b.lastReq != nil && bytes.Equal(msg, b.lastReq) && !b.faults.NoReplay && !b.stock() {
		// The station sent the same request again: its answer was lost.
		// Answer again without doing it twice.
		rsp := b.lastRsp
		b.mu.Unlock()
		b.send(rsp, crossed)
		return
	}
	b.mu.Unlock()

	start := time.Now()
	rsp, after := b.dispatch(msg)
	if rsp == nil {
		return
	}
	b.mu.Lock()
	b.lastReq, b.lastRsp = msg, rsp
	delay := b.faults.Delay
	b.mu.Unlock()
	b.send(rsp, crossed.Add(time.Since(start)+delay))
	if after != nil && b.waitTxIdle() {
		after()
	}
}

// txFrame is bytes queued for the station, not to start crossing the line
// before notBefore.
type txFrame struct {
	data      []byte
	notBefore time.Time
}

// send queues an SMP message for the station, to start no earlier than
// notBefore.
// A message too long to frame is dropped (the board's buffer is at most
// 65535 bytes, so its own answers always fit).
func (b *Board) send(msg []byte, notBefore time.Time) {
	frame, err := flasher.AppendFrame(nil, msg)
	if err != nil {
		return
	}
	b.mu.Lock()
	b.txBusy++
	b.mu.Unlock()
	select {
	case b.txq <- txFrame{frame, notBefore}:
	case <-b.stop:
	}
}

// sendLine queues console output, which a station must skip.
func (b *Board) sendLine(text string) {
	b.mu.Lock()
	b.txBusy++
	b.mu.Unlock()
	select {
	case b.txq <- txFrame{data: []byte(text + "\r\n")}:
	case <-b.stop:
	}
}

// waitTxIdle waits until everything queued has been sent, and reports
// false if the board is stopping instead.
func (b *Board) waitTxIdle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.txBusy > 0 && !b.stopped {
		b.txIdle.Wait()
	}
	return !b.stopped
}

// txLoop writes queued frames to the station at the line's rate.
func (b *Board) txLoop() {
	defer b.wg.Done()
	chunk := b.txPace.chunkFor()
	for {
		var tf txFrame
		select {
		case tf = <-b.txq:
		case <-b.stop:
			return
		}
		frame := tf.data
		b.mu.Lock()
		drop := b.dead && (b.deadUntil.IsZero() || time.Now().Before(b.deadUntil))
		if !drop && b.faults.CorruptTx > 0 && len(frame) > 4 {
			b.faults.CorruptTx--
			frame = append([]byte(nil), frame...)
			// One flipped bit in the first line's payload: its base64 or
			// the CRC fails.
			end := bytes.IndexByte(frame, '\n')
			if end < 0 {
				end = len(frame)
			}
			frame[(2+end)/2] ^= 0x01
			b.log.Info("fault: corrupted an answer")
		}
		b.mu.Unlock()
		for i := 0; i < len(frame) && !drop; i += chunk {
			part := frame[i:min(i+chunk, len(frame))]
			if !b.txPace.clock.sleepUntil(b.txPace.reserve(len(part), i > 0, tf.notBefore)) {
				return
			}
			if _, err := b.line.Write(part); err != nil {
				return
			}
		}
		b.mu.Lock()
		b.txBusy--
		b.txIdle.Broadcast()
		b.mu.Unlock()
	}
}

// reboot restarts the board: it forgets what it held in RAM, is silent
// while it boots, swaps in a pending image, then prints a banner.
func (b *Board) reboot() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rebootLocked(time.Now())
}

// rebootLocked reboots the board at now: it is silent for BootTime from
// then.
func (b *Board) rebootLocked(now time.Time) {
	if r, ok := b.tpm.(tpmdev.Resetter); ok {
		// A reboot power-cycles the TPM: transient objects go.
		if err := r.Reset(); err != nil {
			b.log.Error("TPM reset failed", "err", err)
		}
	}
	b.upload = imageUpload{}
	b.lastReq, b.lastRsp = nil, nil
	b.bootUntil = now.Add(b.cfg.BootTime)
	if err := b.bootSwapLocked(); err != nil {
		b.log.Error("image swap failed", "err", err)
	}
	b.log.Info("rebooting", "fw", b.st.Slots[0].Version)
	b.bootRegisterLocked(b.bootUntil)
	banner := fmt.Sprintf("*** Booting zerotouch virtual board %s, firmware %s ***", b.cfg.Serial, b.st.Slots[0].Version)
	until := b.bootUntil
	b.wg.Add(1) // rebooting runs on rxLoop, which holds the group open
	go func() {
		defer b.wg.Done()
		if sleepUntil(until, b.stop) {
			b.sendLine(banner)
		}
	}()
}

// keyFingerprint is a short label for a key in logs.
func keyFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return fmt.Sprintf("%x", sum[:6])
}

func (b *Board) fsPath(name string) (string, error) {
	if name == "" || name[0] != '/' {
		return "", fmt.Errorf("file name %q is not absolute", name)
	}
	// The board's names are slash paths on every system.
	clean := path.Clean(name)
	if clean != name && clean+"/" != name || clean == "/" {
		return "", fmt.Errorf("file name %q is not clean", name)
	}
	if filepath.Separator != '/' && strings.ContainsAny(clean, `\:`) {
		// A drive, a stream or a second separator on Windows.
		return "", fmt.Errorf("file name %q holds a character this system's files cannot", name)
	}
	if b.stock() && !strings.HasPrefix(clean, flasher.StockMount+"/") {
		return "", errNoMount
	}
	return filepath.Join(b.cfg.Dir, "fs", filepath.FromSlash(clean)), nil
}

// errNoMount is a file name outside a stock board's one file system.
var errNoMount = errors.New("no file system is mounted there (a stock board's is at " + flasher.StockMount + ")")

// stock reports whether the board has the stock profile.
func (b *Board) stock() bool { return b.cfg.Profile == ProfileStock }
