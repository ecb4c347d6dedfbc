package board

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"zerotouch/flasher"
)

func TestListenAddr(t *testing.T) {
	for _, tt := range []struct{ in, want, wantErr string }{
		{in: "tcp://127.0.0.1:0", want: "127.0.0.1:0"},
		{in: "tcp://[::1]:4001", want: "[::1]:4001"},
		{in: "tcp://:4001", want: ":4001"},
		{in: "rfc2217://127.0.0.1:0", wantErr: "want tcp://"},
		{in: "127.0.0.1:0", wantErr: "want tcp://"},
		{in: "tcp://127.0.0.1", wantErr: "missing port"},
		{in: "tcp://127.0.0.1:65536", wantErr: "0 to 65535"},
	} {
		got, err := ListenAddr(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ListenAddr(%q) = %q, %v; want an error saying %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ListenAddr(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := Start(Config{Serial: "SN-L", Dir: t.TempDir(), TPM: TPMNone, Listen: "udp://127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "SN-L") {
		t.Errorf("Start with Listen udp:// = %v, want an error naming the board", err)
	}
}

// echoFrame is an SMP echo request of text, framed for the serial line.
func echoFrame(t *testing.T, seq uint8, text string) []byte {
	t.Helper()
	msg, err := flasher.EncodeMessage(flasher.Header{Version: flasher.Version2, Op: flasher.OpWrite, Group: flasher.GroupOS, Seq: seq, ID: flasher.CmdOSEcho},
		map[string]string{"d": text})
	if err != nil {
		t.Fatal(err)
	}
	frame, err := flasher.AppendFrame(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	return frame
}

// A board on TCP serves one station at a time: a second connection
// takes the line over and the first is closed; half a request left by
// the first does not spoil the second's.
func TestTCPLineTakeover(t *testing.T) {
	b, err := Start(Config{Serial: "SN-TAKE", Dir: t.TempDir(), TPM: TPMNone, Baud: 2_000_000, Listen: "tcp://127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	addr, ok := strings.CutPrefix(b.Path(), "tcp://")
	if !ok {
		t.Fatalf("Path() = %q, want tcp://...", b.Path())
	}
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	frame := echoFrame(t, 1, "first")
	if _, err := first.Write(frame[:len(frame)/2]); err != nil {
		t.Fatal(err)
	}
	for b.Received() < int64(len(frame)/2) {
		time.Sleep(time.Millisecond)
	}
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	first.SetReadDeadline(time.Now().Add(30 * time.Second))
	if n, err := first.Read(make([]byte, 64)); !errors.Is(err, io.EOF) {
		t.Errorf("the first station's read once a second connected = %d, %v; want EOF", n, err)
	}
	if _, err := second.Write(echoFrame(t, 2, "second")); err != nil {
		t.Fatal(err)
	}
	second.SetReadDeadline(time.Now().Add(30 * time.Second))
	var got []byte
	buf := make([]byte, 256)
	for !bytes.Contains(got, []byte("\n")) {
		n, err := second.Read(buf)
		if err != nil {
			t.Fatalf("the second station's read: %v (have %q)", err, got)
		}
		got = append(got, buf[:n]...)
	}
	var dec flasher.Decoder
	msg, err := dec.Line(bytes.TrimSuffix(got, []byte("\n")))
	if err != nil || msg == nil {
		t.Fatalf("the board's answer %q: %v", got, err)
	}
	m, err := flasher.ParseMessage(msg)
	if err != nil || m.Header.Seq != 2 || !bytes.Contains(m.Body, []byte("second")) {
		t.Errorf("the board answered %+v, %v; want the echo of the second station's request", m, err)
	}
}
