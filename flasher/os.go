package flasher

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Echo sends text to the board and returns what it echoes (OS group,
// command 0). It is the cheapest round trip, for checking a link.
func (c *Client) Echo(ctx context.Context, text string) (string, error) {
	var rsp struct {
		R string `cbor:"r"`
	}
	if err := c.Do(ctx, OpWrite, GroupOS, CmdOSEcho, struct {
		D string `cbor:"d"`
	}{text}, &rsp); err != nil {
		return "", err
	}
	if rsp.R != text {
		return "", fmt.Errorf("os.echo on %s: %w: sent %q, got %q", c.opts.Name, ErrVerify, text, rsp.R)
	}
	return rsp.R, nil
}

// Reset asks the board to reboot (OS group, command 5). The board answers
// before it reboots; it does not answer again until it has booted.
func (c *Client) Reset(ctx context.Context, force bool) error {
	type req struct {
		Force bool `cbor:"force,omitempty"`
	}
	return c.Do(ctx, OpWrite, GroupOS, CmdOSReset, req{force}, nil)
}

// Info returns the board's system information (OS group, command 7), like
// uname: format letters as the Zephyr command takes them ("a" for all,
// "s" kernel name, "v" version, "m" machine...). An empty format is "s".
func (c *Client) Info(ctx context.Context, format string) (string, error) {
	type req struct {
		Format string `cbor:"format,omitempty"`
	}
	var rsp struct {
		Output string `cbor:"output"`
	}
	if err := c.Do(ctx, OpRead, GroupOS, CmdOSInfo, req{format}, &rsp); err != nil {
		return "", err
	}
	return rsp.Output, nil
}

// WaitReady polls the board with echo until it answers or ctx ends: after
// a reset, while it boots.
func (c *Client) WaitReady(ctx context.Context, every time.Duration) error {
	for {
		attemptCtx, cancel := context.WithTimeout(ctx, every)
		err := c.do(attemptCtx, call{op: OpWrite, group: GroupOS, id: CmdOSEcho, retries: 0, timeout: every}, struct {
			D string `cbor:"d"`
		}{"ready?"}, nil)
		cancel()
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrDisconnected) {
			return fmt.Errorf("wait for %s to boot: %w", c.opts.Name, err)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("wait for %s to boot: %w (last: %v)", c.opts.Name, ErrTimeout, err)
		}
	}
}
