package fwtemplates

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// tricky is a value with everything an escaper can get wrong.
const tricky = `He said "hi", then \ and \\n` + "\nnext line\ttab ??= ??/ */ /* {{.X}} 'q' # hash\n# line start, é ✓ \x01\x7f\\"

// nvsTricky is tricky less what nvs_partition_gen cannot store (non-ASCII,
// a line starting with #), with a carriage-return-free leading space.
const nvsTricky = ` He said "hi", then \ and \\n` + "\nnext line\ttab ??= */ {{.X}} 'q' # hash\n  , line\x01\\"

// trickyData returns SampleData(att) with every free-form field set to
// value (the host name, certificate chain and key stay valid: Validate
// checks them).
func trickyData(att, value string) Data {
	d := SampleData(att)
	d.IDScope = value
	d.GlobalEndpoint = "dps-1.example.com:8443"
	d.RegistrationID = value + "-reg"
	d.DeviceID = value + "-dev"
	d.Serial = value + "-serial"
	d.Model = value + "-model"
	d.Custom = map[string]string{"line": value, "q_2": `"`, "empty": ""}
	if att == AttestationX509 {
		d.CertificatePath = `/var/secrets/de "v"\ice%20 #?.pem`
		d.KeyURI = `pkcs11:token=zero"touch;object=dev\ice?pin-value=12'34`
	}
	return d
}

// TestEscaping renders values with quotes, backslashes, newlines, tabs,
// trigraphs and comment markers through every built-in template and reads
// them back with the format's own parser.
func TestEscaping(t *testing.T) {
	for _, name := range Names() {
		tmpl, err := Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		value := tricky
		if name == "esp-idf-nvs-csv" {
			value = nvsTricky
		}
		for _, att := range Attestations() {
			t.Run(name+"/"+att, func(t *testing.T) {
				d := trickyData(att, value)
				out, err := tmpl.Render(d)
				if err != nil {
					t.Fatalf("Render(%+v) = %v", d, err)
				}
				checkReadBack(t, name, d, out)
			})
		}
	}
}

// TestCHeaderCompiles compiles the rendered header with gcc (C99, so
// trigraphs are on, warnings as errors) into a program that prints every
// string macro in hex, and compares with the Data and with readCHeader.
func TestCHeaderCompiles(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed")
	}
	tmpl, err := Builtin("c-header")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, value string }{
		{"sample", ""},
		{"tricky", tricky},
		{"invalid UTF-8", "a\xff\xfeb\x80"},
	} {
		for _, att := range Attestations() {
			t.Run(tc.name+"/"+att, func(t *testing.T) {
				d := SampleData(att)
				if tc.value != "" {
					d = trickyData(att, tc.value)
				}
				out, err := tmpl.Render(d)
				if err != nil {
					t.Fatalf("Render = %v", err)
				}
				got := compileAndPrint(t, gcc, out, d)
				w := want("c-header", d)
				if diff := cmp.Diff(w, got); diff != "" {
					t.Errorf("values compiled by gcc differ from the Data (-want +got):\n%s\nheader:\n%s", diff, out)
				}
				checkReadBack(t, "c-header", d, out)
			})
		}
	}
}

// compileAndPrint builds a program that includes header and prints the
// macros the Data should have produced, and returns what it printed, keyed
// like want.
func compileAndPrint(t *testing.T, gcc string, header []byte, d Data) map[string]string {
	t.Helper()
	macros := map[string]string{}
	for m, f := range cMacros {
		macros[f] = m
	}
	keys := map[string]string{}
	for f := range want("c-header", d) {
		m := macros[f]
		if k, ok := strings.CutPrefix(f, "Custom."); ok {
			m = "DEVICE_CUSTOM_" + k
		}
		keys[f] = m
	}
	flag := map[string]string{AttestationTPM: "TPM", AttestationX509: "X509", AttestationSymmetricKey: "SYMMETRIC_KEY"}[d.Attestation]
	return gccPrint(t, gcc, header, keys, "#if DPS_ATTESTATION_"+flag+" != 1\n#error wrong attestation flag\n#endif\n")
}

