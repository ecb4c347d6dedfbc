package flasher

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// Progress is called after every chunk a transfer moves, with the bytes
// done so far and the total. It runs on the caller's goroutine and must
// not block for long.
type Progress func(done, total int)

// fitChunk returns the most data bytes, at most want, that a request built
// by build fits in the board's buffer together with its header.
func (c *Client) fitChunk(want int, build func(n int) any) (int, error) {
	limit := c.Params().BufSize - pktExtra
	empty, err := EncodeMessage(Header{}, build(0))
	if err != nil {
		return 0, err
	}
	// A byte string's head grows by up to 2 bytes past 23 and 255 bytes.
	n := min(want, limit-len(empty)-2)
	for n >= 0 {
		msg, err := EncodeMessage(Header{}, build(n))
		if err != nil {
			return 0, err
		}
		if len(msg) <= limit {
			break
		}
		n -= len(msg) - limit
	}
	// Only an empty transfer may send an empty chunk.
	if n > 0 || n == 0 && want == 0 {
		return n, nil
	}
	return 0, fmt.Errorf("%w: board buffer of %d bytes holds no data", ErrProtocol, limit)
}

// ImageState is one image slot as the board reports it (image group,
// command 0).
type ImageState struct {
	Image     int    `cbor:"image"`
	Slot      int    `cbor:"slot"`
	Version   string `cbor:"version"`
	Hash      []byte `cbor:"hash"`
	Bootable  bool   `cbor:"bootable"`
	Pending   bool   `cbor:"pending"`
	Confirmed bool   `cbor:"confirmed"`
	Active    bool   `cbor:"active"`
	Permanent bool   `cbor:"permanent"`
}

type imageStateRsp struct {
	Images      []ImageState `cbor:"images"`
	SplitStatus int          `cbor:"splitStatus"`
}

// ImageStates lists the board's image slots.
func (c *Client) ImageStates(ctx context.Context) ([]ImageState, error) {
	var rsp imageStateRsp
	if err := c.Do(ctx, OpRead, GroupImage, CmdImageState, nil, &rsp); err != nil {
		return nil, err
	}
	return rsp.Images, nil
}

// ImageSetPending marks the image with hash for test boot on the next
// reset, or, with confirm, makes it permanent (image group, command 0
// write). An empty hash with confirm confirms the running image.
func (c *Client) ImageSetPending(ctx context.Context, hash []byte, confirm bool) ([]ImageState, error) {
	type req struct {
		Hash    []byte `cbor:"hash,omitempty"`
		Confirm bool   `cbor:"confirm"`
	}
	var rsp imageStateRsp
	if err := c.Do(ctx, OpWrite, GroupImage, CmdImageState, req{hash, confirm}, &rsp); err != nil {
		return nil, err
	}
	return rsp.Images, nil
}

type imageUploadReq struct {
	Image   int    `cbor:"image,omitempty"`
	Len     int    `cbor:"len,omitempty"`
	Off     int    `cbor:"off"`
	Sha     []byte `cbor:"sha,omitempty"`
	Data    []byte `cbor:"data"`
	Upgrade bool   `cbor:"upgrade,omitempty"`
}

type offRsp struct {
	Off   *int  `cbor:"off"`
	Match *bool `cbor:"match,omitempty"`
}

// ImageUpload writes img to the board's secondary slot of image number
// image (image group, command 1), in chunks sized to the board's buffer.
// The first request carries the length and the image's sha256, so a board
// holding part of the same image answers with the offset it has and the
// upload resumes there. progress may be nil.
func (c *Client) ImageUpload(ctx context.Context, image int, img []byte, progress Progress) error {
	if len(img) == 0 {
		return fmt.Errorf("image.upload on %s: %w: empty image", c.opts.Name, ErrInvalid)
	}
	sum := sha256.Sum256(img)
	off := 0
	var guard stallGuard
	var match *bool
	for off < len(img) {
		build := func(n int) any {
			r := imageUploadReq{Off: off, Data: img[off : off+n]}
			if off == 0 {
				r.Image, r.Len, r.Sha = image, len(img), sum[:]
			}
			return r
		}
		n, err := c.fitChunk(len(img)-off, build)
		if err != nil {
			return fmt.Errorf("image.upload on %s: %w", c.opts.Name, err)
		}
		var rsp offRsp
		if err := c.Do(ctx, OpWrite, GroupImage, CmdImageUpload, build(n), &rsp); err != nil {
			return fmt.Errorf("upload image at offset %d of %d: %w", off, len(img), err)
		}
		next, err := c.nextOffset("image.upload", rsp, off+n, len(img))
		if err != nil {
			return err
		}
		if err := guard.check("image.upload", c.opts.Name, off, next); err != nil {
			return err
		}
		off, match = next, rsp.Match
		if progress != nil {
			progress(off, len(img))
		}
	}
	// The board compares the slot's sha256 with the one sent first and
	// says so in its last answer.
	if match != nil && !*match {
		return fmt.Errorf("image.upload on %s: %w: the board's sha256 of the uploaded image differs from %x", c.opts.Name, ErrVerify, sum)
	}
	return nil
}

