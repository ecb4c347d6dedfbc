package board

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"zerotouch/flasher"
)

// smpErr is an error a handler answers. A group error (GroupRC set) goes
// out as err{group,rc} to a version 2 request and as the legacy rc to a
// version 1 request, as Zephyr translates it.
type smpErr struct {
	rc      flasher.RC
	group   uint16
	groupRC int
	extra   map[string]any // more fields of the error answer
}

func (e *smpErr) Error() string { return fmt.Sprintf("rc %d group %d/%d", e.rc, e.group, e.groupRC) }

func mgmtErr(rc flasher.RC) *smpErr { return &smpErr{rc: rc} }

func groupErr(group uint16, rc int, legacy flasher.RC) *smpErr {
	return &smpErr{rc: legacy, group: group, groupRC: rc}
}

// handler answers one command: it decodes the request body and returns
// the answer's body, and optionally work to do once the answer is sent.
type handler func(b *Board, body []byte) (rsp any, after func(), err error)

type cmdKey struct {
	group uint16
	id    uint8
	write bool
}

var handlers = map[cmdKey]handler{
	{flasher.GroupOS, flasher.CmdOSEcho, false}:                     handleEcho,
	{flasher.GroupOS, flasher.CmdOSEcho, true}:                      handleEcho,
	{flasher.GroupOS, flasher.CmdOSReset, true}:                     handleReset,
	{flasher.GroupOS, flasher.CmdOSParams, false}:                   handleParams,
	{flasher.GroupOS, flasher.CmdOSInfo, false}:                     handleInfo,
	{flasher.GroupImage, flasher.CmdImageState, false}:              handleImageState,
	{flasher.GroupImage, flasher.CmdImageState, true}:               handleImageStateWrite,
	{flasher.GroupImage, flasher.CmdImageUpload, true}:              handleImageUpload,
	{flasher.GroupImage, flasher.CmdImageErase, true}:               handleImageErase,
	{flasher.GroupFS, flasher.CmdFSFile, false}:                     handleFileDownload,
	{flasher.GroupFS, flasher.CmdFSFile, true}:                      handleFileUpload,
	{flasher.GroupFS, flasher.CmdFSStatus, false}:                   handleFileStatus,
	{flasher.GroupFS, flasher.CmdFSHash, false}:                     handleFileHash,
	{flasher.GroupProvisioning, flasher.CmdProvIdentity, false}:     handleIdentity,
	{flasher.GroupProvisioning, flasher.CmdProvTPM, true}:           handleTPM,
	{flasher.GroupProvisioning, flasher.CmdProvKeygen, true}:        handleKeygen,
	{flasher.GroupProvisioning, flasher.CmdProvRegister, true}:      handleRegister,
	{flasher.GroupProvisioning, flasher.CmdProvRegistration, false}: handleRegistration,
	{flasher.GroupProvisioning, flasher.CmdProvCommit, true}:        handleCommit,
}

// serves reports whether the board's firmware has the command: a stock
// board has no provisioning group, and the fs hash command only when
// its firmware enables it.
func (b *Board) serves(group uint16, id uint8) bool {
	if !b.stock() {
		return true
	}
	switch group {
	case flasher.GroupOS, flasher.GroupImage:
		return true
	case flasher.GroupFS:
		return id != flasher.CmdFSHash || !b.cfg.NoFSHash
	}
	return false
}

