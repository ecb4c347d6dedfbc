package fwtemplates

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"

	"zerotouch/internal/nvscsv"
)

// customCase is a custom template that writes Data values without an
// escaping function, and how to read them back.
type customCase struct {
	name, file, text string
	// want returns the values the output must carry, keyed as read keys
	// them.
	want func(d Data) map[string]string
	// read reads every value out carries, so a key, definition or row the
	// template does not write shows up as a difference.
	read func(out []byte) (map[string]string, error)
	// mustRender are values (for Serial, Model and Custom.line) the
	// template must render and carry; others it may refuse.
	mustRender []string
}

func customCases() []customCase {
	jsonAttack := `x", "registrationId": "evil`
	tomlAttack := "x\"\nregistration_id = \"evil"
	cAttack := "x\"\n#define DPS_REGISTRATION_ID \"evil"
	csvAttacks := []string{"x\nregistration_id,data,string,evil", `x",evil`, "x,evil"}
	return []customCase{
		{
			name: "JSON in strings", file: "custom.json",
			text: `{
  "registrationId": "{{.RegistrationID}}",
  "device": {"serial": "{{.Serial}}", "model": "model: {{.Model}}!"},
  "line": "{{.Custom.line}}"
}
`,
			want: func(d Data) map[string]string {
				return map[string]string{"registrationId": d.RegistrationID, "device.serial": d.Serial,
					"device.model": "model: " + d.Model + "!", "line": d.Custom["line"]}
			},
			read:       readFlatJSON,
			mustRender: []string{jsonAttack},
		},
		{
			name: "JSON bare", file: "custom.json",
			text: `{"registrationId": {{.RegistrationID}}, "serial": {{.Serial}}, "model": {{.Model}},
 "custom": {{.Custom}}, "count": {{len .Custom}}{{range $k, $v := .Custom}}, "custom_{{$k}}": {{$v}}{{end}}}`,
			want: func(d Data) map[string]string {
				m := map[string]string{"registrationId": d.RegistrationID, "serial": d.Serial, "model": d.Model,
					"count": strconv.Itoa(len(d.Custom))}
				for k, v := range d.Custom {
					m["custom."+k] = v
					m["custom_"+k] = v
				}
				return m
			},
			read:       readFlatJSON,
			mustRender: []string{jsonAttack},
		},
		{
			name: "TOML in basic strings", file: "custom.toml",
			text: `# serial {{.Serial}}
registration_id = "{{.RegistrationID}}"

[device]
serial = "{{.Serial}}" # {{.Model}}
model = """
{{.Model}}"""
line = "line-{{.Custom.line}}"
`,
			want: func(d Data) map[string]string {
				return map[string]string{"registration_id": d.RegistrationID, "device.serial": d.Serial,
					"device.model": d.Model, "device.line": "line-" + d.Custom["line"]}
			},
			read:       readFlatTOML,
			mustRender: []string{tomlAttack, jsonAttack},
		},
		{
			name: "TOML bare", file: "custom.toml",
			text: `registration_id = {{.RegistrationID}}
[device]
serial = {{.Serial}}
model = {{.Model}}
custom = {{.Custom}}
count = {{len .Custom}}
[by_serial]
{{.Serial}} = "serial as a key"
`,
			want: func(d Data) map[string]string {
				m := map[string]string{"registration_id": d.RegistrationID, "device.serial": d.Serial,
					"device.model": d.Model, "device.count": strconv.Itoa(len(d.Custom)),
					"by_serial." + d.Serial: "serial as a key"}
				for k, v := range d.Custom {
					m["device.custom."+k] = v
				}
				return m
			},
			read:       readFlatTOML,
			mustRender: []string{tomlAttack, jsonAttack},
		},
		{
			name: "TOML in literal strings", file: "custom.toml",
			text: "registration_id = '{{.RegistrationID}}'\nserial = '{{.Serial}}'\nmodel = '''\n{{.Model}}'''\n",
			want: func(d Data) map[string]string {
				return map[string]string{"registration_id": d.RegistrationID, "serial": d.Serial, "model": d.Model}
			},
			read:       readFlatTOML,
			mustRender: []string{`x", registration_id = "evil`},
		},
		{
			name: "C header in literals and comments", file: "custom.h",
			text: `#ifndef CUSTOM_H
#define CUSTOM_H
/* serial {{.Serial}} */
// model {{.Model}}
#define DPS_REGISTRATION_ID "{{.RegistrationID}}"
#define SERIAL "{{.Serial}}"
#define MODEL "?{{.Model}}?"
#define LINE "\1{{.Custom.line}}"
#endif
`,
			want: func(d Data) map[string]string {
				return map[string]string{"CUSTOM_H": "", "DPS_REGISTRATION_ID": d.RegistrationID, "SERIAL": d.Serial,
					"MODEL": "?" + d.Model + "?", "LINE": "\x01" + d.Custom["line"]}
			},
			read:       readFlatC,
			mustRender: []string{cAttack, "x */ #define ZT_INJECTED 1 /* x", "x\\\n#define ZT_INJECTED 1"},
		},
		{
			name: "C header bare", file: "custom.h",
			text: `#ifndef CUSTOM_H
#define CUSTOM_H
#define DPS_REGISTRATION_ID {{.RegistrationID}}
#define SERIAL {{.Serial}}
#define MODEL {{.Model}}
/* {{.Custom.line}} */
#define COUNT {{len .Custom}}
#endif
`,
			want: func(d Data) map[string]string {
				return map[string]string{"CUSTOM_H": "", "DPS_REGISTRATION_ID": d.RegistrationID, "SERIAL": d.Serial,
					"MODEL": d.Model, "COUNT": "=" + strconv.Itoa(len(d.Custom))}
			},
			read:       readFlatC,
			mustRender: []string{cAttack},
		},
		{
			name: "NVS CSV fields", file: "custom.csv",
			text: `# serial {{.Serial}}
key,type,encoding,value
dps,namespace,,
registration_id,data,string,{{.RegistrationID}}
serial,data,string,{{.Serial}}
model,data,string,"model {{.Model}}"
line,data,string,{{.Custom.line}}
`,
			want: func(d Data) map[string]string {
				return map[string]string{"dps/registration_id": d.RegistrationID, "dps/serial": d.Serial,
					"dps/model": "model " + d.Model, "dps/line": d.Custom["line"]}
			},
			read:       readFlatNVS,
			mustRender: csvAttacks,
		},
		{
			name: "NVS CSV part of a field", file: "custom.csv",
			text: "key,type,encoding,value\ndps,namespace,,\nserial,data,string,sn-{{.Serial}}\nmodel,data,string,{{.Model}}-{{.Custom.line}}\n",
			want: func(d Data) map[string]string {
				return map[string]string{"dps/serial": "sn-" + d.Serial, "dps/model": d.Model + "-" + d.Custom["line"]}
			},
			read: readFlatNVS,
		},
	}
}