// maxStalls is how many answers in a row may fail to move an upload
// forward (a board asking for a chunk again) before it is given up.
const maxStalls = 4

// stallGuard ends an upload whose board keeps answering offsets that do
// not advance, which would otherwise loop for ever.
type stallGuard struct{ stalls int }

func (g *stallGuard) check(cmd, port string, off, next int) error {
	if next > off {
		g.stalls = 0
		return nil
	}
	g.stalls++
	if g.stalls >= maxStalls {
		return fmt.Errorf("%s on %s: %w: board answered offset %d %d times without progress", cmd, port, ErrProtocol, next, g.stalls)
	}
	return nil
}

// nextOffset checks the offset a board answered an upload chunk with. A
// board may answer an offset other than sent+n (resuming, or asking for a
// chunk again); anything outside the transfer is a protocol error.
func (c *Client) nextOffset(cmd string, rsp offRsp, expect, total int) (int, error) {
	if rsp.Off == nil {
		return 0, fmt.Errorf("%s on %s: %w: answer has no offset", cmd, c.opts.Name, ErrProtocol)
	}
	off := *rsp.Off
	if off < 0 || off > total {
		return 0, fmt.Errorf("%s on %s: %w: board answered offset %d of %d", cmd, c.opts.Name, ErrProtocol, off, total)
	}
	if off != expect {
		c.log.Debug("board moved the offset", "port", c.opts.Name, "cmd", cmd, "expected", expect, "got", off)
	}
	return off, nil
}

// ImageErase erases the secondary slot (image group, command 5).
func (c *Client) ImageErase(ctx context.Context) error {
	return c.Do(ctx, OpWrite, GroupImage, CmdImageErase, nil, nil)
}

type fsFileReq struct {
	Off  int    `cbor:"off"`
	Data []byte `cbor:"data"`
	Name string `cbor:"name"`
	Len  *int   `cbor:"len,omitempty"` // on the first chunk only, even when 0
}

// FileUpload writes data to the file name on the board (file system group,
// command 0), replacing it, in chunks sized to the board's buffer. With
// resume, it first asks the board how much of the file it holds and, if
// those bytes hash the same as the start of data, carries on from there.
// Every upload ends by comparing the board's sha256 of the file with data's
// and returns an error wrapping ErrVerify if they differ.
func (c *Client) FileUpload(ctx context.Context, name string, data []byte, resume bool, progress Progress) error {
	if err := c.FileWrite(ctx, name, data, resume, progress); err != nil {
		return err
	}
	return c.VerifyFile(ctx, name, data)
}