// dispatch answers one request message. It returns nil for messages a
// board ignores (answers, malformed headers).
func (b *Board) dispatch(msg []byte) ([]byte, func()) {
	m, err := flasher.ParseMessage(msg)
	if err != nil || m.Op.IsResponse() {
		b.log.Debug("ignored message", "err", err)
		return nil, nil
	}
	version := min(m.Version, flasher.Version2)
	var (
		rsp   any
		after func()
		herr  error
	)
	if m.Version > flasher.Version2 {
		herr = mgmtErr(flasher.RCTooNew)
	} else if h, ok := handlers[cmdKey{m.Group, m.ID, m.Op == flasher.OpWrite}]; !ok || !b.serves(m.Group, m.ID) {
		herr = mgmtErr(flasher.RCNotSupported)
	} else if rc, ok := b.injectedRC(m.Header); ok {
		herr = rc
	} else {
		rsp, after, herr = h(b, m.Body)
	}
	if herr != nil {
		var se *smpErr
		if !errors.As(herr, &se) {
			b.log.Warn("command failed", "cmd", m.Header.String(), "err", herr)
			se = mgmtErr(flasher.RCUnknown)
		}
		rsp, after = errorBody(se, version), nil
	}
	out, err := flasher.EncodeMessage(flasher.Header{
		Version: version, Op: m.Op.Response(), Group: m.Group, Seq: m.Seq, ID: m.ID,
	}, rsp)
	if err != nil {
		b.log.Error("encode answer", "cmd", m.Header.String(), "err", err)
		return nil, nil
	}
	return out, after
}

func errorBody(e *smpErr, version uint8) map[string]any {
	body := map[string]any{}
	for k, v := range e.extra {
		body[k] = v
	}
	if e.groupRC != 0 && version == flasher.Version2 {
		body["err"] = map[string]any{"group": e.group, "rc": e.groupRC}
	} else {
		rc := e.rc
		if rc == flasher.RCOK {
			rc = flasher.RCUnknown
		}
		body["rc"] = int(rc)
	}
	return body
}

func decode(body []byte, v any) error {
	if err := flasher.DecodeBody(body, v); err != nil {
		return mgmtErr(flasher.RCInvalid)
	}
	return nil
}

// OS group.

func handleEcho(_ *Board, body []byte) (any, func(), error) {
	var req struct {
		D string `cbor:"d"`
	}
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	return map[string]any{"r": req.D}, nil, nil
}

func handleReset(b *Board, body []byte) (any, func(), error) {
	return map[string]any{}, b.reboot, nil
}

func handleParams(b *Board, _ []byte) (any, func(), error) {
	return map[string]any{"buf_size": b.cfg.BufSize, "buf_count": b.cfg.BufCount}, nil, nil
}

func handleInfo(b *Board, body []byte) (any, func(), error) {
	var req struct {
		Format string `cbor:"format"`
	}
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	format := req.Format
	if format == "" {
		format = "s"
	}
	if strings.Contains(format, "a") {
		format = "snrvmpio"
	}
	b.mu.Lock()
	fw := b.st.Slots[0].Version
	b.mu.Unlock()
	fields := []struct {
		letter byte
		value  string
	}{
		{'s', "Zephyr"}, {'n', b.cfg.Serial}, {'r', fw}, {'v', "zerotouch-virtual"},
		{'b', ""}, {'m', runtime.GOARCH}, {'p', "virtual"}, {'i', b.cfg.Model + "@" + b.cfg.HW}, {'o', "Zephyr"},
	}
	for _, c := range []byte(format) {
		if !strings.ContainsRune("snrvbmpio", rune(c)) {
			return nil, nil, groupErr(flasher.GroupOS, 2, flasher.RCInvalid) // OS_MGMT_ERR_INVALID_FORMAT
		}
	}
	var out []string
	for _, f := range fields {
		if strings.IndexByte(format, f.letter) >= 0 && f.value != "" {
			out = append(out, f.value)
		}
	}
	return map[string]any{"output": strings.Join(out, " ")}, nil, nil
}

// Image group.

func (b *Board) imageStatesLocked() map[string]any {
	var images []map[string]any
	for i, s := range b.st.Slots {
		if s.empty() {
			continue
		}
		images = append(images, map[string]any{
			"image": 0, "slot": i, "version": s.Version, "hash": s.Hash,
			"bootable": true, "pending": s.Pending, "confirmed": i == 0 && s.Confirmed,
			"active": i == 0, "permanent": s.Permanent,
		})
	}
	return map[string]any{"images": images, "splitStatus": 0}
}

func handleImageState(b *Board, _ []byte) (any, func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.imageStatesLocked(), nil, nil
}