// flatten turns a decoded JSON or TOML document into path: value, the
// path's keys joined by dots, numbers in decimal.
func flatten(prefix string, v any, m map[string]string) error {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			if err := flatten(p, x, m); err != nil {
				return err
			}
		}
	case string:
		m[prefix] = v
	case json.Number:
		m[prefix] = v.String()
	case int64:
		m[prefix] = strconv.FormatInt(v, 10)
	default:
		return fmt.Errorf("%s: unexpected %T", prefix, v)
	}
	if _, dup := m[""]; dup {
		return errors.New("a value without a key")
	}
	return nil
}

func readFlatJSON(out []byte) (map[string]string, error) {
	if err := checkJSONKeys(out); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	m := map[string]string{}
	return m, flatten("", v, m)
}

func readFlatTOML(out []byte) (map[string]string, error) {
	var v map[string]any
	if _, err := toml.Decode(string(out), &v); err != nil {
		return nil, err
	}
	m := map[string]string{}
	return m, flatten("", v, m)
}

// readFlatC reads a header's #defines: a string literal's bytes, "=" and
// the tokens for other bodies.
func readFlatC(out []byte) (map[string]string, error) {
	defs, err := decodeCDefines(string(out))
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for name, d := range defs {
		if d.literal || d.value == "" {
			m[name] = d.value
		} else {
			m[name] = "=" + d.value
		}
	}
	return m, nil
}

