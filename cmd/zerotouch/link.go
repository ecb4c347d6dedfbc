package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"zerotouch/flasher"
	"zerotouch/internal/atomicfile"
)

type linkFlags struct {
	port     string
	baud     int
	timeout  time.Duration
	retries  int
	protocol int
}

// addFlags adds the flags that reach a board to fs.
func (f *linkFlags) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.port, "port", os.Getenv("ZEROTOUCH_PORT"), "the board's port rule (default $ZEROTOUCH_PORT)")
	fs.IntVar(&f.baud, "baud", 115200, "serial line rate")
	fs.DurationVar(&f.timeout, "timeout", 2*time.Second, "how long to wait for each answer")
	fs.IntVar(&f.retries, "retries", 2, "resends of an unanswered request (same sequence number)")
	fs.IntVar(&f.protocol, "protocol", 2, "SMP protocol version of requests: 1 or 2")
}

// open resolves --port and connects to the board there. The caller closes
// the client.
func (f *linkFlags) open(ctx context.Context, g *globals) (*flasher.Client, error) {
	if f.port == "" {
		return nil, usageError{fmt.Errorf("no board named: give --port (a path or COM name, by-id name, vid:pid, or tcp:// or rfc2217:// URL) or set ZEROTOUCH_PORT")}
	}
	m, err := flasher.ParseMatch(f.port)
	if err != nil {
		return nil, usageError{err}
	}
	path, err := m.Resolve()
	if err != nil {
		return nil, err
	}
	retries := f.retries
	if retries == 0 {
		retries = -1 // the flag's 0 means none
	}
	c, err := flasher.Open(ctx, path, flasher.Options{
		Baud: f.baud, Timeout: f.timeout, Retries: retries, Protocol: f.protocol, Logger: g.log,
	})
	if err != nil {
		return nil, fmt.Errorf("connect to the board on %s: %w", path, err)
	}
	return c, nil
}