func handleImageStateWrite(b *Board, body []byte) (any, func(), error) {
	var req struct {
		Hash    []byte `cbor:"hash"`
		Confirm bool   `cbor:"confirm"`
	}
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &b.st
	switch {
	case (len(req.Hash) == 0 || bytes.Equal(req.Hash, s.Slots[0].Hash)) && req.Confirm:
		s.Slots[0].Confirmed = true
		s.TestBoot = false
	case len(req.Hash) > 0 && !s.Slots[1].empty() && bytes.Equal(req.Hash, s.Slots[1].Hash):
		s.Slots[1].Pending = true
		s.Slots[1].Permanent = req.Confirm
	case len(req.Hash) > 0 && bytes.Equal(req.Hash, s.Slots[0].Hash):
		return nil, nil, groupErr(flasher.GroupImage, 33, flasher.RCBadState) // test of the active image
	default:
		return nil, nil, groupErr(flasher.GroupImage, 8, flasher.RCNoEntry) // IMG_MGMT_ERR_HASH_NOT_FOUND
	}
	if err := b.saveLocked(); err != nil {
		return nil, nil, err
	}
	return b.imageStatesLocked(), nil, nil
}

// handleImageUpload follows Zephyr's img_mgmt: the first chunk carries the
// length and the image's sha256; a first chunk with the sha256 of the
// upload in progress resumes it (the answer says where); a chunk at the
// wrong offset is dropped and answered with the offset expected.
func handleImageUpload(b *Board, body []byte) (any, func(), error) {
	var req struct {
		Image int    `cbor:"image"`
		Len   *int   `cbor:"len"`
		Off   *int   `cbor:"off"`
		Sha   []byte `cbor:"sha"`
		Data  []byte `cbor:"data"`
	}
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	if req.Off == nil || *req.Off < 0 {
		return nil, nil, groupErr(flasher.GroupImage, flasher.ImgRCInvalidOffset, flasher.RCInvalid)
	}
	if req.Image != 0 {
		return nil, nil, groupErr(flasher.GroupImage, 14, flasher.RCInvalid) // IMG_MGMT_ERR_INVALID_SLOT
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	up := &b.upload
	off := *req.Off
	if off == 0 {
		switch {
		case len(req.Data) < 32:
			return nil, nil, groupErr(flasher.GroupImage, flasher.ImgRCInvalidHeader, flasher.RCInvalid)
		case req.Len == nil || *req.Len <= 0:
			return nil, nil, groupErr(flasher.GroupImage, flasher.ImgRCInvalidLength, flasher.RCInvalid)
		case len(req.Sha) > sha256.Size:
			return nil, nil, groupErr(flasher.GroupImage, flasher.ImgRCInvalidHash, flasher.RCInvalid)
		case *req.Len > b.cfg.SlotSize:
			return nil, nil, groupErr(flasher.GroupImage, flasher.ImgRCTooLarge, flasher.RCInvalid)
		case !isMCUboot(req.Data):
			return nil, nil, groupErr(flasher.GroupImage, flasher.ImgRCBadHeaderMagic, flasher.RCInvalid)
		}
		if b.st.Slots[1].Pending {
			return nil, nil, groupErr(flasher.GroupImage, flasher.ImgRCNoFreeSlot, flasher.RCBadState)
		}
		if up.active && len(req.Sha) > 0 && bytes.Equal(req.Sha, up.sha) && *req.Len == up.size {
			b.log.Info("image upload resumed", "off", up.off)
			return map[string]any{"off": up.off}, nil, nil
		}
		*up = imageUpload{active: true, sha: req.Sha, size: *req.Len}
		b.st.Slots[1] = slot{}
		if err := os.WriteFile(b.uploadPartPath(), nil, 0o600); err != nil {
			return nil, nil, groupErr(flasher.GroupImage, flasher.ImgRCFlashWriteFailed, flasher.RCUnknown)
		}
		if err := b.saveLocked(); err != nil {
			return nil, nil, err
		}
	}
	if !up.active {
		return nil, nil, groupErr(flasher.GroupImage, flasher.ImgRCInvalidOffset, flasher.RCInvalid)
	}
	if off != up.off {
		return map[string]any{"off": up.off}, nil, nil
	}
	if off+len(req.Data) > up.size {
		return nil, nil, groupErr(flasher.GroupImage, flasher.ImgRCDataOverrun, flasher.RCInvalid)
	}
	if err := writeAt(b.uploadPartPath(), off, req.Data, false, !b.cfg.NoSync); err != nil {
		*up = imageUpload{}
		return nil, nil, groupErr(flasher.GroupImage, flasher.ImgRCFlashWriteFailed, flasher.RCUnknown)
	}
	up.off += len(req.Data)
	rsp := map[string]any{"off": up.off}
	if up.off == up.size {
		match, err := b.finishUploadLocked()
		if err != nil {
			return nil, nil, err
		}
		if len(up.sha) > 0 {
			rsp["match"] = match
		}
		*up = imageUpload{}
	}
	return rsp, nil, nil
}

func isMCUboot(b []byte) bool {
	return len(b) >= 4 && b[0] == 0x3d && b[1] == 0xb8 && b[2] == 0xf3 && b[3] == 0x96
}

// finishUploadLocked moves a complete upload into slot 1 and reports
// whether it matches the sha256 the station announced.
func (b *Board) finishUploadLocked() (bool, error) {
	data, err := os.ReadFile(b.uploadPartPath())
	if err != nil {
		return false, err
	}
	sum := sha256.Sum256(data)
	match := len(b.upload.sha) == 0 || bytes.HasPrefix(sum[:], b.upload.sha)
	if err := os.Rename(b.uploadPartPath(), b.slotPath(1)); err != nil {
		return false, err
	}
	if info, err := flasher.ParseImage(data); err == nil {
		b.st.Slots[1] = slot{Version: info.Version.String(), Hash: info.Hash}
	} else {
		b.log.Warn("uploaded image is not bootable", "err", err)
	}
	b.log.Info("image uploaded", "bytes", len(data), "version", b.st.Slots[1].Version, "match", match)
	return match, b.saveLocked()
}

func handleImageErase(b *Board, _ []byte) (any, func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.st.Slots[1].Pending {
		return nil, nil, groupErr(flasher.GroupImage, flasher.ImgRCNoFreeSlot, flasher.RCBadState)
	}
	b.upload = imageUpload{}
	b.st.Slots[1] = slot{}
	_ = os.Remove(b.slotPath(1))
	_ = os.Remove(b.uploadPartPath())
	return map[string]any{}, nil, b.saveLocked()
}

// File system group.

func fsErr(rc int, legacy flasher.RC) *smpErr { return groupErr(flasher.GroupFS, rc, legacy) }

func (b *Board) fsName(name string) (string, error) {
	p, err := b.fsPath(name)
	if errors.Is(err, errNoMount) {
		return "", fsErr(flasher.FSRCMountNotFound, flasher.RCNoEntry)
	}
	if err != nil {
		return "", fsErr(flasher.FSRCFileInvalidName, flasher.RCInvalid)
	}
	return p, nil
}

// fsUsedLocked is how many bytes the board's files hold, the file p
// left out.
func (b *Board) fsUsedLocked(p string) int {
	used := 0
	filepath.WalkDir(filepath.Join(b.cfg.Dir, "fs"), func(q string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || q == p {
			return nil
		}
		if info, err := d.Info(); err == nil {
			used += int(info.Size())
		}
		return nil
	})
	return used
}

func fileSize(p string) (int, error) {
	st, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, fsErr(flasher.FSRCFileNotFound, flasher.RCNoEntry)
	case err != nil:
		return 0, fsErr(flasher.FSRCFileOpenFailed, flasher.RCUnknown)
	case st.IsDir():
		return 0, fsErr(flasher.FSRCFileIsDirectory, flasher.RCInvalid)
	}
	return int(st.Size()), nil
}