// readFlatNVS reads a CSV as nvs_partition_gen does: NAMESPACE/KEY: value.
func readFlatNVS(out []byte) (map[string]string, error) {
	rows, err := readCSV(nvscsv.ToolText(out), 0)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 || strings.Join(rows[0].fields, ",") != "key,type,encoding,value" {
		return nil, errors.New("no header")
	}
	m := map[string]string{}
	ns := ""
	for _, r := range rows[1:] {
		if len(r.fields) != 4 {
			return nil, fmt.Errorf("line %d: %d fields", r.line, len(r.fields))
		}
		switch r.fields[1] {
		case "namespace":
			ns = r.fields[0]
		case "data":
			m[ns+"/"+r.fields[0]] = r.fields[3]
		default:
			return nil, fmt.Errorf("line %d: type %q", r.line, r.fields[1])
		}
	}
	return m, nil
}

// renderCustom renders c with serial, model and line in Serial, Model
// and Custom.line and reads it back. A refused value gives ok false; any
// other failure fails the test.
func renderCustom(t testing.TB, tmpl *Template, c customCase, serial, model, line string) (ok bool) {
	t.Helper()
	d := SampleData(AttestationTPM)
	d.Serial, d.Model = serial, model
	d.Custom = map[string]string{"line": line, "work_order": "WO-1"}
	out, err := tmpl.Render(d)
	if err != nil {
		var fe *formatError
		if !errors.Is(err, ErrRender) || errors.As(err, &fe) || out != nil {
			t.Fatalf("%s: Render(%q, %q, %q) = %q, %v; want output, or ErrRender refusing a value", c.name, serial, model, line, out, err)
		}
		return false
	}
	got, err := c.read(out)
	if err != nil {
		t.Fatalf("%s: Render(%q, %q, %q) output does not read back: %v\n%s", c.name, serial, model, line, err, out)
	}
	if diff := cmp.Diff(c.want(d), got); diff != "" {
		t.Fatalf("%s: Render(%q, %q, %q) read back (-want +got):\n%s\noutput:\n%s", c.name, serial, model, line, diff, out)
	}
	return true
}

// TestEscapesByDefault: custom templates that write values with no
// escaping function carry hostile values exactly, without a key,
// definition or row more, or refuse them.
func TestEscapesByDefault(t *testing.T) {
	for _, c := range customCases() {
		t.Run(c.name, func(t *testing.T) {
			tmpl, err := Parse(c.file, c.text)
			if err != nil {
				t.Fatal(err)
			}
			if err := tmpl.Check(); err != nil {
				t.Errorf("Check() = %v", err)
			}
			for _, v := range append([]string{"SN-000123", tricky, nvsTricky}, hostileValues()...) {
				renderCustom(t, tmpl, c, v, v, v)
			}
			for _, v := range c.mustRender {
				if !renderCustom(t, tmpl, c, v, v, v) {
					t.Errorf("Render(%q) refused the value; want it carried", v)
				}
			}
		})
	}
}

// TestOneRegistrationID is the case: a serial that closes the
// string and adds "registrationId" gives one registrationId, and the
// serial back.
func TestOneRegistrationID(t *testing.T) {
	const serial = `x", "registrationId": "evil`
	for _, text := range []string{
		`{"registrationId": "{{.RegistrationID}}", "serial": "{{.Serial}}"}`,
		`{"registrationId": {{.RegistrationID}}, "serial": {{.Serial}}}`,
	} {
		tmpl, err := Parse("custom.json", text)
		if err != nil {
			t.Fatal(err)
		}
		d := SampleData(AttestationTPM)
		d.Serial = serial
		out, err := tmpl.Render(d)
		if err != nil {
			t.Fatalf("Render(%s) = %v", text, err)
		}
		n := 0
		dec := json.NewDecoder(bytes.NewReader(out))
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			if tok == "registrationId" {
				n++
			}
		}
		var doc struct{ RegistrationID, Serial string }
		if err := json.Unmarshal(out, &doc); err != nil || n != 1 || doc.Serial != serial || doc.RegistrationID != d.RegistrationID {
			t.Errorf("Render(%s) = %s (%d registrationId, %v); want one registrationId and the serial back", text, out, n, err)
		}
	}
}

