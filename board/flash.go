package board

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"zerotouch/flasher"
	"zerotouch/internal/atomicfile"
)

// state is what the board keeps in flash besides its files: the image
// slots and the provisioned flag. It is saved as JSON in the flash
// directory after every change.
type state struct {
	Provisioned  bool    `json:"provisioned"`
	ConfigPath   string  `json:"configPath,omitempty"`
	ConfigSHA256 string  `json:"configSha256,omitempty"`
	Slots        [2]slot `json:"slots"`
	TestBoot     bool    `json:"testBoot,omitempty"` // running a test image that reverts unless confirmed
}

// slot is an image slot. Slot 0 runs; slot 1 receives uploads.
type slot struct {
	Version   string `json:"version,omitempty"`
	Hash      []byte `json:"hash,omitempty"`
	Pending   bool   `json:"pending,omitempty"`
	Permanent bool   `json:"permanent,omitempty"`
	Confirmed bool   `json:"confirmed,omitempty"`
}

func (s slot) empty() bool { return s.Hash == nil }

// imageUpload is an image upload in progress; a board keeps it in RAM, so
// a reset loses it.
type imageUpload struct {
	active bool
	sha    []byte
	size   int
	off    int
}

func (b *Board) statePath() string      { return filepath.Join(b.cfg.Dir, "state.json") }
func (b *Board) slotPath(i int) string  { return filepath.Join(b.cfg.Dir, fmt.Sprintf("slot%d.bin", i)) }
func (b *Board) uploadPartPath() string { return filepath.Join(b.cfg.Dir, "slot1.part") }

// loadFlash reads the board's state, or makes a fresh flash holding the
// factory firmware in slot 0.
func (b *Board) loadFlash() error {
	if err := os.MkdirAll(filepath.Join(b.cfg.Dir, "fs"), 0o700); err != nil {
		return fmt.Errorf("board %s: make flash: %w", b.cfg.Serial, err)
	}
	if b.stock() {
		// The littlefs partition, mounted.
		if err := os.MkdirAll(filepath.Join(b.cfg.Dir, "fs", filepath.FromSlash(flasher.StockMount)), 0o700); err != nil {
			return fmt.Errorf("board %s: make flash: %w", b.cfg.Serial, err)
		}
	}
	data, err := os.ReadFile(b.statePath())
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &b.st); err != nil {
			return fmt.Errorf("board %s: flash state %s is corrupt: %w", b.cfg.Serial, b.statePath(), err)
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("board %s: read flash state: %w", b.cfg.Serial, err)
	}
	v, _ := flasher.ParseImageVersion(b.cfg.FW)
	img := flasher.BuildImage(v, []byte("factory firmware of "+b.cfg.Serial))
	info, err := flasher.ParseImage(img)
	if err != nil {
		return err
	}
	if err := b.writeFile(b.slotPath(0), img); err != nil {
		return fmt.Errorf("board %s: write slot 0: %w", b.cfg.Serial, err)
	}
	b.st.Slots[0] = slot{Version: info.Version.String(), Hash: info.Hash, Confirmed: true}
	return b.saveLocked()
}

// saveLocked writes the state atomically. b.mu is held (or the board is
// not serving yet).
func (b *Board) saveLocked() error {
	data, err := json.MarshalIndent(b.st, "", "  ")
	if err != nil {
		return err
	}
	return b.writeFile(b.statePath(), data)
}

// writeFile replaces a file of the board's flash atomically.
func (b *Board) writeFile(name string, data []byte) error {
	if b.cfg.NoSync {
		return atomicfile.WriteUnsynced(name, data, 0o600)
	}
	return atomicfile.Write(name, data, 0o600)
}

// bootSwapLocked does at boot what MCUboot's swap does: a pending image in
// slot 1 becomes the running image; a test image that was not confirmed is
// swapped back out.
func (b *Board) bootSwapLocked() error {
	s := &b.st
	switch {
	case s.Slots[1].Pending:
		if err := b.swapSlots(); err != nil {
			return err
		}
		s.Slots[0], s.Slots[1] = s.Slots[1], s.Slots[0]
		s.TestBoot = !s.Slots[0].Permanent
		s.Slots[0].Pending, s.Slots[0].Permanent = false, false
		s.Slots[0].Confirmed = !s.TestBoot
		s.Slots[1].Pending, s.Slots[1].Permanent = false, false
	case s.TestBoot && !s.Slots[0].Confirmed:
		if err := b.swapSlots(); err != nil {
			return err
		}
		s.Slots[0], s.Slots[1] = s.Slots[1], s.Slots[0]
		s.TestBoot = false
	default:
		return nil
	}
	return b.saveLocked()
}

func (b *Board) swapSlots() error {
	tmp := b.slotPath(0) + ".swap"
	if err := os.Rename(b.slotPath(0), tmp); err != nil {
		return err
	}
	if err := os.Rename(b.slotPath(1), b.slotPath(0)); err != nil {
		return err
	}
	return os.Rename(tmp, b.slotPath(1))
}

func sha256File(name string) ([]byte, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	return sum[:], nil
}