// handleFileUpload follows Zephyr's fs_mgmt: offset 0 (with the length)
// creates or truncates the file; a later chunk must start where the file
// ends.
func handleFileUpload(b *Board, body []byte) (any, func(), error) {
	var req struct {
		Off  *int   `cbor:"off"`
		Data []byte `cbor:"data"`
		Name string `cbor:"name"`
		Len  *int   `cbor:"len"`
	}
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	if req.Off == nil || *req.Off < 0 {
		return nil, nil, mgmtErr(flasher.RCInvalid)
	}
	p, err := b.fsName(req.Name)
	if err != nil {
		return nil, nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	off := *req.Off
	if off == 0 {
		if req.Len == nil && len(req.Data) > 0 {
			return nil, nil, mgmtErr(flasher.RCInvalid)
		}
		if b.stock() {
			// littlefs makes no folders on a write: the file's folder
			// must be there.
			if st, err := os.Stat(filepath.Dir(p)); err != nil || !st.IsDir() {
				return nil, nil, fsErr(flasher.FSRCFileOpenFailed, flasher.RCUnknown)
			}
		} else if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return nil, nil, fsErr(flasher.FSRCFileOpenFailed, flasher.RCUnknown)
		}
	} else {
		size, err := fileSize(p)
		if err != nil {
			return nil, nil, err
		}
		if off != size {
			e := fsErr(flasher.FSRCFileOffset, flasher.RCInvalid)
			e.extra = map[string]any{"len": size}
			return nil, nil, e
		}
	}
	if b.cfg.FSSize > 0 && b.fsUsedLocked(p)+off+len(req.Data) > b.cfg.FSSize {
		// A full file system: littlefs answers -ENOSPC and fs_mgmt a
		// write failure. The file keeps what it held.
		if off == 0 {
			writeAt(p, 0, nil, true, !b.cfg.NoSync)
		}
		b.log.Warn("file system full", "name", req.Name, "off", off, "size", b.cfg.FSSize)
		return nil, nil, fsErr(flasher.FSRCFileWriteFailed, flasher.RCNoMem)
	}
	if b.faults.CorruptWrite > 0 && len(req.Data) > 0 {
		b.faults.CorruptWrite--
		req.Data = bytes.Clone(req.Data)
		req.Data[len(req.Data)/2] ^= 0x10
	}
	if err := writeAt(p, off, req.Data, off == 0, !b.cfg.NoSync); err != nil {
		b.log.Warn("file write failed", "name", req.Name, "err", err)
		return nil, nil, fsErr(flasher.FSRCFileWriteFailed, flasher.RCUnknown)
	}
	if b.st.Provisioned && req.Name == b.st.ConfigPath {
		// Rewriting the committed configuration unprovisions the board
		// until the next commit.
		b.st.Provisioned = false
		if err := b.saveLocked(); err != nil {
			return nil, nil, err
		}
	}
	return map[string]any{"off": off + len(req.Data)}, nil, nil
}

