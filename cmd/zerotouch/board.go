package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"zerotouch/board"
	"zerotouch/flasher"
	"zerotouch/internal/tpmdev"
)

type boardFlags struct {
	count   int
	prefix  string
	index   int
	baud    int
	dir     string
	tpm     string
	faults  string
	bufSize int
	fw      string
	check   bool
	child   bool
	dpsCA   string
	listen  string
	// The board profile (board.ProfileZerotouch or board.ProfileStock)
	// and, for stock boards, their fs hash command, file system size and
	// registration at boot.
	profile  string
	fsHash   bool
	fsSize   int
	register bool
}

// boardInfo is what the board command reports of each board it runs.
type boardInfo struct {
	Event  string `json:"event"`
	Serial string `json:"serial"`
	Port   string `json:"port"`
	Baud   int    `json:"baud"`
	TPM    string `json:"tpm"`
	Dir    string `json:"dir"`
}

func boardCmd(g *globals) *cobra.Command {
	var f boardFlags
	cmd := &cobra.Command{
		Use:   "board",
		Short: "Run virtual boards on pseudo-terminals or TCP ports",
		Long: `Run virtual boards: each answers MCUmgr SMP on its own pseudo-terminal,
paced at a real baud rate, with a TPM behind the provisioning group's
passthrough. With --listen tcp://HOST:PORT each board is served on a TCP
port instead, as a board behind a serial device server in raw mode (PORT
0: any free port; otherwise the boards take PORT, PORT+1, ...); a station
names it tcp://HOST:PORT. Stations, scripts and firmware authors use them as they would
a board on a fixture. The boards run until interrupted; with --check the
command instead makes one round trip to each board and exits 0 when all
checks pass.

Exit status: 0 when interrupted, or with --check when every check passed;
1 when a check failed or a board could not start; 2 when the command
line is wrong.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBoards(cmd.Context(), g, f)
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&f.count, "count", 1, "how many boards to run")
	fl.StringVar(&f.prefix, "serial-prefix", "ZTV", "serial numbers are this prefix and a 6-digit number")
	fl.IntVar(&f.index, "first", 1, "number of the first board's serial")
	fl.IntVar(&f.baud, "baud", 115200, "line rate each board holds to, 10 bits a byte")
	fl.StringVar(&f.dir, "dir", "", "keep each board's flash in DIR/SERIAL across runs (default: a temporary directory, removed on exit)")
	fl.StringVar(&f.tpm, "tpm", board.TPMSim, "TPM behind each board: sim, none, tcp:HOST:PORT (swtpm) or a device path such as /dev/tpmrm0")
	fl.StringVar(&f.faults, "fault", "", "faults to inject, as drop-after=N,delay=50ms,rc=fs.file:3 (see board.ParseFaults)")
	fl.IntVar(&f.bufSize, "buf-size", 4096, "MCUmgr buffer size the boards report")
	fl.StringVar(&f.fw, "fw", "1.0.0", "firmware version the boards run")
	fl.StringVar(&f.dpsCA, "dps-ca", "", "PEM file of the CAs the boards trust for DPS when they register (default: the system's)")
	fl.BoolVar(&f.check, "check", false, "make one round trip to each board (echo, identity, TPM, files, keygen) and exit")
	fl.StringVar(&f.listen, "listen", "", "serve each board on TCP, as tcp://127.0.0.1:0 (any free port) or tcp://HOST:PORT (then PORT, PORT+1, ...), instead of a pseudo-terminal")
	fl.StringVar(&f.profile, "profile", board.ProfileZerotouch, "zerotouch (the provisioning group too) or stock: stock MCUmgr only (os, image, fs), littlefs at "+flasher.StockMount+", no TPM")
	fl.BoolVar(&f.fsHash, "fs-hash", true, "stock: the fs hash/checksum command is there (--fs-hash=false: it answers rc 8, not supported)")
	fl.IntVar(&f.fsSize, "fs-size", 0, "stock: bytes the file system holds, all files together; a write beyond fails as on a full littlefs (0: no limit)")
	fl.BoolVar(&f.register, "register-at-boot", false, "stock: register with DPS at every boot that finds a configuration, as the firmware does, and write the outcome to "+flasher.StockRegistrationPath)
	fl.BoolVar(&f.child, "child", false, "run as one board of a larger set (internal)")
	fl.MarkHidden("child")
	return cmd
}

func (f boardFlags) validate() error {
	switch {
	case f.count < 1 || f.count > 256:
		return usageError{fmt.Errorf("--count %d: want 1 to 256", f.count)}
	case f.baud < 300 || f.baud > 12_000_000:
		return usageError{fmt.Errorf("--baud %d: want 300 to 12000000", f.baud)}
	case f.index < 0 || f.index+f.count-1 > 999_999:
		return usageError{fmt.Errorf("--first %d: serial numbers run out at 999999", f.index)}
	case f.count > 1 && f.tpm != board.TPMSim && f.tpm != board.TPMNone:
		return usageError{fmt.Errorf("--tpm %s is one TPM: boards sharing it would share an endorsement key; run one board per TPM, or use --tpm sim", f.tpm)}
	}
	switch f.profile {
	case "", board.ProfileZerotouch:
		if f.fsSize != 0 || f.register {
			return usageError{errors.New("--fs-size and --register-at-boot are for --profile stock")}
		}
	case board.ProfileStock:
		if f.check {
			return usageError{errors.New("--check exercises the provisioning group, which a stock board lacks: check a stock board with zerotouch link")}
		}
		if f.fsSize < 0 {
			return usageError{fmt.Errorf("--fs-size %d: want 0 (no limit) or more bytes", f.fsSize)}
		}
	default:
		return usageError{fmt.Errorf("--profile %q: want %s or %s", f.profile, board.ProfileZerotouch, board.ProfileStock)}
	}
	if err := tpmdev.Check(f.tpm); err != nil {
		return usageError{fmt.Errorf("--tpm: %w", err)}
	}
	if _, err := board.ParseFaults(f.faults); err != nil {
		return usageError{fmt.Errorf("--fault: %w", err)}
	}
	if f.listen != "" {
		if _, err := f.listenAt(f.count - 1); err != nil {
			return usageError{fmt.Errorf("--listen: %w", err)}
		}
	}
	return nil
}

func (f boardFlags) serial(i int) string { return fmt.Sprintf("%s%06d", f.prefix, f.index+i) }

// listenAt is where board i of the set listens: --listen's port plus i,
// or any free port when that is 0; "" for a pseudo-terminal.
func (f boardFlags) listenAt(i int) (string, error) {
	if f.listen == "" {
		return "", nil
	}
	addr, err := board.ListenAddr(f.listen)
	if err != nil {
		return "", err
	}
	host, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	if n == 0 {
		return f.listen, nil
	}
	if n+i > 65535 {
		return "", fmt.Errorf("%s: %d boards from port %d run past 65535", f.listen, f.count, n)
	}
	return "tcp://" + net.JoinHostPort(host, strconv.Itoa(n+i)), nil
}

func runBoards(ctx context.Context, g *globals, f boardFlags) error {
	if err := f.validate(); err != nil {
		return err
	}
	if f.profile == board.ProfileStock {
		// Nothing reaches a TPM on a stock board: none to start.
		f.tpm = board.TPMNone
	}
	faults, _ := board.ParseFaults(f.faults)
	root := f.dir
	if root == "" {
		tmp, err := os.MkdirTemp("", "zerotouch-boards-")
		if err != nil {
			return fmt.Errorf("make the boards' flash directory: %w", err)
		}
		// Runs last: after the boards, in this process and others, stop.
		defer os.RemoveAll(tmp)
		root = tmp
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	infos := make([]boardInfo, f.count)
	// The TPM simulator is one per process: with it, each board of a set
	// runs in a child process of its own.
	spawn := f.count > 1 && f.tpm == board.TPMSim
	var children []*child
	defer func() {
		cancel()
		for _, c := range children {
			c.wait()
		}
	}()
	if spawn {
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		children = make([]*child, f.count)
		for i := range f.count {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := spawnBoard(ctx, g, f, i, root)
				mu.Lock()
				defer mu.Unlock()
				children[i] = c
				if err != nil {
					errs = append(errs, fmt.Errorf("board %s: %w", f.serial(i), err))
					return
				}
				infos[i] = c.info
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
	} else {
		for i := range f.count {
			serial := f.serial(i)
			dir := filepath.Join(root, serial)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("board %s: %w", serial, err)
			}
			listen, _ := f.listenAt(i) // checked by validate
			b, err := board.Start(board.Config{
				Serial: serial, FW: f.fw, Baud: f.baud, Dir: dir, BufSize: f.bufSize,
				TPM: f.tpm, Faults: faults, DPSRoots: f.dpsCA, Listen: listen, Logger: g.log,
				Profile: f.profile, NoFSHash: !f.fsHash, FSSize: f.fsSize, RegisterAtBoot: f.register,
			})
			if err != nil {
				return fmt.Errorf("start board %s: %w", serial, err)
			}
			defer b.Close()
			infos[i] = boardInfo{Event: "board", Serial: serial, Port: b.Path(), Baud: f.baud, TPM: f.tpm, Dir: dir}
		}
	}

	if f.check {
		return checkBoards(ctx, g, infos, f.baud)
	}
	if f.child {
		// The parent reads this line, then the board runs until the
		// parent goes.
		json.NewEncoder(g.stdout).Encode(infos[0])
	} else {
		unlist, err := listBoards(infos)
		if err != nil {
			g.log.Warn("link ports will not show these boards", "err", err)
		}
		defer unlist()
		for _, info := range infos {
			printBoard(g, info)
		}
		if !g.json {
			fmt.Fprintf(g.stdout, "%d board(s) running; interrupt (Ctrl-C) to stop.\n", len(infos))
		}
	}
	// Run until interrupted, or until a board's process dies.
	exited := make(chan *child, len(children))
	for _, c := range children {
		go func() {
			<-c.exited
			exited <- c
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case c := <-exited:
		if ctx.Err() != nil {
			return nil
		}
		how := "it exited"
		if c.err != nil {
			how = c.err.Error()
		}
		return fmt.Errorf("board %s: its process ended (%s); the other boards are stopped too", c.info.Serial, how)
	}
}

func printBoard(g *globals, info boardInfo) {
	if g.json {
		json.NewEncoder(g.stdout).Encode(info)
		return
	}
	fmt.Fprintf(g.stdout, "board %s on %s (%d baud, TPM %s, flash %s)\n", info.Serial, info.Port, info.Baud, info.TPM, info.Dir)
}

// child is a board running in a process of its own.
type child struct {
	info   boardInfo
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has ended
	err    error         // how it ended; read after exited closes
}

func (c *child) wait() {
	if c != nil {
		<-c.exited
	}
}

// spawnBoard runs board i of the set in a child process and returns it
// once the child reports its board up. The child dies with the parent.
func spawnBoard(ctx context.Context, g *globals, f boardFlags, i int, root string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable: %w", err)
	}
	args := []string{"board", "--child", "--log-level", g.logLevel,
		"--count", "1", "--serial-prefix", f.prefix, "--first", strconv.Itoa(f.index + i),
		"--baud", strconv.Itoa(f.baud), "--dir", root, "--tpm", f.tpm,
		"--fault", f.faults, "--buf-size", strconv.Itoa(f.bufSize), "--fw", f.fw, "--dps-ca", f.dpsCA}
	if f.profile == board.ProfileStock {
		args = append(args, "--profile", f.profile, "--fs-hash="+strconv.FormatBool(f.fsHash), "--fs-size", strconv.Itoa(f.fsSize),
			"--register-at-boot="+strconv.FormatBool(f.register))
	}
	if listen, _ := f.listenAt(i); listen != "" { // checked by validate
		args = append(args, "--listen", listen)
	}
	if g.json {
		args = append(args, "--json")
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	childOfThisProcess(cmd)
	cmd.WaitDelay = 5 * time.Second
	cmd.Stderr = g.stderr
	out, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("start board process: %w", err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.exited)
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		c.wait()
		return c, fmt.Errorf("its process ended before the board was up (%v); see its log above", c.err)
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(line)), &c.info); err != nil || c.info.Port == "" {
		return c, fmt.Errorf("its process said %q, not where its board is", strings.TrimSpace(line))
	}
	return c, nil
}
