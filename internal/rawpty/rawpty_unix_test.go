//go:build linux || darwin

package rawpty

import (
	"bytes"
	"io"
	"testing"
)

// TestOpenRaw sends every byte value both ways: a terminal in raw mode
// passes them unchanged (no CR/LF translation, no echo, no signals from
// ^C or ^Z, no flow control from ^S and ^Q).
func TestOpenRaw(t *testing.T) {
	master, tty, err := Open()
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() {
		master.Close()
		tty.Close()
	})
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for _, tt := range []struct {
		name     string
		from, to io.ReadWriter
	}{
		{"master to tty", master, tty},
		{"tty to master", tty, master},
	} {
		errc := make(chan error, 1)
		go func() {
			_, err := tt.from.Write(all)
			errc <- err
		}()
		got := make([]byte, len(all))
		if _, err := io.ReadFull(tt.to, got); err != nil {
			t.Fatalf("%s: read: %v", tt.name, err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("%s: write: %v", tt.name, err)
		}
		if !bytes.Equal(got, all) {
			t.Errorf("%s: read %q, want %q", tt.name, got, all)
		}
	}
}

// TestCloseEndsRead checks that closing the master ends a Read in
// progress on it, which needs the master non-blocking.
func TestCloseEndsRead(t *testing.T) {
	master, tty, err := Open()
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	defer tty.Close()
	done := make(chan error, 1)
	go func() {
		_, err := master.Read(make([]byte, 1))
		done <- err
	}()
	master.Close()
	if err := <-done; err == nil {
		t.Errorf("Read on a closed master = nil error, want one")
	}
}