// writeAt writes data at off in the file p, truncating it first when
// truncate is set, and with sync syncs it.
func writeAt(p string, off int, data []byte, truncate, sync bool) error {
	flags := os.O_WRONLY | os.O_CREATE
	if truncate {
		flags |= os.O_TRUNC
	}
	f, err := os.OpenFile(p, flags, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(data, int64(off)); err != nil {
		f.Close()
		return err
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

func handleFileDownload(b *Board, body []byte) (any, func(), error) {
	var req struct {
		Off  int    `cbor:"off"`
		Name string `cbor:"name"`
	}
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	p, err := b.fsName(req.Name)
	if err != nil {
		return nil, nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	size, err := fileSize(p)
	if err != nil {
		return nil, nil, err
	}
	if req.Off < 0 || req.Off > size {
		return nil, nil, fsErr(flasher.FSRCFileOffsetLarger, flasher.RCInvalid)
	}
	// What fits in the board's buffer beside header, map and fields.
	chunk := min(size-req.Off, b.cfg.BufSize-4-flasher.HeaderLen-48)
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, fsErr(flasher.FSRCFileOpenFailed, flasher.RCUnknown)
	}
	defer f.Close()
	data := make([]byte, chunk)
	if _, err := f.ReadAt(data, int64(req.Off)); err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fsErr(flasher.FSRCFileReadFailed, flasher.RCUnknown)
	}
	// The length goes in every answer, not only the first: MCUmgr clients
	// differ in which one they read it from.
	return map[string]any{"off": req.Off, "data": data, "len": size}, nil, nil
}

func handleFileStatus(b *Board, body []byte) (any, func(), error) {
	var req struct {
		Name string `cbor:"name"`
	}
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	p, err := b.fsName(req.Name)
	if err != nil {
		return nil, nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	size, err := fileSize(p)
	if err != nil {
		return nil, nil, err
	}
	return map[string]any{"len": size}, nil, nil
}

func handleFileHash(b *Board, body []byte) (any, func(), error) {
	var req struct {
		Name string `cbor:"name"`
		Type string `cbor:"type"`
		Off  int    `cbor:"off"`
		Len  *int   `cbor:"len"`
	}
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	if req.Type == "" {
		req.Type = "sha256"
	}
	if req.Type != "sha256" && req.Type != "crc32" {
		return nil, nil, fsErr(flasher.FSRCChecksumNotFound, flasher.RCNotSupported)
	}
	if req.Len != nil && *req.Len <= 0 || req.Off < 0 {
		return nil, nil, mgmtErr(flasher.RCInvalid)
	}
	p, err := b.fsName(req.Name)
	if err != nil {
		return nil, nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	data, err := os.ReadFile(p)
	if err != nil {
		if _, serr := fileSize(p); serr != nil {
			return nil, nil, serr
		}
		return nil, nil, fsErr(flasher.FSRCFileReadFailed, flasher.RCUnknown)
	}
	if len(data) == 0 {
		return nil, nil, fsErr(flasher.FSRCFileEmpty, flasher.RCInvalid)
	}
	if req.Off >= len(data) {
		return nil, nil, fsErr(flasher.FSRCFileOffsetLarger, flasher.RCInvalid)
	}
	end := len(data)
	if req.Len != nil {
		end = min(end, req.Off+*req.Len)
	}
	part := data[req.Off:end]
	rsp := map[string]any{"type": req.Type, "len": len(part)}
	if req.Off != 0 {
		rsp["off"] = req.Off
	}
	if req.Type == "crc32" {
		rsp["output"] = crc32.ChecksumIEEE(part)
	} else {
		sum := sha256.Sum256(part)
		rsp["output"] = sum[:]
	}
	return rsp, nil, nil
}

// Provisioning group.

func (b *Board) caps() []string {
	caps := []string{flasher.CapKeygen, flasher.CapFS, flasher.CapImage}
	if b.tpm != nil {
		caps = append([]string{flasher.CapTPM}, caps...)
	}
	return caps
}

func handleIdentity(b *Board, _ []byte) (any, func(), error) {
	b.mu.Lock()
	fw := b.st.Slots[0].Version
	b.mu.Unlock()
	return map[string]any{
		"serial": b.cfg.Serial, "model": b.cfg.Model, "hw": b.cfg.HW, "fw": fw, "caps": b.caps(),
	}, nil, nil
}

func provErr(rc int, legacy flasher.RC) *smpErr {
	return groupErr(flasher.GroupProvisioning, rc, legacy)
}

func handleTPM(b *Board, body []byte) (any, func(), error) {
	var req struct {
		Cmd []byte `cbor:"cmd"`
	}
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	if b.tpm == nil {
		return nil, nil, provErr(flasher.ProvRCNoTPM, flasher.RCNotSupported)
	}
	if len(req.Cmd) < 10 {
		return nil, nil, mgmtErr(flasher.RCInvalid)
	}
	if g := b.tpmGarbage(); g != nil {
		return map[string]any{"rsp": g}, nil, nil
	}
	rsp, err := lockedTPM{b}.Send(req.Cmd)
	if err != nil {
		b.log.Warn("TPM command failed", "err", err)
		return nil, nil, provErr(flasher.ProvRCTPMFailed, flasher.RCUnknown)
	}
	return map[string]any{"rsp": rsp}, nil, nil
}

// tpmGarbage returns a garbage TPM response while the TPMGarbage fault
// lasts, nil otherwise. Every other one has a well-formed header saying
// success, so that the garbage reaches the parameters.
func (b *Board) tpmGarbage() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.faults.TPMGarbage <= 0 {
		return nil
	}
	b.faults.TPMGarbage--
	var n [1]byte
	rand.Read(n[:])
	g := make([]byte, 10+int(n[0]))
	rand.Read(g)
	if b.faults.TPMGarbage%2 == 0 {
		binary.BigEndian.PutUint16(g[0:], 0x8001) // TPM_ST_NO_SESSIONS
		binary.BigEndian.PutUint32(g[2:], uint32(len(g)))
		binary.BigEndian.PutUint32(g[6:], 0) // TPM_RC_SUCCESS
	}
	b.log.Info("fault: garbage TPM response", "bytes", len(g))
	return g
}

// handleKeygen makes a key that stays on the board and answers with a
// CSR. The key lives in the board's RAM only: a virtual board has no
// secure element to keep it in, and keys are never written in the clear.
func handleKeygen(b *Board, body []byte) (any, func(), error) {
	var req struct {
		Alg string `cbor:"alg"`
		CN  string `cbor:"cn"`
	}
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	if req.CN == "" || len(req.CN) > 64 {
		return nil, nil, provErr(flasher.ProvRCBadCN, flasher.RCInvalid)
	}
	var key crypto.Signer
	var err error
	switch req.Alg {
	case flasher.AlgECDSAP256:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case flasher.AlgRSA2048:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, nil, provErr(flasher.ProvRCBadAlgorithm, flasher.RCNotSupported)
	}
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: req.CN},
	}, key)
	if err != nil {
		return nil, nil, err
	}
	b.mu.Lock()
	b.keys[req.Alg] = key
	b.keysMade = append(b.keysMade, KeyMade{At: time.Now(), Alg: req.Alg, Public: key.Public()})
	b.mu.Unlock()
	pub, _ := x509.MarshalPKIXPublicKey(key.Public())
	b.log.Info("key made", "alg", req.Alg, "cn", req.CN, "pub", keyFingerprint(pub))
	return map[string]any{"csr": csr}, nil, nil
}