// TestEscapeContexts pins how a value is written in each context, and
// which contexts refuse which values.
func TestEscapeContexts(t *testing.T) {
	const guard = "#ifndef X_H\n#define X_H\n"
	for _, tc := range []struct {
		name, file, text, serial string
		want                     string // output, when wantErr is ""
		wantErr                  string
	}{
		{"JSON string", "a.json", `{"s": "{{.Serial}}"}`, "a\"\\\n\x01é\u2028", `{"s": "a\"\\\n\u0001é\u2028"}`, ""},
		{"JSON value", "a.json", `{"s": {{.Serial}}}`, `a"b`, `{"s": "a\"b"}`, ""},
		{"JSON object and number", "a.json", `{"c": {{.Custom}}, "n": {{len .Custom}}}`, "", `{"c": {"line":"L1","work_order":"WO-1001"}, "n": 2}`, ""},
		{"JSON printf", "a.json", `{"s": {{printf "%s/%s" .Serial .Model}}}`, `a"`, `{"s": "a\"/ZT-EVK-1"}`, ""},
		{"JSON in a defined template", "a.json", `{{define "v"}}"{{.}}"{{end}}{"s": {{template "v" .Serial}}}`, `a"`, `{"s": "a\""}`, ""},
		{"JSON range, with, variables", "a.json", `{{$s := .Serial}}{"s": [{{with .Model}}{{.}}, {{end}}{{range $k, $v := .Custom}}{{$k}}, {{end}}{{$s}}]}`, `a"`, `{"s": ["ZT-EVK-1", "line", "work_order", "a\""]}`, ""},
		{"JSON explicit escapers", "a.json", `{"a": {{json .Serial}}, "b": {{.Serial | json}}, "c": {{(json .Serial)}}}`, `a"`, `{"a": "a\"", "b": "a\"", "c": "a\""}`, ""},
		{"JSON required is an argument", "a.json", `{"a": {{required "Serial" .Serial}}}`, `a"`, `{"a": "a\""}`, ""},
		{"JSON invalid UTF-8", "a.json", `{"s": "{{.Serial}}"}`, "\xff", "", "{{.Serial}} in a JSON string: value is not valid UTF-8"},
		{"JSON inside an escape", "a.json", `{"s": "\u00{{.Serial}}"}`, "41", "", "inside an escape sequence"},
		{"JSON raw", "a.json", `{"s": {{raw .Serial}}}`, `[1, 2]`, `{"s": [1, 2]}`, ""},

		{"TOML basic string", "a.toml", `s = "{{.Serial}}"`, "a\"\\\n\x01\x7f", `s = "a\"\\\n\u0001\u007F"`, ""},
		{"TOML multi-line basic string", "a.toml", "s = \"\"\"{{.Serial}}\"\"\"", `a"""`, `s = """a\"\"\""""`, ""},
		{"TOML value", "a.toml", "s = {{.Serial}}\nn = {{len .Custom}}\nc = {{.Custom}}", `a"`, "s = \"a\\\"\"\nn = 2\nc = { \"line\" = \"L1\", \"work_order\" = \"WO-1001\" }", ""},
		{"TOML key", "a.toml", `a.{{.Serial}}.b = 1`, `x y`, `a."x y".b = 1`, ""},
		{"TOML comment", "a.toml", "# {{.Serial}}\ns = 1", "a\nb = 2", "# \"a\\nb = 2\"\ns = 1", ""},
		{"TOML literal string", "a.toml", `s = '{{.Serial}}'`, `a"\b`, `s = 'a"\b'`, ""},
		{"TOML literal string quote", "a.toml", `s = '{{.Serial}}'`, `it's`, "", `{{.Serial}} in a TOML literal string ('...'): value holds '\''`},
		{"TOML literal string newline", "a.toml", `s = '{{.Serial}}'`, "a\nb", "", `holds '\n'`},
		{"TOML multi-line literal string", "a.toml", "s = '''{{.Serial}}'''", "a\nb\"", "s = '''a\nb\"'''", ""},
		{"TOML touching a bare key", "a.toml", `s_{{.Serial}} = 1`, "a", "", "touches a bare key"},
		{"TOML inside an escape", "a.toml", `s = "\U0001{{.Serial}}"`, "F600", "", "inside an escape sequence"},

		{"C string", "a.h", guard + "#define S \"{{.Serial}}\"\n#endif\n", "a\"\\\n\x01é'?", guard + "#define S \"a\\\"\\\\\\n\\001\\303\\251'\\077\"\n#endif\n", ""},
		{"C string trigraph before", "a.h", guard + "#define S \"??{{.Serial}}\"\n#endif\n", "=x", guard + "#define S \"??\\075x\"\n#endif\n", ""},
		{"C string question marks", "a.h", guard + "#define S \"?{{.Serial}}?\"\n#endif\n", "?a??b?", guard + "#define S \"?\\077a\\?\\?b\\077?\"\n#endif\n", ""},
		{"C string empty between question marks", "a.h", guard + "#define S \"?{{.Serial}}?=\"\n#endif\n", "", "", "would form a trigraph"},
		{"C string empty, no trigraph", "a.h", guard + "#define S \"?{{.Serial}}?\"\n#endif\n", "", guard + "#define S \"??\"\n#endif\n", ""},
		{"C string after a hex escape", "a.h", guard + "#define S \"\\x4{{.Serial}}\"\n#endif\n", "1f", guard + "#define S \"\\x4\\061f\"\n#endif\n", ""},
		{"C string after an octal escape", "a.h", guard + "#define S \"\\12{{.Serial}}\"\n#endif\n", "3", guard + "#define S \"\\12\\063\"\n#endif\n", ""},
		{"C string after a full octal escape", "a.h", guard + "#define S \"\\123{{.Serial}}\"\n#endif\n", "4", guard + "#define S \"\\1234\"\n#endif\n", ""},
		{"C string after a backslash", "a.h", guard + "#define S \"\\{{.Serial}}\"\n#endif\n", "n", "", "in a C string literal: it would be inside an escape sequence"},
		{"C string NUL", "a.h", guard + "#define S \"{{.Serial}}\"\n#endif\n", "a\x00", "", "NUL byte at offset 1"},
		{"C spliced string", "a.h", guard + "#define S \"a\\\nb{{.Serial}}\"\n#endif\n", `"`, guard + "#define S \"a\\\nb\\\"\"\n#endif\n", ""},
		{"C character literal", "a.h", guard + "#define C '{{.Serial}}'\n#endif\n", `'`, guard + "#define C '\\''\n#endif\n", ""},
		{"C block comment", "a.h", guard + "/* {{.Serial}} */\n#endif\n", "*/ x /* y\n", guard + "/* \"*\\057 x /\\052 y\\n\" */\n#endif\n", ""},
		{"C line comment", "a.h", guard + "// {{.Serial}}\n#endif\n", "a\\", guard + "// \"a\\\\\"\n#endif\n", ""},
		{"C code", "a.h", guard + "#define S {{.Serial}}\n#define N {{len .Custom}}\n#endif\n", "a??=", guard + "#define S \"a\\?\\?=\"\n#define N 2\n#endif\n", ""},
		{"C code touching an identifier", "a.h", guard + "#define S_{{.Serial}} 1\n#endif\n", "A", "", "touches an identifier"},
		{"C cmacro", "a.h", guard + "#define S_{{cmacro .Serial}} 1\n#endif\n", "abc", guard + "#define S_ABC 1\n#endif\n", ""},

		{"CSV field", "a.csv", "key,type,encoding,value\nn,namespace,,\ns,data,string,{{.Serial}}\n", `a,"b`, "key,type,encoding,value\nn,namespace,,\ns,data,string,\"a,\"\"b\"\n", ""},
		{"CSV field starting with #", "a.csv", "key,type,encoding,value\nn,namespace,,\ns,data,string,{{.Serial}}\n", "#a", "key,type,encoding,value\nn,namespace,,\ns,data,string,\"#a\"\n", ""},
		{"CSV key starting with #", "a.csv", "key,type,encoding,value\nn,namespace,,\n{{.Serial}},data,string,v\n", "#a", "", `NVS key "#a" starts with #`},
		{"CSV quoted", "a.csv", "key,type,encoding,value\nn,namespace,,\ns,data,string,\"<{{.Serial}}>\"\n", `a,"b`, "key,type,encoding,value\nn,namespace,,\ns,data,string,\"<a,\"\"b>\"\n", ""},
		{"CSV quoted at a line start", "a.csv", "key,type,encoding,value\nn,namespace,,\ns,data,string,\"a\n{{.Serial}}\"\n", "#b", "", "starts with # at the start of a line"},
		{"CSV part of a field", "a.csv", "key,type,encoding,value\nn,namespace,,\ns,data,string,sn-{{.Serial}}\n", "a b", "key,type,encoding,value\nn,namespace,,\ns,data,string,sn-a b\n", ""},
		{"CSV part of a field needing quotes", "a.csv", "key,type,encoding,value\nn,namespace,,\ns,data,string,sn-{{.Serial}}\n", "a,b", "", "needs the CSV field quoted"},
		{"CSV value nvs refuses", "a.csv", "key,type,encoding,value\nn,namespace,,\ns,data,string,{{.Serial}}\n", "a\rb", "", "carriage return"},
		{"CSV comment", "a.csv", "# {{.Serial}}\nkey,type,encoding,value\nn,namespace,,\n", "a\nb,c", "# \"a\\nb,c\"\nkey,type,encoding,value\nn,namespace,,\n", ""},
		{"CSV after a quoted field", "a.csv", "key,type,encoding,value\nn,namespace,,\ns,data,string,\"a\"{{.Serial}}\n", "b", "", "follows the closing quote"},

		{"text as it is", "a.txt", `s="{{.Serial}}"`, `a"b`, `s="a"b"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := Parse(tc.file, tc.text)
			if err != nil {
				t.Fatal(err)
			}
			d := SampleData(AttestationTPM)
			d.Serial = tc.serial
			out, err := tmpl.Render(d)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrRender) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Render(Serial %q) = %q, %v; want ErrRender containing %q", tc.serial, out, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Render(Serial %q) = %v", tc.serial, err)
			}
			if diff := cmp.Diff(tc.want, string(out)); diff != "" {
				t.Errorf("Render(Serial %q) (-want +got):\n%s", tc.serial, diff)
			}
		})
	}
}

// TestEscapeErrorNamesAction: a value refused where the template puts it
// names the action, its line and the field.
func TestEscapeErrorNamesAction(t *testing.T) {
	tmpl, err := Parse("a.toml", "a = 1\n\nb = '{{.Model}}'\n")
	if err != nil {
		t.Fatal(err)
	}
	d := SampleData(AttestationTPM)
	d.Model = "it's"
	_, err = tmpl.Render(d)
	want := `cannot render firmware template "a.toml" line 3: field Model: {{.Model}} in a TOML literal string ('...'): value holds '\'' at offset 2, which a TOML literal string cannot; quote the action with "..." instead`
	if err == nil || err.Error() != want {
		t.Errorf("Render = %v\nwant %s", err, want)
	}
}

// TestRaw: raw writes a value verbatim; Render still validates the
// output, and CheckSample refuses a template whose raw field a hostile
// value breaks, naming the field and the action's line.
func TestRaw(t *testing.T) {
	for _, tc := range []struct {
		name, file, text string
		sample           string // the output for SampleData(tpm)
		serial, wantErr  string // a value to render, and what Render says of it
		line             int
		field, checkMsg  string // what CheckSample says
	}{
		{"JSON in a string", "a.json", "{\n  \"serial\": \"{{raw .Serial}}\"\n}", "{\n  \"serial\": \"SN-000123\"\n}", `a"`, "not valid JSON",
			2, "Serial", "json output"},
		{"JSON adds a key", "a.json", `{"serial": "{{.Serial | raw}}", "id": {{.RegistrationID}}}`, `{"serial": "SN-000123", "id": "7kxmzkrmfhdxh4hyohru3wx76e7ujjjh6bcw5vwgzgxnvuwevn2a"}`, `x", "registrationId": "evil`, "",
			1, "Serial", `gains $."registrationId" string`},
		{"TOML", "a.toml", "\nserial = \"{{raw .Serial}}\"\n", "\nserial = \"SN-000123\"\n", "a\nb", "not valid TOML",
			2, "Serial", "toml output"},
		{"C header", "a.h", "#ifndef X_H\n#define X_H\n#define SERIAL \"{{raw .Model}}\"\n#endif\n", "#ifndef X_H\n#define X_H\n#define SERIAL \"ZT-EVK-1\"\n#endif\n", "", "",
			3, "Model", "c-header output"},
		{"NVS CSV", "a.csv", "key,type,encoding,value\nn,namespace,,\nline,data,string,{{raw .Custom.line}}\nserial,data,string,{{raw .Serial}}\n", "key,type,encoding,value\nn,namespace,,\nline,data,string,L1\nserial,data,string,SN-000123\n", "a\nb,c", "nvs-csv output",
			4, "Serial", "nvs-csv output"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := Parse(tc.file, tc.text)
			if err != nil {
				t.Fatal(err)
			}
			out, err := tmpl.Render(SampleData(AttestationTPM))
			if err != nil || string(out) != tc.sample {
				t.Errorf("Render(sample) = %q, %v; want %q", out, err, tc.sample)
			}
			if tc.serial != "" {
				d := SampleData(AttestationTPM)
				d.Serial = tc.serial
				out, err := tmpl.Render(d)
				switch {
				case tc.wantErr == "" && (err != nil || !strings.Contains(string(out), tc.serial)):
					t.Errorf("Render(Serial %q) = %q, %v; want the serial verbatim", tc.serial, out, err)
				case tc.wantErr != "" && (!errors.Is(err, ErrRender) || !strings.Contains(err.Error(), tc.wantErr)):
					t.Errorf("Render(Serial %q) = %q, %v; want ErrRender containing %q", tc.serial, out, err, tc.wantErr)
				}
			}
			err = tmpl.CheckSample(SampleData(AttestationTPM))
			var e *Error
			if !errors.Is(err, ErrTemplate) || !errors.As(err, &e) {
				t.Fatalf("CheckSample() = %v; want ErrTemplate", err)
			}
			if e.Field != tc.field || e.Line != tc.line || !strings.Contains(err.Error(), tc.checkMsg) || !strings.Contains(err.Error(), "hostile value") {
				t.Errorf("CheckSample() = %v; want field %s, line %d, a hostile value and %q", err, tc.field, tc.line, tc.checkMsg)
			}
		})
	}
}