// FileWrite is FileUpload without the final comparison, for a caller that
// makes it itself with VerifyFile as a step of its own: until then the
// board's file is unchecked.
func (c *Client) FileWrite(ctx context.Context, name string, data []byte, resume bool, progress Progress) error {
	off := 0
	if resume {
		var err error
		if off, err = c.resumeOffset(ctx, name, data); err != nil {
			return fmt.Errorf("upload %s: %w", name, err)
		}
	}
	total := len(data)
	var guard stallGuard
	// An upload from 0 sends at least one request, which creates or
	// truncates the file even when data is empty.
	for first := off == 0; first || off < total; first = false {
		build := func(n int) any {
			r := fsFileReq{Off: off, Data: data[off : off+n], Name: name}
			if off == 0 {
				r.Len = &total
			}
			return r
		}
		n, err := c.fitChunk(total-off, build)
		if err != nil {
			return fmt.Errorf("fs.file on %s: %w", c.opts.Name, err)
		}
		var rsp offRsp
		err = c.Do(ctx, OpWrite, GroupFS, CmdFSFile, build(n), &rsp)
		if off > 0 && isOffsetRefused(err) {
			// The board holds a different length than we thought: a
			// resent chunk it had already written, say. Go on from what
			// it holds; the final hash check covers the result.
			size, serr := c.FileStatus(ctx, name)
			if serr != nil || size > total {
				return fmt.Errorf("upload %s at offset %d of %d: %w", name, off, total, err)
			}
			c.log.Debug("board refused the offset; going on from its length", "port", c.opts.Name, "name", name, "off", off, "len", size)
			rsp.Off = &size
		} else if err != nil {
			return fmt.Errorf("upload %s at offset %d of %d: %w", name, off, total, err)
		}
		next, err := c.nextOffset("fs.file", rsp, off+n, total)
		if err != nil {
			return err
		}
		if !first {
			if err := guard.check("fs.file", c.opts.Name, off, next); err != nil {
				return err
			}
		}
		off = next
		if progress != nil {
			progress(off, total)
		}
	}
	return nil
}

// isOffsetRefused reports whether err is a board refusing an upload
// chunk's offset: file system rc 11 in version 2, EINVAL in version 1.
func isOffsetRefused(err error) bool {
	var be *Error
	if !errors.As(err, &be) {
		return false
	}
	return be.Group == GroupFS && be.GroupRC == FSRCFileOffset || be.GroupRC == 0 && be.RC == RCInvalid
}

// VerifyFile checks that the board's file name holds data, by its length
// and the board's sha256 of it (file system group, command 2). A board
// holding other bytes is an error wrapping ErrVerify that gives both
// lengths and hashes; a board that cannot say is the link's or the
// board's error.
func (c *Client) VerifyFile(ctx context.Context, name string, data []byte) error {
	if len(data) == 0 {
		// Boards do not hash empty files; their length says it all.
		size, err := c.FileStatus(ctx, name)
		if err != nil {
			return fmt.Errorf("verify %s: %w", name, err)
		}
		if size != 0 {
			return fmt.Errorf("verify %s on %s: %w: board holds %d bytes, sent none", name, c.opts.Name, ErrVerify, size)
		}
		return nil
	}
	want := sha256.Sum256(data)
	got, size, err := c.FileHash(ctx, name, 0, 0)
	if err != nil {
		return fmt.Errorf("verify %s: %w", name, err)
	}
	if size != len(data) || !bytes.Equal(got, want[:]) {
		return fmt.Errorf("verify %s on %s: %w: board holds %d bytes with sha256 %x, sent %d bytes with sha256 %x",
			name, c.opts.Name, ErrVerify, size, got, len(data), want)
	}
	return nil
}