func linkCmd(g *globals) *cobra.Command {
	var f linkFlags
	cmd := &cobra.Command{
		Use:   "link",
		Short: "Talk MCUmgr SMP to one board on a serial port",
		Long: `Talk to one board over its serial port, one command at a time: for bring-up,
for checking a fixture, and for line scripts. --port takes a device path
(COM7 on Windows), a /dev/serial/by-id name, a USB vid:pid, or terms such
as vid=2fe3,usb-serial=E661, and must match exactly one port ('zerotouch
link ports' lists them); or a board on the network through a serial
device server or ser2net: tcp://HOST:PORT (raw) or rfc2217://HOST:PORT.

Exit status: 0 when the board answered; 1 when no port matches, the board
does not answer or answers with an error (the message names it); 2 when
the command line is wrong, or a local file it names cannot be read.`,
	}
	f.addFlags(cmd.PersistentFlags())

	// with opens the board, runs fn and prints its result.
	with := func(fn func(ctx context.Context, c *flasher.Client, args []string) (any, error)) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := f.open(ctx, g)
			if err != nil {
				return err
			}
			defer c.Close()
			out, err := fn(ctx, c, args)
			if err != nil {
				return err
			}
			return printResult(g, out)
		}
	}

	ports := &cobra.Command{
		Use:   "ports",
		Short: "List serial ports with their USB IDs, and the virtual boards running",
		Long: `List the serial ports with their USB IDs, and the virtual boards that
zerotouch board runs for this user (pseudo-terminals, which no USB listing
shows), with their serial numbers. --json prints one object a line; a
virtual board's has "virtual": true.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := flasher.ListPorts()
			if err != nil {
				return err
			}
			virtual, err := runningBoards()
			if err != nil {
				g.log.Warn("the virtual boards are not listed", "err", err)
			}
			if g.json {
				for _, p := range list {
					json.NewEncoder(g.stdout).Encode(p)
				}
				for _, b := range virtual {
					json.NewEncoder(g.stdout).Encode(struct {
						Path    string `json:"path"`
						Virtual bool   `json:"virtual"`
						Serial  string `json:"serialNumber"`
						Baud    int    `json:"baud"`
						TPM     string `json:"tpm"`
						PID     int    `json:"pid"`
					}{b.Port, true, b.Serial, b.Baud, b.TPM, b.PID})
				}
				return nil
			}
			if len(list) == 0 && len(virtual) == 0 {
				fmt.Fprintln(g.stdout, "no serial ports found")
			}
			for _, p := range list {
				usb := "-"
				if p.USB {
					usb = p.VID + ":" + p.PID
				}
				fmt.Fprintf(g.stdout, "%-16s %-9s %-20s %s %s\n", p.Path, usb, p.SerialNumber, p.Product, strings.Join(p.ByID, " "))
			}
			for _, b := range virtual {
				fmt.Fprintf(g.stdout, "%-16s %-9s %-20s virtual board (zerotouch board, pid %d, %d baud, TPM %s)\n", b.Port, "virtual", b.Serial, b.PID, b.Baud, b.TPM)
			}
			return nil
		},
	}
	echo := &cobra.Command{
		Use: "echo [TEXT]", Short: "Send TEXT and print the board's echo", Args: cobra.MaximumNArgs(1),
		RunE: with(func(ctx context.Context, c *flasher.Client, args []string) (any, error) {
			text := "hello"
			if len(args) > 0 {
				text = args[0]
			}
			got, err := c.Echo(ctx, text)
			return map[string]string{"echo": got}, err
		}),
	}
	params := &cobra.Command{
		Use: "params", Short: "Print the board's MCUmgr buffer parameters", Args: cobra.NoArgs,
		RunE: with(func(ctx context.Context, c *flasher.Client, _ []string) (any, error) {
			return c.Params(), nil
		}),
	}
	info := &cobra.Command{
		Use: "info [FORMAT]", Short: "Print the board's OS information (uname-like format letters, default a)", Args: cobra.MaximumNArgs(1),
		RunE: with(func(ctx context.Context, c *flasher.Client, args []string) (any, error) {
			format := "a"
			if len(args) > 0 {
				format = args[0]
			}
			s, err := c.Info(ctx, format)
			return map[string]string{"info": s}, err
		}),
	}
	identity := &cobra.Command{
		Use: "identity", Short: "Print the board's identity (provisioning group)", Args: cobra.NoArgs,
		RunE: with(func(ctx context.Context, c *flasher.Client, _ []string) (any, error) {
			return c.Identity(ctx)
		}),
	}
	var force bool
	reset := &cobra.Command{
		Use: "reset", Short: "Reset the board and wait for it to answer again", Args: cobra.NoArgs,
		RunE: with(func(ctx context.Context, c *flasher.Client, _ []string) (any, error) {
			if err := c.Reset(ctx, force); err != nil {
				return nil, err
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := c.WaitReady(wctx, 250*time.Millisecond); err != nil {
				return nil, fmt.Errorf("%w (a USB board may come back on a new port: run the command again)", err)
			}
			return map[string]bool{"ready": true}, nil
		}),
	}
	reset.Flags().BoolVar(&force, "force", false, "reset even if the board's application refuses")

	cmd.AddCommand(ports, echo, params, info, identity, reset, imageCmd(g, with), fsCmd(g, with))
	return cmd
}

type withFunc = func(fn func(ctx context.Context, c *flasher.Client, args []string) (any, error)) func(*cobra.Command, []string) error

func imageCmd(g *globals, with withFunc) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "List and upload firmware images"}
	list := &cobra.Command{
		Use: "list", Short: "List the board's image slots", Args: cobra.NoArgs,
		RunE: with(func(ctx context.Context, c *flasher.Client, _ []string) (any, error) {
			states, err := c.ImageStates(ctx)
			if err != nil {
				return nil, err
			}
			type slot struct {
				Image     int    `json:"image"`
				Slot      int    `json:"slot"`
				Version   string `json:"version"`
				Hash      string `json:"hash"`
				Bootable  bool   `json:"bootable"`
				Pending   bool   `json:"pending"`
				Confirmed bool   `json:"confirmed"`
				Active    bool   `json:"active"`
				Permanent bool   `json:"permanent"`
			}
			out := make([]slot, len(states))
			for i, s := range states {
				out[i] = slot{s.Image, s.Slot, s.Version, hex.EncodeToString(s.Hash), s.Bootable, s.Pending, s.Confirmed, s.Active, s.Permanent}
			}
			return out, nil
		}),
	}
	var (
		image         int
		test, confirm bool
		resetAfter    bool
	)
	upload := &cobra.Command{
		Use:   "upload FILE",
		Short: "Upload an MCUboot image to the board's secondary slot",
		Long: `Upload an MCUboot image (signed .bin) to the secondary slot. An upload
cut off part way resumes where the board says it stopped when run again.
--test boots it once on the next reset, --confirm for good; --reset resets
the board after marking it.`,
		Args: cobra.ExactArgs(1),
		RunE: with(func(ctx context.Context, c *flasher.Client, args []string) (any, error) {
			if test && confirm {
				return nil, usageError{fmt.Errorf("--test and --confirm exclude each other")}
			}
			img, err := os.ReadFile(args[0])
			if err != nil {
				return nil, usageError{err}
			}
			info, err := flasher.ParseImage(img)
			if err != nil {
				// Nothing was sent: the command line names the wrong file.
				return nil, usageError{fmt.Errorf("%s: %w: make one with zerotouch image build", args[0], err)}
			}
			bar := newProgress(g, "image "+info.Version.String(), len(img))
			err = c.ImageUpload(ctx, image, img, bar.update)
			bar.done(err)
			if err != nil {
				return nil, err
			}
			out := map[string]any{"version": info.Version.String(), "hash": hex.EncodeToString(info.Hash), "bytes": len(img)}
			if test || confirm {
				if _, err := c.ImageSetPending(ctx, info.Hash, confirm); err != nil {
					return nil, fmt.Errorf("mark the image for boot: %w", err)
				}
				out["pending"] = true
			}
			if resetAfter {
				if err := c.Reset(ctx, false); err != nil {
					return nil, err
				}
				out["reset"] = true
			}
			return out, nil
		}),
	}
	fl := upload.Flags()
	fl.IntVar(&image, "image", 0, "image number, for boards with several")
	fl.BoolVar(&test, "test", false, "boot the image once on the next reset (it must confirm itself)")
	fl.BoolVar(&confirm, "confirm", false, "boot the image from the next reset on")
	fl.BoolVar(&resetAfter, "reset", false, "reset the board after the upload")
	cmd.AddCommand(list, upload)
	return cmd
}

func fsCmd(g *globals, with withFunc) *cobra.Command {
	cmd := &cobra.Command{Use: "fs", Short: "Move files to and from the board's file system"}
	var resume bool
	upload := &cobra.Command{
		Use: "upload LOCAL REMOTE", Short: "Write a file to the board, then check its sha256 there", Args: cobra.ExactArgs(2),
		RunE: with(func(ctx context.Context, c *flasher.Client, args []string) (any, error) {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return nil, usageError{err}
			}
			bar := newProgress(g, args[1], len(data))
			err = c.FileUpload(ctx, args[1], data, resume, bar.update)
			bar.done(err)
			return map[string]any{"name": args[1], "bytes": len(data), "verified": err == nil}, err
		}),
	}
	upload.Flags().BoolVar(&resume, "resume", true, "go on from what the board already holds of the same file")
	var maxSize int64
	download := &cobra.Command{
		Use: "download REMOTE LOCAL", Short: "Read a file from the board (LOCAL - for standard output)", Args: cobra.ExactArgs(2),
		Long: `Read a file from the board's file system into LOCAL, as it arrives (LOCAL is
replaced only once the whole file is in), or to standard output with -.
A board that announces a file longer than --max-size is refused before
anything is read.`,
		RunE: with(func(ctx context.Context, c *flasher.Client, args []string) (any, error) {
			if maxSize <= 0 {
				return nil, usageError{fmt.Errorf("--max-size %d: want a size in bytes above 0", maxSize)}
			}
			bar := newProgress(g, args[0], 0)
			var n int64
			var err error
			if args[1] == "-" {
				n, err = c.FileDownloadTo(ctx, args[0], g.stdout, maxSize, bar.update)
			} else {
				err = atomicfile.WriteFrom(args[1], 0o644, func(w io.Writer) error {
					n, err = c.FileDownloadTo(ctx, args[0], w, maxSize, bar.update)
					return err
				})
			}
			bar.done(err)
			if err != nil {
				if errors.Is(err, flasher.ErrTooLarge) {
					err = fmt.Errorf("%w (raise --max-size if the file is meant to be that large)", err)
				}
				return nil, err
			}
			if args[1] == "-" {
				return nil, nil
			}
			return map[string]any{"name": args[0], "bytes": n, "saved": args[1]}, nil
		}),
	}
	download.Flags().Int64Var(&maxSize, "max-size", 64<<20, "refuse a file the board says is longer than this many bytes")
	hash := &cobra.Command{
		Use: "hash REMOTE", Short: "Print the sha256 of a file on the board", Args: cobra.ExactArgs(1),
		RunE: with(func(ctx context.Context, c *flasher.Client, args []string) (any, error) {
			sum, size, err := c.FileHash(ctx, args[0], 0, 0)
			return map[string]any{"name": args[0], "sha256": hex.EncodeToString(sum), "bytes": size}, err
		}),
	}
	cmd.AddCommand(upload, download, hash)
	return cmd
}

// printResult prints a command's result: one JSON line, or indented
// JSON for a person.
func printResult(g *globals, v any) error {
	if v == nil {
		return nil
	}
	enc := json.NewEncoder(g.stdout)
	if !g.json {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(v)
}

// progress draws a transfer's progress bar on a terminal and nothing
// elsewhere (line scripts read the result, not the bar).
type progress struct {
	p   *mpb.Progress
	bar *mpb.Bar
}

func newProgress(g *globals, name string, total int) *progress {
	if g.json || !g.term {
		return &progress{}
	}
	p := mpb.New(mpb.WithOutput(os.Stderr), mpb.WithWidth(40))
	bar := p.AddBar(int64(total),
		mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f")),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), "% .1f"), decor.Name(" "), decor.Percentage()),
	)
	return &progress{p: p, bar: bar}
}

func (p *progress) update(done, total int) {
	if p.bar == nil {
		return
	}
	p.bar.SetTotal(int64(total), false)
	p.bar.SetCurrent(int64(done))
}

func (p *progress) done(err error) {
	if p.bar == nil {
		return
	}
	if err != nil {
		p.bar.Abort(false)
	} else {
		p.bar.SetTotal(-1, true)
	}
	p.p.Wait()
}