// TestCheckSampleHostile: templates that escape pass CheckSample's hostile
// values; a value written with another format's escaper does not.
func TestCheckSampleHostile(t *testing.T) {
	for _, tc := range []struct {
		name, file, text string
		field, wantMsg   string // "" for a template that passes
	}{
		{"JSON escaped by default", "a.json", `{"s": "{{.Serial}}", "m": {{.Model}}, "c": {{.Custom}}}`, "", ""},
		{"JSON with cstring", "a.json", `{"s": {{cstring .Serial}}}`, "Serial", "json output"},
		{"JSON with csv", "a.json", `{"s": "{{csv .Model}}"}`, "Model", "json output"},
		{"TOML with json", "a.toml", `s = {{json .DeviceID}}`, "DeviceID", "toml output"},
		{"C header with json", "a.h", "#ifndef X_H\n#define X_H\n#define ID {{json .RegistrationID}}\n#endif\n", "RegistrationID", "c-header output"},
		{"CSV with csv", "a.csv", "key,type,encoding,value\nn,namespace,,\ns,data,string,{{csv .Serial}}\n", "Serial", "nvs-csv output"},
		{"text is not checked", "a.txt", `{{raw .Serial}}`, "", ""},
		{"a Custom field written raw", "a.json", `{"port": {{raw .Custom.port}}, "serial": {{.Serial}}}`, "", ""},
		{"a Custom field written raw twice", "a.json", `{"port": {{raw .Custom.port}}, "p": "{{.Custom.port | printf "%s" | raw}}"}`, "", ""},
		{"a Custom value written raw in a range", "a.json", `{"c": [{{range .Custom}}{{raw .}}, {{end}}0]}`, "Custom.port", "json output"},
		{"a field the template does not write", "a.json", `{"id": {{.RegistrationID}}}`, "", ""},
		{"a plain value refused", "a.toml", `s = '{{.Serial}}'`, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := Parse(tc.file, tc.text)
			if err != nil {
				t.Fatal(err)
			}
			d := SampleData(AttestationX509)
			d.Custom = map[string]string{"port": "8443"}
			err = tmpl.CheckSample(d)
			if tc.wantMsg == "" {
				if err != nil {
					t.Errorf("CheckSample() = %v", err)
				}
				return
			}
			var e *Error
			if !errors.Is(err, ErrTemplate) || !errors.As(err, &e) || e.Field != tc.field || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("CheckSample() = %v; want ErrTemplate for field %s containing %q", err, tc.field, tc.wantMsg)
			}
		})
	}
}

