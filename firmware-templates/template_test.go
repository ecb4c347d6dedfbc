package fwtemplates

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNames(t *testing.T) {
	want := []string{"aziot-toml", "c-header", "esp-idf-nvs-csv", "json"}
	if diff := cmp.Diff(want, Names()); diff != "" {
		t.Errorf("Names() (-want +got):\n%s", diff)
	}
	for _, n := range Names() {
		tmpl, err := Builtin(n)
		if err != nil {
			t.Fatalf("Builtin(%q) = %v", n, err)
		}
		if tmpl.Name != n || tmpl.Format == FormatText {
			t.Errorf("Builtin(%q) = {Name %q, Format %q}, want its name and a checked format", n, tmpl.Name, tmpl.Format)
		}
	}
}

func TestBuiltinUnknown(t *testing.T) {
	_, err := Builtin("yaml")
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("Builtin(yaml) = %v, want ErrUnknown", err)
	}
	for _, n := range append(Names(), `"yaml"`) {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("Builtin(yaml) = %q, want it to name %s", err, n)
		}
	}
}

func TestFormatOf(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"line1.json", FormatJSON},
		{"/etc/zt/CONFIG.JSON", FormatJSON},
		{"config.toml", FormatTOML},
		{"dps_config.h", FormatCHeader},
		{"nvs.csv", FormatNVSCSV},
		{"config.txt", FormatText},
		{"config", FormatText},
		{"config.json.tmpl", FormatText},
	} {
		if got := FormatOf(tc.file); got != tc.want {
			t.Errorf("FormatOf(%q) = %q, want %q", tc.file, got, tc.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "line.json")
	if err := os.WriteFile(file, []byte(`{"scope": {{json .IDScope}}}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmpl, err := Load(file)
	if err != nil {
		t.Fatalf("Load(%q) = %v", file, err)
	}
	if tmpl.Name != file || tmpl.Format != FormatJSON {
		t.Errorf("Load(%q) = {Name %q, Format %q}, want the file and json", file, tmpl.Name, tmpl.Format)
	}
	if err := tmpl.Check(); err != nil {
		t.Errorf("Check() = %v", err)
	}
	out, err := tmpl.Render(SampleData(AttestationTPM))
	if err != nil || string(out) != `{"scope": "0ne0001A2B3"}`+"\n" {
		t.Errorf("Render = %q, %v", out, err)
	}

	missing := filepath.Join(dir, "nope.h")
	_, err = Load(missing)
	if !errors.Is(err, ErrTemplate) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(%q) = %v, want ErrTemplate and fs.ErrNotExist", missing, err)
	}
}

// TestParseErrors: templates that do not parse are refused by Parse with
// ErrTemplate and the line.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		line       int
		wantMsg    string
	}{
		{"unclosed action", "a\nb\n{{.IDScope\n", 4, "unclosed action started at custom.json:3"},
		{"unknown function", "{\n  \"a\": {{yaml .IDScope}}\n}", 2, `function "yaml" not defined`},
		{"missing end", "{{if .DeviceID}}\nx\n", 0, "unexpected EOF"},
		{"bad pipeline", "x\n{{required}}\n{{ | }}", 3, `unexpected "|" in command`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("custom.json", tc.text)
			if !errors.Is(err, ErrTemplate) {
				t.Fatalf("Parse(%q) = %v, want ErrTemplate", tc.text, err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse(%q) = %T, want *Error", tc.text, err)
			}
			if tc.line != 0 && e.Line != tc.line {
				t.Errorf("Parse(%q) line = %d, want %d (%v)", tc.text, e.Line, tc.line, err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) || !strings.Contains(err.Error(), `"custom.json"`) {
				t.Errorf("Parse(%q) = %q, want the template name and %q", tc.text, err, tc.wantMsg)
			}
		})
	}
}

// TestCheckErrors: templates that parse but are wrong are refused by
// Check with ErrTemplate and a message naming the problem.
func TestCheckErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, text string
		line             int
		field            string
		wantMsg          string
	}{
		{
			name: "unknown field", file: "line.json",
			text: "{\n  \"scope\": {{json .IDScope}},\n  \"x\": {{json .Nope}}\n}\n",
			line: 3, wantMsg: "can't evaluate field Nope",
		},
		{
			name: "unknown custom field", file: "line.txt",
			text: "line={{.Custom.station}}\n",
			line: 1, wantMsg: `map has no entry for key "station"`,
		},
		{
			name: "not JSON", file: "line.json",
			text:    "{\n  \"scope\": {{.IDScope}}\n  \"x\": 1\n}\n",
			wantMsg: "not valid JSON: line 3",
		},
		{
			name: "JSON raw value", file: "line.json",
			text:    `{"chain": "{{raw .CertificateChain}}"}`,
			wantMsg: "not valid JSON",
		},
		{
			name: "JSON duplicate key", file: "line.json",
			text:    "{\n  \"id\": {{.RegistrationID}},\n  \"id\": {{.DeviceID}}\n}\n",
			wantMsg: `line 3: key "id" appears twice`,
		},
		{
			name: "not TOML", file: "aziot.toml",
			text:    "[provisioning]\nid_scope = {{raw .IDScope}}\n",
			wantMsg: "not valid TOML",
		},
		{
			name: "TOML value touching a bare key", file: "aziot.toml",
			text: "[provisioning]\nid_{{.IDScope}} = 1\n",
			line: 2, field: "IDScope", wantMsg: "{{.IDScope}} as a TOML value: it touches a bare key",
		},
		{
			name: "C value touching an identifier", file: "dps.h",
			text: "#ifndef X_H\n#define X_H\n#define DEVICE_{{.Model}} 1\n#endif\n",
			line: 3, field: "Model", wantMsg: "it touches an identifier",
		},
		{
			name: "CSV value after a quoted field", file: "nvs.csv",
			text: "key,type,encoding,value\ndps,namespace,,\nserial,data,string,\"SN\"{{.Serial}}\n",
			line: 3, field: "Serial", wantMsg: "follows the closing quote of the field",
		},
		{
			name: "JSON raw serial", file: "line.json",
			text: "{\n  \"registrationId\": \"{{.RegistrationID}}\",\n  \"serial\": \"{{raw .Serial}}\"\n}\n",
			line: 3, field: "Serial", wantMsg: `hostile value "x\", \"registrationId\": \"evil": json output: line 3: key "registrationId" appears twice`,
		},
		{
			name: "C header without guard", file: "dps.h",
			text:    "#define DPS_ID_SCOPE {{cstring .IDScope}}\n",
			wantMsg: "no include guard",
		},
		{
			name: "C header unbalanced quote", file: "dps.h",
			text:    "#ifndef X_H\n#define X_H\n#define DPS_ID_SCOPE \"{{.IDScope}}\n#endif\n",
			wantMsg: "line 3: string literal does not end",
		},
		{
			name: "C header without #endif", file: "dps.h",
			text:    "#ifndef X_H\n#define X_H\n#define DPS_ID_SCOPE {{cstring .IDScope}}\n",
			wantMsg: "#ifndef X_H has no #endif",
		},
		{
			name: "NVS CSV wrong header", file: "nvs.csv",
			text:    "key,type,value\ndps,namespace,\nid_scope,data,{{nvs .IDScope}}\n",
			wantMsg: "header is",
		},
		{
			name: "NVS CSV key too long", file: "nvs.csv",
			text:    "key,type,encoding,value\ndps,namespace,,\ndps_registration_id,data,string,{{nvs .RegistrationID}}\n",
			wantMsg: "line 3: NVS key \"dps_registration_id\" is 19 characters, at most 15",
		},
		{
			name: "NVS CSV unknown encoding", file: "nvs.csv",
			text:    "key,type,encoding,value\ndps,namespace,,\nid_scope,data,text,{{nvs .IDScope}}\n",
			wantMsg: `encoding "text"`,
		},
		{
			name: "NVS CSV no namespace", file: "nvs.csv",
			text:    "key,type,encoding,value\nid_scope,data,string,{{nvs .IDScope}}\n",
			wantMsg: "first entry must be a namespace",
		},
		{
			name: "required empty in a sample", file: "line.txt",
			text: "cert={{required \"CertificatePath\" .CertificatePath}}\n",
			line: 1, field: "CertificatePath", wantMsg: "with sample data for tpm attestation",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := Parse(tc.file, tc.text)
			if err != nil {
				t.Fatalf("Parse(%q) = %v, want success (Check should catch it)", tc.text, err)
			}
			err = tmpl.Check()
			if !errors.Is(err, ErrTemplate) {
				t.Fatalf("Check() = %v, want ErrTemplate", err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) || !strings.Contains(err.Error(), `"`+tc.file+`"`) {
				t.Errorf("Check() = %q, want the template name and %q", err, tc.wantMsg)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Check() = %T, want *Error", err)
			}
			if e.Line != tc.line || e.Field != tc.field {
				t.Errorf("Check() line, field = %d, %q, want %d, %q (%v)", e.Line, e.Field, tc.line, tc.field, err)
			}
		})
	}
}

// TestCheckSample: a template for one attestation, reading the line's
// custom fields, passes CheckSample with the line's sample but not Check.
func TestCheckSample(t *testing.T) {
	tmpl, err := Parse("x509.json", `{"cert": {{required "CertificatePath" .CertificatePath | json}}, "line": {{json .Custom.station}}}`)
	if err != nil {
		t.Fatal(err)
	}
	d := SampleData(AttestationX509)
	d.Custom = map[string]string{"station": "S1"}
	if err := tmpl.CheckSample(d); err != nil {
		t.Errorf("CheckSample(x509 with station) = %v", err)
	}
	if err := tmpl.Check(); !errors.Is(err, ErrTemplate) {
		t.Errorf("Check() = %v, want ErrTemplate", err)
	}
}

// TestRenderRefuses: Data missing what the attestation needs, or with
// invalid values, fails Render with ErrRender naming template and field.
func TestRenderRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		att   string
		edit  func(*Data)
		field string
		only  string // template the case is for; "" for all
	}{
		{"no ID scope", AttestationTPM, func(d *Data) { d.IDScope = "" }, "IDScope", ""},
		{"no endpoint", AttestationX509, func(d *Data) { d.GlobalEndpoint = "" }, "GlobalEndpoint", ""},
		{"no registration ID", AttestationSymmetricKey, func(d *Data) { d.RegistrationID = "" }, "RegistrationID", ""},
		{"no attestation", AttestationTPM, func(d *Data) { d.Attestation = "" }, "Attestation", ""},
		{"unknown attestation", AttestationTPM, func(d *Data) { d.Attestation = "symmetric_key" }, "Attestation", ""},
		{"endpoint with scheme", AttestationTPM, func(d *Data) { d.GlobalEndpoint = "https://global.azure-devices-provisioning.net" }, "GlobalEndpoint", ""},
		{"endpoint with path", AttestationTPM, func(d *Data) { d.GlobalEndpoint = "global.azure-devices-provisioning.net/x" }, "GlobalEndpoint", ""},
		{"x509 without chain", AttestationX509, func(d *Data) { d.CertificateChain = "" }, "CertificateChain", ""},
		{"x509 chain not PEM", AttestationX509, func(d *Data) { d.CertificateChain = "MIIB" }, "CertificateChain", ""},
		{"x509 chain with a key", AttestationX509, func(d *Data) {
			d.CertificateChain += "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
		}, "CertificateChain", ""},
		{"symmetricKey without key", AttestationSymmetricKey, func(d *Data) { d.DerivedKey = "" }, "DerivedKey", ""},
		{"symmetricKey key not base64", AttestationSymmetricKey, func(d *Data) { d.DerivedKey = "not base64!" }, "DerivedKey", ""},
		{"aziot x509 without certificate path", AttestationX509, func(d *Data) { d.CertificatePath = "" }, "CertificatePath", "aziot-toml"},
		{"aziot x509 without key URI", AttestationX509, func(d *Data) { d.KeyURI = "" }, "KeyURI", "aziot-toml"},
	} {
		for _, name := range Names() {
			if tc.only != "" && name != tc.only {
				continue
			}
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				tmpl, err := Builtin(name)
				if err != nil {
					t.Fatal(err)
				}
				d := SampleData(tc.att)
				tc.edit(&d)
				out, err := tmpl.Render(d)
				if !errors.Is(err, ErrRender) {
					t.Fatalf("Render = %q, %v; want ErrRender", out, err)
				}
				if out != nil {
					t.Errorf("Render returned output with its error: %q", out)
				}
				var e *Error
				if !errors.As(err, &e) || e.Field != tc.field || e.Template != name {
					t.Errorf("Render = %v, want an *Error for template %q, field %s", err, name, tc.field)
				}
				if msg := err.Error(); !strings.Contains(msg, `"`+name+`"`) || !strings.Contains(msg, tc.field) {
					t.Errorf("Render = %q, want it to name %q and %s", msg, name, tc.field)
				}
			})
		}
	}
}

// TestRenderValidatesOutput: a custom template that writes a value raw
// renders the sample, but Render refuses, rather than hand the board, a
// value that breaks its format, and Check refuses the template.
func TestRenderValidatesOutput(t *testing.T) {
	tmpl, err := Parse("line.json", `{"serial": "{{raw .Serial}}"}`)
	if err != nil {
		t.Fatal(err)
	}
	d := SampleData(AttestationTPM)
	if out, err := tmpl.Render(d); err != nil || string(out) != `{"serial": "SN-000123"}` {
		t.Errorf("Render(sample) = %q, %v; want the serial verbatim", out, err)
	}
	d.Serial = `SN "1"`
	out, err := tmpl.Render(d)
	if !errors.Is(err, ErrRender) || !strings.Contains(err.Error(), "not valid JSON") {
		t.Errorf("Render(Serial %q) = %q, %v; want ErrRender: not valid JSON", d.Serial, out, err)
	}
	if err := tmpl.Check(); !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), "field Serial") {
		t.Errorf("Check() = %v; want ErrTemplate naming field Serial", err)
	}
}

// TestErrorMessages pins the shape of the messages the station shows.
func TestErrorMessages(t *testing.T) {
	tmpl, err := Builtin("json")
	if err != nil {
		t.Fatal(err)
	}
	d := SampleData(AttestationX509)
	d.CertificateChain = ""
	_, err = tmpl.Render(d)
	want := `cannot render firmware template "json": field CertificateChain: is empty (x509 attestation needs it)`
	if err == nil || err.Error() != want {
		t.Errorf("Render(x509, no chain) = %v, want %s", err, want)
	}

	_, err = Parse("line.json", "{\n{{.IDScope}\n")
	want = `bad firmware template "line.json" line 2: bad character U+007D '}'`
	if err == nil || err.Error() != want {
		t.Errorf("Parse = %v, want %s", err, want)
	}
}

// TestRenderConcurrent: slots share one Template (run with -race), a
// built-in one or a custom one whose values are escaped by default.
func TestRenderConcurrent(t *testing.T) {
	builtin, err := Builtin("c-header")
	if err != nil {
		t.Fatal(err)
	}
	custom, err := Parse("custom.json", `{"serial": "{{.Serial}}", "chain": {{.CertificateChain}}{{range $k, $v := .Custom}}, "{{$k}}": {{$v}}{{end}}}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tmpl := range []*Template{builtin, custom} {
		want, err := tmpl.Render(SampleData(AttestationX509))
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 8)
		for range 8 {
			go func() {
				for range 20 {
					got, err := tmpl.Render(SampleData(AttestationX509))
					if err == nil && string(got) != string(want) {
						err = errors.New("output differs between renders")
					}
					if err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Errorf("%s: %v", tmpl.Name, err)
			}
		}
	}
}