// resumeOffset returns where an interrupted upload of data to name can go
// on: the board's file length if its bytes are the start of data, else 0.
// A board that has no such file, or cannot say, means 0; a link that
// fails is an error.
func (c *Client) resumeOffset(ctx context.Context, name string, data []byte) (int, error) {
	size, err := c.FileStatus(ctx, name)
	if isBoardRefusal(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if size <= 0 || size > len(data) {
		return 0, nil
	}
	got, _, err := c.FileHash(ctx, name, 0, size)
	if isBoardRefusal(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	want := sha256.Sum256(data[:size])
	if !bytes.Equal(got, want[:]) {
		return 0, nil
	}
	return size, nil
}

// isBoardRefusal reports whether err is the board answering with an error
// code, rather than the link failing.
func isBoardRefusal(err error) bool {
	var be *Error
	return errors.As(err, &be)
}

// DefaultDownloadLimit is the largest file FileDownload takes into
// memory.
const DefaultDownloadLimit = 1 << 20

// FileDownload reads the file name from the board (file system group,
// command 0) into memory. A file the board says is longer than
// DefaultDownloadLimit is refused with an error wrapping ErrTooLarge
// before any of it is read; FileDownloadTo streams larger files.
func (c *Client) FileDownload(ctx context.Context, name string, progress Progress) ([]byte, error) {
	var b bytes.Buffer
	if _, err := c.FileDownloadTo(ctx, name, &b, DefaultDownloadLimit, progress); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// FileDownloadTo reads the file name from the board (file system group,
// command 0) and writes it to w as it arrives, returning the bytes
// written. The board announces the file's length in its first answer: a
// length above limit is refused with an error wrapping ErrTooLarge, and
// one below zero with ErrProtocol, before anything is written; so is any
// answer that would carry the file past its announced length. A write
// to w that fails ends the download with that error.
func (c *Client) FileDownloadTo(ctx context.Context, name string, w io.Writer, limit int64, progress Progress) (int64, error) {
	type req struct {
		Off  int64  `cbor:"off"`
		Name string `cbor:"name"`
	}
	var (
		done  int64
		total int64 = -1
	)
	for total < 0 || done < total {
		var rsp struct {
			Off  int64  `cbor:"off"`
			Data []byte `cbor:"data"`
			Len  *int64 `cbor:"len"`
		}
		if err := c.Do(ctx, OpRead, GroupFS, CmdFSFile, req{done, name}, &rsp); err != nil {
			return done, fmt.Errorf("download %s at offset %d: %w", name, done, err)
		}
		if rsp.Off != done {
			return done, fmt.Errorf("fs.file on %s: %w: asked for offset %d, got %d", c.opts.Name, ErrProtocol, done, rsp.Off)
		}
		if total < 0 {
			switch {
			case rsp.Len == nil:
				return done, fmt.Errorf("fs.file on %s: %w: first answer has no length", c.opts.Name, ErrProtocol)
			case *rsp.Len < 0:
				return done, fmt.Errorf("fs.file on %s: %w: the board announces a length of %d", c.opts.Name, ErrProtocol, *rsp.Len)
			case *rsp.Len > limit:
				return done, fmt.Errorf("download %s from %s: %w: the board announces %d bytes, the limit is %d", name, c.opts.Name, ErrTooLarge, *rsp.Len, limit)
			}
			total = *rsp.Len
		}
		if len(rsp.Data) == 0 && done < total {
			return done, fmt.Errorf("fs.file on %s: %w: no data at offset %d of %d", c.opts.Name, ErrProtocol, done, total)
		}
		if int64(len(rsp.Data)) > total-done {
			return done, fmt.Errorf("fs.file on %s: %w: %d bytes at offset %d of a %d-byte file", c.opts.Name, ErrProtocol, len(rsp.Data), done, total)
		}
		n, err := w.Write(rsp.Data)
		done += int64(n)
		if err != nil {
			return done, fmt.Errorf("download %s: %w", name, err)
		}
		if progress != nil {
			progress(int(done), int(total))
		}
	}
	return done, nil
}

// FileStatus returns the length of the file name (file system group,
// command 1). A missing file is an error matching ErrNotFound.
func (c *Client) FileStatus(ctx context.Context, name string) (int, error) {
	var rsp struct {
		Len int `cbor:"len"`
	}
	err := c.Do(ctx, OpRead, GroupFS, CmdFSStatus, struct {
		Name string `cbor:"name"`
	}{name}, &rsp)
	return rsp.Len, err
}

// FileHash returns the sha256 of length bytes of the file name from off
// (file system group, command 2), and the number of bytes hashed. A zero
// length hashes to the end of the file.
func (c *Client) FileHash(ctx context.Context, name string, off, length int) ([]byte, int, error) {
	type req struct {
		Name string `cbor:"name"`
		Type string `cbor:"type"`
		Off  int    `cbor:"off,omitempty"`
		Len  int    `cbor:"len,omitempty"`
	}
	var rsp struct {
		Type   string `cbor:"type"`
		Off    int    `cbor:"off"`
		Len    int    `cbor:"len"`
		Output []byte `cbor:"output"`
	}
	err := c.Do(ctx, OpRead, GroupFS, CmdFSHash, req{name, "sha256", off, length}, &rsp)
	var be *Error
	if errors.As(err, &be) && be.Group == GroupFS && be.GroupRC == FSRCFileEmpty {
		// Boards refuse to hash an empty file; its hash is known.
		empty := sha256.Sum256(nil)
		return empty[:], 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	if rsp.Type != "" && rsp.Type != "sha256" || len(rsp.Output) != sha256.Size {
		return nil, 0, fmt.Errorf("fs.hash on %s: %w: answer is %q of %d bytes", c.opts.Name, ErrProtocol, rsp.Type, len(rsp.Output))
	}
	return rsp.Output, rsp.Len, nil
}
