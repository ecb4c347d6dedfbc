package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"zerotouch/enroll"
	"zerotouch/enroll/emulator"
	"zerotouch/station/records"
)

// exitCase is one command line and the exit code README.md's table gives
// it. want is found in stderr, to be sure the code came from the mistake
// meant and not another one on the way.
type exitCase struct {
	args []string
	env  map[string]string
	code int
	want string
}

// exitBed is what the cases refer to: files in a temporary folder.
type exitBed struct {
	dir string
}

func (b exitBed) path(name string) string { return filepath.Join(b.dir, name) }

func (b exitBed) write(t *testing.T, name, text string) string {
	t.Helper()
	p := b.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// csr writes a PEM CSR whose CN is cn.
func (b exitBed) csr(t *testing.T, name, cn string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return b.write(t, name, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})))
}

// TestExitCodes runs each command's command-line and configuration
// mistakes, and the set-ups that cannot work, and checks the exit code
// against README.md's table: 1 the job ran and failed, 2 the command line
// or the configuration (a file it names included) is wrong and nothing
// was done, 3 the set-up cannot work. A subtest per command.
func TestExitCodes(t *testing.T) {
	b := exitBed{dir: t.TempDir()}
	// No secret, display or port from the environment the tests run in.
	for _, k := range []string{"ZEROTOUCH_CA_PASSWORD", "ZEROTOUCH_DPS_CONNECTION_STRING", "ZEROTOUCH_GROUP_KEY", "ZEROTOUCH_PORT",
		"ZEROTOUCH_SUPERVISOR_PASSWORD", "DISPLAY", "WAYLAND_DISPLAY"} {
		t.Setenv(k, "")
	}
	garbage := b.write(t, "garbage.txt", "this is no CSR, image, CSV or database\n")
	badYAML := b.write(t, "bad.yaml", "slots: [\n")
	unknownKey := b.write(t, "unknown.yaml", "attestation: tpm\nid_scope: 0ne00000001\nslots: [{port: /dev/ttyUSB9}]\ntemplte: {name: json}\n")
	noCA := b.write(t, "noca.yaml", "attestation: x509-keygen\nid_scope: 0ne00000001\nca: {dir: "+b.path("noca")+"}\nslots: [{port: /dev/ttyUSB9}]\n")
	noKey := b.write(t, "nokey.yaml", "attestation: symmetric-key\nid_scope: 0ne00000001\nsymmetric_key: {group_id: line-7, key_file: "+
		b.path("nokey")+"}\nslots: [{port: /dev/ttyUSB9}]\n")
	okYAML := b.write(t, "ok.yaml", "attestation: tpm\nid_scope: 0ne00000001\nslots: [{port: /dev/ttyUSB9}]\nrecords: "+b.path("run.db")+"\n")
	goodCSR := b.csr(t, "good.csr", "board-1")
	const dpsConn = "HostName=127.0.0.1:1;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=aGVsbG8="

	// A local CA, made once, for the cases that need one.
	caDir := b.path("ca")
	if code, _, errOut := run(t, "ca", "init", "--dir", caDir, "--password-file", b.write(t, "ca-password", "pw")); code != exitOK {
		t.Fatalf("ca init: exit %d\n%s", code, errOut)
	}
	// A records database with no board in it.
	db := b.path("records.db")
	st, err := records.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	// A DPS emulator holding an enrollment, exit-1, whose device has
	// registered: an enrollment and a registration state with etags.
	srv, connFile := startEmulator(t, emulator.Options{})
	em := []string{"--connection-string-file", connFile, "--ca-file", srv.CAFile}
	cs, _ := enroll.ParseConnectionString(srv.ConnectionString)
	client, err := enroll.NewClient(enroll.Config{ConnectionString: cs, CAFile: srv.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	devKey := []byte("exit-1's device key")
	if _, err := client.CreateOrUpdate(context.Background(), &enroll.Enrollment{RegistrationID: "exit-1", Attestation: enroll.Attestation{
		Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{PrimaryKey: base64.StdEncoding.EncodeToString(devKey)}}}, ""); err != nil {
		t.Fatal(err)
	}
	registerSym(t, srv, "exit-1", devKey)
	wrongKey := wrongConnectionString(t, b.dir, srv)
	emArgs := func(args ...string) []string { return append(append([]string{"dps"}, args...), em...) }

	// An address already taken.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	cases := map[string][]exitCase{
		"board": {
			{args: []string{"board", "--count", "0"}, code: exitUsage, want: "--count"},
			{args: []string{"board", "--baud", "0"}, code: exitUsage, want: "--baud 0"},
			{args: []string{"board", "--tpm", "bogus"}, code: exitUsage, want: "bogus"},
			{args: []string{"board", "bogus"}, code: exitUsage, want: "unknown command"},
		},
		"link": {
			{args: []string{"link", "echo", "hi"}, code: exitUsage, want: "--port"},
			{args: []string{"link", "--port", "vid=12", "echo", "hi"}, code: exitUsage, want: "vid"},
			{args: []string{"link", "--port", "/dev/ttyUSB9", "echo", "hi"}, code: exitFailed, want: "/dev/ttyUSB9"},
			{args: []string{"link", "bogus"}, code: exitUsage, want: `unknown command "bogus"`},
			{args: []string{"link", "--port", "/dev/ttyUSB9", "fs", "upload"}, code: exitUsage, want: "arg(s)"},
		},
		"tpm": {
			{args: []string{"tpm", "ek"}, code: exitUsage, want: "--port"},
			{args: []string{"tpm", "ek", "--tpm", "bogus"}, code: exitUsage, want: "bogus"},
			{args: []string{"tpm", "ek", "--tpm", b.path("no-tpm")}, code: exitFailed, want: "no-tpm"},
			{args: []string{"tpm", "bogus"}, code: exitUsage, want: `unknown command "bogus"`},
		},
		"ca": {
			{args: []string{"ca", "init", "--dir", b.path("ca-v"), "--validity", "0"}, code: exitUsage, want: "--validity"},
			{args: []string{"ca", "init", "--dir", b.path("ca-k"), "--key-type", "dsa"}, code: exitUsage, want: "--key-type"},
			{args: []string{"ca", "init", "--dir", caDir}, env: map[string]string{"ZEROTOUCH_CA_PASSWORD": "pw"}, code: exitUsage, want: "already exists"},
			{args: []string{"ca", "init", "--dir", b.path("ca-nopw")}, code: exitSetup, want: "password"},
			{args: []string{"ca", "show", "--dir", b.path("noca")}, code: exitSetup, want: "no CA"},
			{args: []string{"ca", "show", "--url", "https://127.0.0.1:1"}, code: exitUsage, want: "--fingerprint"},
			{args: []string{"ca", "template", "--dir", b.path("noca")}, code: exitSetup, want: "no CA"},
			{args: []string{"ca", "sign", "--csr", b.path("missing.csr"), "--registration-id", "board-1", "--dir", caDir}, code: exitUsage, want: "missing.csr"},
			{args: []string{"ca", "sign", "--csr", garbage, "--registration-id", "board-1", "--dir", caDir}, code: exitUsage, want: "neither PEM"},
			{args: []string{"ca", "sign", "--csr", goodCSR, "--dir", caDir}, code: exitUsage, want: "registration-id"},
			{args: []string{"ca", "sign", "--csr", goodCSR, "--registration-id", "board-1", "--dir", b.path("noca")}, code: exitSetup, want: "no CA"},
			{args: []string{"ca", "sign", "--csr", goodCSR, "--registration-id", "board-1", "--dir", caDir}, code: exitSetup, want: "password"},
			{args: []string{"ca", "sign", "--csr", goodCSR, "--registration-id", "board-1", "--dir", caDir},
				env: map[string]string{"ZEROTOUCH_CA_PASSWORD": "wrong"}, code: exitSetup, want: "password"},
			// The CA refuses: the CSR's CN is another board's.
			{args: []string{"ca", "sign", "--csr", goodCSR, "--registration-id", "board-2", "--dir", caDir},
				env: map[string]string{"ZEROTOUCH_CA_PASSWORD": "pw"}, code: exitFailed, want: "board-2"},
			{args: []string{"ca", "bogus"}, code: exitUsage, want: `unknown command "bogus"`},
		},
		"upload": {
			{args: []string{"upload", "--quota", "-1"}, code: exitUsage, want: "--quota"},
			{args: []string{"upload", "--batch", "11"}, code: exitUsage, want: "--batch"},
			{args: []string{"upload", "--from", b.path("missing.csv")}, code: exitUsage, want: "connection string"},
			{args: []string{"upload", "--from", b.path("missing.csv")}, env: map[string]string{"ZEROTOUCH_DPS_CONNECTION_STRING": dpsConn},
				code: exitUsage, want: "missing.csv"},
			{args: []string{"upload", "--from", garbage}, env: map[string]string{"ZEROTOUCH_DPS_CONNECTION_STRING": dpsConn},
				code: exitUsage, want: "registrationId"},
			{args: []string{"upload", "--connection-string-file", b.path("no-conn"), "--from", garbage}, code: exitUsage, want: "no-conn"},
			{args: []string{"upload", "bogus"}, code: exitUsage, want: "unknown command"},
		},
		"dps-emulator": {
			{args: []string{"dps-emulator"}, code: exitUsage, want: "--data"},
			{args: []string{"dps-emulator", "--data", b.path("em"), "--quota", "-5"}, code: exitUsage, want: "--quota"},
			{args: []string{"dps-emulator", "--data", b.path("em"), "--addr", ln.Addr().String()}, code: exitFailed, want: "in use"},
		},
		"run": {
			{args: []string{"run", "--config", b.path("missing.yaml")}, code: exitUsage, want: "missing.yaml"},
			{args: []string{"run", "--config", badYAML}, code: exitUsage, want: "bad.yaml"},
			{args: []string{"run", "--config", unknownKey}, code: exitUsage, want: "templte"},
			{args: []string{"run", "--config", okYAML, "--count", "-1"}, code: exitUsage, want: "--count"},
			{args: []string{"run", "--config", noKey}, code: exitUsage, want: "nokey"},
			{args: []string{"run", "--config", noCA}, code: exitSetup, want: "no CA"},
			{args: []string{"run", "--config", okYAML, "--supervisor-password-file", b.path("no-pw")}, code: exitUsage, want: "no-pw"},
			{args: []string{"run", "--config", okYAML, "--once"}, code: exitNoBoard, want: "/dev/ttyUSB9"},
		},
		"gui": {
			{args: []string{"gui", "--config", okYAML}, code: exitUsage, want: "use zerotouch run"}, // no display, or a build without the window
			{args: []string{"gui", "--hash-password"}, code: exitUsage, want: "no password"},
		},
		"records": {
			{args: []string{"records", "list", "--db", b.path("missing.db")}, code: exitUsage, want: "no records database"},
			{args: []string{"records", "list", "--db", garbage}, code: exitUsage, want: "not a zerotouch records database"},
			{args: []string{"records", "list", "--db", db, "--result", "bogus"}, code: exitUsage, want: "--result"},
			{args: []string{"records", "list", "--db", db, "--limit", "-1"}, code: exitUsage, want: "--limit"},
			{args: []string{"records", "show", "--db", db}, code: exitUsage, want: "arg(s)"},
			{args: []string{"records", "show", "NOPE", "--db", db}, code: exitFailed, want: "NOPE"},
			{args: []string{"records", "export", "--db", db, "--format", "xml"}, code: exitUsage, want: "--format"},
			{args: []string{"records", "label", "--db", db}, code: exitUsage, want: "arg(s)"},
			{args: []string{"records", "label", "NOPE", "--db", db, "--zpl", "bad:host:99"}, code: exitUsage, want: "labels.zpl"},
			{args: []string{"records", "bogus"}, code: exitUsage, want: `unknown command "bogus"`},
		},
		"demo": {
			{args: []string{"demo", "--close-after", "bogus"}, code: exitUsage, want: "--close-after"},
			{args: []string{"demo", "--headless", "--dir", b.dir}, code: exitUsage, want: "did not make"},
		},
		"config": {
			{args: []string{"config", "show", "--config", b.path("missing.yaml")}, code: exitUsage, want: "missing.yaml"},
			{args: []string{"config", "show", "--config", unknownKey}, code: exitUsage, want: "templte"},
			{args: []string{"config", "bogus"}, code: exitUsage, want: `unknown command "bogus"`},
		},
		"image": {
			{args: []string{"image", "build"}, code: exitUsage, want: "arg(s)"},
			{args: []string{"image", "build", "--version", "1.x", garbage, b.path("out.bin")}, code: exitUsage, want: "--version"},
			{args: []string{"image", "build", "--version", "1.0.0", b.path("missing.bin"), b.path("out.bin")}, code: exitUsage, want: "missing.bin"},
			{args: []string{"image", "show", b.path("missing.bin")}, code: exitUsage, want: "missing.bin"},
			{args: []string{"image", "show", garbage}, code: exitFailed, want: "not an MCUboot image"},
			{args: []string{"image", "bogus"}, code: exitUsage, want: `unknown command "bogus"`},
		},
		"dps": {
			{args: []string{"dps", "group", "create"}, code: exitUsage, want: "--id"},
			{args: []string{"dps", "group", "create", "--id", "g1"}, code: exitUsage, want: "--symmetric-key-file"},
			{args: []string{"dps", "group", "create", "--id", "bad id", "--symmetric-key-file", b.path("k")}, code: exitUsage, want: "bad id"},
			{args: []string{"dps", "group", "show"}, code: exitUsage, want: "arg(s)"},
			{args: []string{"dps", "group", "list"}, code: exitUsage, want: "connection string"},
			{args: []string{"dps", "group", "list", "--connection-string-file", b.path("no-conn")}, code: exitUsage, want: "no-conn"},
			{args: []string{"dps", "group", "show", "g1", "--connection-string-file", b.write(t, "conn", dpsConn+"\n"),
				"--ca-file", b.path("no-ca.pem")}, code: exitUsage, want: "no-ca.pem"},
			{args: []string{"dps", "bogus"}, code: exitUsage, want: `unknown command "bogus"`},
			// enrollment list|show|delete against the emulator.
			{args: emArgs("enrollment", "show", "nope-1"), code: exitFailed, want: "has no enrollment nope-1"},
			{args: emArgs("enrollment", "delete", "nope-1"), code: exitFailed, want: "has no enrollment nope-1"},
			{args: emArgs("enrollment", "delete", "exit-1", "--etag", `"stale"`), code: exitFailed, want: "did not delete enrollment exit-1: it changed since etag \"stale\" was read (412)"},
			{args: emArgs("enrollment", "show", "exit-1-"), code: exitFailed, want: "has no enrollment exit-1-"},
			{args: emArgs("enrollment", "show", "exit 1"), code: exitUsage, want: `invalid registration ID "exit 1"`},
			{args: emArgs("enrollment", "delete", ".exit-1"), code: exitFailed, want: "has no enrollment .exit-1"},
			{args: emArgs("enrollment", "delete", "exit/1"), code: exitUsage, want: `invalid registration ID "exit/1"`},
			{args: emArgs("enrollment", "show"), code: exitUsage, want: "arg(s)"},
			{args: emArgs("enrollment", "list", "extra"), code: exitUsage, want: "unknown command"},
			{args: []string{"dps", "enrollment", "list"}, code: exitUsage, want: "connection string"},
			{args: []string{"dps", "enrollment", "list", "--connection-string-file", connFile}, code: exitSetup, want: "not trusted"},
			{args: []string{"dps", "enrollment", "delete", "exit-1", "--connection-string-file", wrongKey, "--ca-file", srv.CAFile}, code: exitSetup, want: "(401)"},
			// registration list|show|delete against the emulator.
			{args: emArgs("registration", "show", "nope-1"), code: exitFailed, want: "has no registration nope-1"},
			{args: emArgs("registration", "delete", "nope-1"), code: exitFailed, want: "has no registration nope-1"},
			{args: emArgs("registration", "delete", "exit-1", "--etag", "c3RhbGU="), code: exitFailed, want: "did not delete registration exit-1: it changed since etag c3RhbGU= was read (412)"},
			{args: emArgs("registration", "show", ":exit-1"), code: exitFailed, want: "has no registration :exit-1"},
			{args: emArgs("registration", "show", "exit 1"), code: exitUsage, want: `invalid registration ID "exit 1"`},
			{args: emArgs("registration", "delete", "exit_1_"), code: exitFailed, want: "has no registration exit_1_"},
			{args: emArgs("registration", "delete", ""), code: exitUsage, want: "invalid registration ID: empty"},
			{args: emArgs("registration", "list", "--group", "a b"), code: exitUsage, want: `--group "a b"`},
			{args: emArgs("registration", "list", "extra"), code: exitUsage, want: "unknown command"},
			{args: []string{"dps", "registration", "show", "exit-1"}, code: exitUsage, want: "connection string"},
			{args: []string{"dps", "registration", "show", "exit-1", "--connection-string-file", connFile}, code: exitSetup, want: "not trusted"},
			{args: []string{"dps", "registration", "delete", "exit-1", "--connection-string-file", wrongKey, "--ca-file", srv.CAFile}, code: exitSetup, want: "(401)"},
		},
		"root": {
			{args: []string{"bogus"}, code: exitUsage, want: `unknown command "bogus"`},
			{args: []string{"--log-level", "loud", "config", "show"}, code: exitUsage, want: "--log-level"},
		},
	}
	for name, cs := range cases {
		t.Run(name, func(t *testing.T) {
			for _, c := range cs {
				for k, v := range c.env {
					t.Setenv(k, v)
				}
				code, _, errOut := run(t, c.args...)
				if code != c.code || !strings.Contains(errOut, c.want) {
					t.Errorf("zerotouch %s: exit %d, want %d with %q in stderr:\n%s", strings.Join(c.args, " "), code, c.code, c.want, errOut)
				}
				for k := range c.env {
					t.Setenv(k, "")
				}
			}
		})
	}
	// Every command has its cases.
	root := rootForHelp()
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if _, ok := cases[c.Name()]; !ok {
			t.Errorf("zerotouch %s has no exit-code cases", c.Name())
		}
	}
}

