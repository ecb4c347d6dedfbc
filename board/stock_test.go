package board_test

import (
	"context"
	"errors"
	"testing"

	"zerotouch/board"
	"zerotouch/flasher"
)

// TestStockProfile: a stock board answers as stock MCUmgr does: no
// provisioning group, the fs hash command only when enabled, files only
// under its mount point and in folders that exist, and a full file system
// refusing a write.
func TestStockProfile(t *testing.T) {
	ctx := context.Background()
	for _, hash := range []bool{true, false} {
		b, err := board.Start(board.Config{Serial: "S1", Profile: board.ProfileStock, NoFSHash: !hash, FSSize: 1000,
			Dir: t.TempDir(), TPM: board.TPMNone, Baud: 2_000_000})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		c, err := flasher.Open(ctx, b.Path(), flasher.Options{Baud: 2_000_000})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var be *flasher.Error
		if _, err := c.Identity(ctx); !errors.As(err, &be) || be.RC != flasher.RCNotSupported {
			t.Errorf("Identity on a stock board = %v, want rc 8 (not supported)", err)
		}
		if err := c.FileWrite(ctx, flasher.StockConfigPath, []byte("config"), false, nil); err != nil {
			t.Fatalf("FileWrite(%s) = %v", flasher.StockConfigPath, err)
		}
		_, _, err = c.FileHash(ctx, flasher.StockConfigPath, 0, 0)
		if hash && err != nil {
			t.Errorf("FileHash with the hash command = %v", err)
		}
		if !hash && !errors.Is(err, flasher.ErrNotSupported) {
			t.Errorf("FileHash without the hash command = %v, want ErrNotSupported", err)
		}
		for _, tt := range []struct {
			name string
			size int
			rc   int
		}{
			{"/lfs/zerotouch/config", 10, flasher.FSRCMountNotFound},
			{flasher.StockMount + "/no/such/folder", 10, flasher.FSRCFileOpenFailed},
			{flasher.StockMount + "/big", 1200, flasher.FSRCFileWriteFailed},
		} {
			err := c.FileWrite(ctx, tt.name, make([]byte, tt.size), false, nil)
			if !errors.As(err, &be) || be.Group != flasher.GroupFS || be.GroupRC != tt.rc {
				t.Errorf("FileWrite(%s, %d bytes) = %v, want fs error %d", tt.name, tt.size, err, tt.rc)
			}
		}
		if got, err := b.ReadFile(flasher.StockConfigPath); err != nil || string(got) != "config" {
			t.Errorf("the board's configuration after the refused writes = %q, %v", got, err)
		}
	}
	if _, err := board.Start(board.Config{Serial: "S2", Profile: "custom", Dir: t.TempDir(), TPM: board.TPMNone}); err == nil {
		t.Errorf("Start(profile custom) = nil error, want the profile refused")
	}
}