// TestCustomCHeaderCompiles compiles a custom header whose values land in
// strings, after escapes and ?? in the template text, in comments and in
// code, with gcc in C99 (trigraphs on, warnings as errors).
func TestCustomCHeaderCompiles(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed")
	}
	tmpl, err := Parse("custom.h", `#ifndef CUSTOM_H
#define CUSTOM_H
/* serial {{.Serial}} */
// model {{.Model}}
#define SERIAL "{{.Serial}}"
#define SERIAL_CODE {{.Serial}}
#define TRIGRAPH "??{{.Model}}??"
#define HEX "\x4{{.Model}}"
#define OCTAL "\1{{.Model}}"
#define QUESTION "?{{.Model}}?"
#endif
`)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{tricky, "?", "??", "=x", "?=", `a\`, "*/ x /* y", "0", "8f", "", `"`, "\x01\xff", "??/\n#define X"} {
		d := SampleData(AttestationTPM)
		d.Serial, d.Model = v, v
		out, err := tmpl.Render(d)
		if err != nil {
			t.Fatalf("Render(%q) = %v", v, err)
		}
		got := compileMacros(t, gcc, out, []string{"SERIAL", "SERIAL_CODE", "TRIGRAPH", "HEX", "OCTAL", "QUESTION"})
		want := map[string]string{"SERIAL": v, "SERIAL_CODE": v, "TRIGRAPH": "??" + v + "??", "HEX": "\x04" + v,
			"OCTAL": "\x01" + v, "QUESTION": "?" + v + "?"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Render(%q) compiled by gcc (-want +got):\n%s\nheader:\n%s", v, diff, out)
		}
	}
}

// compileMacros builds a program that includes header and prints the
// string macros named, and returns what it printed.
func compileMacros(t *testing.T, gcc string, header []byte, macros []string) map[string]string {
	t.Helper()
	keys := map[string]string{}
	for _, name := range macros {
		keys[name] = name
	}
	return gccPrint(t, gcc, header, keys, "")
}