// KeyMade is a key the board made (keygen): when, and its public half.
type KeyMade struct {
	At     time.Time
	Alg    string
	Public crypto.PublicKey
}

// KeysMade returns every key keygen made since the board started, oldest
// first: which key the board held at any moment.
func (b *Board) KeysMade() []KeyMade {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]KeyMade(nil), b.keysMade...)
}

// DeviceKey returns the public half of the last key keygen made for alg,
// or nil.
func (b *Board) DeviceKey(alg string) crypto.PublicKey {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k, ok := b.keys[alg].(crypto.Signer); ok {
		return k.Public()
	}
	return nil
}

func handleCommit(b *Board, body []byte) (any, func(), error) {
	var req struct {
		Sum  []byte `cbor:"config_sha256"`
		Path string `cbor:"path"`
	}
	if err := decode(body, &req); err != nil {
		return nil, nil, err
	}
	if len(req.Sum) != sha256.Size {
		return nil, nil, mgmtErr(flasher.RCInvalid)
	}
	name := req.Path
	if name == "" {
		name = b.cfg.ConfigPath
	}
	p, err := b.fsName(name)
	if err != nil {
		return nil, nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	got, err := sha256File(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, provErr(flasher.ProvRCNoConfig, flasher.RCNoEntry)
	}
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(got, req.Sum) {
		b.log.Warn("commit refused: config differs", "path", name)
		return nil, nil, provErr(flasher.ProvRCConfigMismatch, flasher.RCBadState)
	}
	b.st.Provisioned = true
	b.st.ConfigPath = name
	b.st.ConfigSHA256 = fmt.Sprintf("%x", got)
	if err := b.saveLocked(); err != nil {
		return nil, nil, err
	}
	b.log.Info("provisioned", "config", name)
	return map[string]any{}, nil, nil
}
