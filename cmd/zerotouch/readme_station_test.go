package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"gopkg.in/yaml.v3"

	"zerotouch/board"
	"zerotouch/enroll/emulator"
	"zerotouch/station"
	"zerotouch/station/records"
)

// zplPrinter is a label printer on raw TCP, as a Zebra listens on 9100:
// it takes what is sent until the sender is done and keeps each label.
type zplPrinter struct {
	ln     net.Listener
	mu     sync.Mutex
	labels []string
}

func startZPLPrinter(t *testing.T) *zplPrinter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &zplPrinter{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(io.LimitReader(c, 1<<20))
			c.Close()
			p.mu.Lock()
			p.labels = append(p.labels, string(b))
			p.mu.Unlock()
		}
	}()
	return p
}

func (p *zplPrinter) printed() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.labels)
}

// TestReadmeStationYAML runs README.md's station.yaml as written, in each
// of the four attestation modes, on a virtual board and the DPS emulator
// with the README's ID scope. Only what names this machine's things is
// changed: the slots' ports, the secret files (made by the test), the CA
// folder, the records file (in a folder that does not exist yet), the
// label printer's address, the global endpoint (the emulator's) and the
// CA the station trusts for it (dps.ca_file).
func TestReadmeStationYAML(t *testing.T) {
	var text string
	for _, b := range readmeBlocks(t) {
		if b.lang == "yaml" && strings.HasPrefix(b.text, "station:") {
			text = b.text
		}
	}
	if text == "" {
		t.Fatal("README.md has no station.yaml block")
	}
	var readme map[string]any
	if err := yaml.Unmarshal([]byte(text), &readme); err != nil {
		t.Fatalf("README.md's station.yaml: %v", err)
	}

	dir := t.TempDir()
	srv, connFile := startEmulator(t, emulator.Options{IDScope: fmt.Sprint(readme["id_scope"])})
	caDir, pwFile := testCA(t, dir)
	keyFile := filepath.Join(dir, "group-key")
	key := make([]byte, 32)
	rand.Read(key)
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600)
	printer := startZPLPrinter(t)

	for i, mode := range []string{station.ModeTPM, station.ModeX509TPM, station.ModeX509Keygen, station.ModeSymmetricKey} {
		t.Run(mode, func(t *testing.T) {
			serial := fmt.Sprintf("ZT%06d", 100001+i) // the README's serial_pattern
			vb, err := board.Start(board.Config{Serial: serial, Dir: t.TempDir(), TPM: board.TPMSim, Baud: station.DefaultBaud,
				DPSRoots: srv.CAFile})
			if err != nil {
				t.Fatal(err)
			}
			defer vb.Close()

			var c map[string]any
			yaml.Unmarshal([]byte(text), &c)
			section := func(name string) map[string]any {
				m, ok := c[name].(map[string]any)
				if !ok {
					t.Fatalf("README.md's station.yaml has no %s section", name)
				}
				return m
			}
			db := filepath.Join(dir, "var", "lib", "zerotouch", mode, "records.db")
			c["attestation"] = mode
			c["global_endpoint"] = srv.HostName
			c["slots"] = []any{map[string]any{"port": vb.Path()}}
			c["records"] = db
			section("ca")["dir"], section("ca")["password_file"] = caDir, pwFile
			section("symmetric_key")["key_file"] = keyFile
			section("dps")["connection_string_file"], section("dps")["ca_file"] = connFile, srv.CAFile
			section("labels")["zpl"] = printer.ln.Addr().String()
			b, err := yaml.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, mode+".yaml")
			os.WriteFile(file, b, 0o600)

			before := len(printer.printed())
			code, out, errOut := run(t, "run", "--config", file, "--once", "--operator", "readme")
			if code != exitOK {
				t.Fatalf("README.md's station.yaml in mode %s: exit %d\n%s\n%s\nstdout:\n%s", mode, code, b, tail(errOut, 30), tail(out, 10))
			}
			passed := 0
			sc := bufio.NewScanner(strings.NewReader(out))
			for sc.Scan() {
				var e station.Event
				if json.Unmarshal(sc.Bytes(), &e) == nil && e.Result == station.Passed && e.Serial == serial {
					passed++
				}
			}
			if passed != 1 {
				t.Errorf("board %s passed %d times, want once:\n%s", serial, passed, tail(out, 10))
			}
			st, err := records.OpenReadOnly(context.Background(), db)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			r, err := st.Get(context.Background(), serial)
			if err != nil {
				t.Fatal(err)
			}
			if r.Registration == nil || r.Registration.State != "assigned" {
				t.Errorf("board %s's registration with DPS: %+v, want assigned", serial, r.Registration)
			}
			if got := printer.printed()[before:]; len(got) != 1 || !strings.Contains(got[0], "^XA") || !strings.Contains(got[0], serial) {
				t.Errorf("the label printer got %q, want one ZPL label for %s", got, serial)
			}
		})
	}
}