// gccPrint compiles (C99, warnings as errors) and runs a program that
// includes header twice and prints each string macro of keys (key:
// macro name) in hex, with extra in its main, and returns what it printed
// by key.
func gccPrint(t *testing.T, gcc string, header []byte, keys map[string]string, extra string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dps_config.h"), header, 0o644); err != nil {
		t.Fatal(err)
	}
	var prog strings.Builder
	prog.WriteString("#include <stdio.h>\n#include \"dps_config.h\"\n#include \"dps_config.h\" /* the guard makes this harmless */\n")
	prog.WriteString("static void p(const char *k, const char *s, size_t n) { printf(\"%s=\", k); for (size_t i = 0; i + 1 < n; i++) printf(\"%02x\", (unsigned char)s[i]); printf(\"\\n\"); }\n")
	prog.WriteString("#define P(k, m) p(k, m, sizeof(m))\nint main(void) {\n")
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		prog.WriteString("\tP(\"" + k + "\", " + keys[k] + ");\n")
	}
	prog.WriteString(extra + "\treturn 0;\n}\n")
	src := filepath.Join(dir, "main.c")
	if err := os.WriteFile(src, []byte(prog.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "main")
	cmd := exec.Command(gcc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wno-overlength-strings", "-o", bin, src)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s\nheader:\n%s", err, out, header)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		k, h, _ := strings.Cut(line, "=")
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatalf("program printed %q: %v", line, err)
		}
		got[k] = string(b)
	}
	return got
}

// TestNVSCSVPython reads the rendered CSV the way nvs_partition_gen.py
// does (Python's csv.DictReader over the lines not starting with #, the
// file opened as UTF-8 text) when python3 is installed.
func TestNVSCSVPython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	tmpl, err := Builtin("esp-idf-nvs-csv")
	if err != nil {
		t.Fatal(err)
	}
	const reader = `
import csv, json, sys
out, ns = {}, None
with open(sys.argv[1], 'rt', encoding='utf8') as f:
    for row in csv.DictReader(filter(lambda row: row[0] != '#', f), delimiter=','):
        assert len(row['key']) <= 15, row['key']
        if row['type'] == 'namespace':
            ns = row['key']
            continue
        assert row['type'] == 'data' and row['encoding'] == 'string', row
        assert len(row['value']) + 1 <= 4000, row['key']
        out[ns + '/' + row['key']] = row['value']
json.dump(out, sys.stdout)
`
	for _, att := range Attestations() {
		t.Run(att, func(t *testing.T) {
			d := trickyData(att, nvsTricky)
			out, err := tmpl.Render(d)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "nvs.csv")
			if err := os.WriteFile(file, out, 0o644); err != nil {
				t.Fatal(err)
			}
			js, err := exec.Command(py, "-c", reader, file).Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("python: %v\n%s", err, ee.Stderr)
				}
				t.Fatal(err)
			}
			var entries map[string]string
			if err := json.Unmarshal(js, &entries); err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for k, v := range entries {
				ns, key, _ := strings.Cut(k, "/")
				if ns == "custom" {
					got["Custom."+key] = v
				} else {
					got[nvsFields[key]] = v
				}
			}
			if diff := cmp.Diff(want("esp-idf-nvs-csv", d), got); diff != "" {
				t.Errorf("values as Python reads them differ from the Data (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNVSRefusesValues: values nvs_partition_gen would not store as given
// fail the render, naming the field, instead of making a CSV that writes
// something else to the board.
func TestNVSRefusesValues(t *testing.T) {
	tmpl, err := Builtin("esp-idf-nvs-csv")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		edit    func(*Data)
		wantMsg string
	}{
		{"non-ASCII", func(d *Data) { d.Model = "Modèle" }, ".Model"},
		{"carriage return", func(d *Data) { d.Serial = "a\r\nb" }, "carriage return"},
		{"comment line", func(d *Data) { d.DeviceID = "a\n#b" }, "line starting with #"},
		{"NUL", func(d *Data) { d.Custom = map[string]string{"k": "a\x00b"} }, "NUL"},
		{"too long", func(d *Data) { d.Serial = strings.Repeat("s", 4000) }, "at most 3999"},
		{"longest fits", nil, ""},
		{"key too long", func(d *Data) { d.Custom = map[string]string{"sixteen_chars_xx": "v"} }, "at most 15"},
		{"key with comma", func(d *Data) { d.Custom = map[string]string{"a,b": "v"} }, "comma"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := SampleData(AttestationTPM)
			if tc.edit == nil {
				d.Serial = strings.Repeat("s", 3999)
			} else {
				tc.edit(&d)
			}
			_, err := tmpl.Render(d)
			if tc.wantMsg == "" {
				if err != nil {
					t.Fatalf("Render = %v, want success", err)
				}
				return
			}
			if !errors.Is(err, ErrRender) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("Render = %v, want ErrRender mentioning %q", err, tc.wantMsg)
			}
		})
	}
}