// rootForHelp builds the command tree as Run does, for its help texts.
func rootForHelp() *cobra.Command {
	return newRoot(&globals{stdout: new(strings.Builder), stderr: new(strings.Builder)})
}

// TestExitCodeTable checks that the exit codes are one table: README.md's
// rows are the codes zerotouch --help lists, and every command's help
// (or the help of the command it belongs to) says which of them it uses,
// naming none outside the table.
func TestExitCodeTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var table []int
	for _, m := range regexp.MustCompile(`(?m)^\| ([0-9]) \| `).FindAllStringSubmatch(string(readme), -1) {
		n, _ := strconv.Atoi(m[1])
		table = append(table, n)
	}
	root := rootForHelp()
	var listed []int
	for _, m := range regexp.MustCompile(`(?m)^  ([0-9])  `).FindAllStringSubmatch(root.Long, -1) {
		n, _ := strconv.Atoi(m[1])
		listed = append(listed, n)
	}
	if len(table) == 0 || !slices.Equal(table, listed) {
		t.Fatalf("README.md's exit-code table has %v, zerotouch --help lists %v", table, listed)
	}
	// exitStatus is the paragraph of a help text that begins "Exit status:".
	exitStatus := func(long string) string {
		i := strings.Index(long, "Exit status:")
		if i < 0 {
			return ""
		}
		p, _, _ := strings.Cut(long[i:], "\n\n")
		return p
	}
	var walk func(c *cobra.Command, inherited string)
	walk = func(c *cobra.Command, inherited string) {
		text := inherited
		if p := exitStatus(c.Long); p != "" {
			text = p
		}
		if c.HasSubCommands() {
			for _, sub := range c.Commands() {
				if sub.Name() != "help" && sub.Name() != "completion" {
					walk(sub, text)
				}
			}
			return
		}
		if text == "" {
			t.Errorf("%s: its help (or its group's) says nothing of its exit status", c.CommandPath())
			return
		}
		for _, m := range regexp.MustCompile(`\b([0-9])\b`).FindAllStringSubmatch(text, -1) {
			n, _ := strconv.Atoi(m[1])
			if !slices.Contains(table, n) {
				t.Errorf("%s: its help names exit %d, which README.md's table does not have", c.CommandPath(), n)
			}
		}
	}
	for _, c := range root.Commands() {
		if c.Name() != "help" && c.Name() != "completion" {
			walk(c, "")
		}
	}
}
