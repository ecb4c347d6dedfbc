package fwtemplates

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"zerotouch/internal/nvscsv"
)

// hostileValues are what CheckSample tries in each field a board can
// influence: values that close a JSON, TOML, C or CSV string or field and
// add a key, a definition or a row of their own, control characters, and
// long values. Data.Validate accepts each of them in the fields
// hostileFields lists.
func hostileValues() []string {
	return []string{
		// JSON: out of a string, or a bare value, and a second key.
		`x", "registrationId": "evil`,
		`x","registrationId":"evil","zt_injected":"`,
		`1, "registrationId": "evil"`,
		`"}, "registrationId": "evil", "zt_injected": {"`,
		`x\", \"zt_injected\": \"`,
		// TOML: out of a basic, literal or multi-line string, or a comment.
		"x\"\nregistration_id = \"evil",
		"x\"\n[provisioning.attestation]\nregistration_id = \"evil\"\n#",
		"x'\nzt_injected = 'evil",
		"x\"\"\"\nzt_injected = \"\"\"evil",
		"x'''\nzt_injected = '''evil",
		"x\" }\nzt_injected = { a = \"",
		"x # comment\nzt_injected = 1",
		// C: out of a literal or a comment, a spliced line, trigraphs.
		"x\"\n#define DPS_REGISTRATION_ID \"evil",
		"x\\\n#define ZT_INJECTED 1",
		"x */ #define ZT_INJECTED 1 /* x",
		"x\n#define ZT_INJECTED 1\n//",
		"x??/\n#define ZT_INJECTED 1",
		"??=define ZT_INJECTED 1",
		"x\" ZT_INJECTED \"",
		"?", "??", "x?", "'x'",
		// CSV: a field, a row, a comment line.
		"x,evil",
		"x\nregistration_id,data,string,evil",
		"x\",\nzt_injected,data,string,\"evil",
		"x\r\nzt_injected,data,string,evil",
		"\n#x\nzt_injected,data,string,evil",
		"#x", " x",
		// Control characters, escapes and other metacharacters.
		"\x00", "x\x00y", "\r", "\n", "\t\b\f\v\x7f",
		"\x1b[31mred\x1b[0m\x1b]0;title\x07",
		"\u2028\u2029\ufeff", "é✓", "\xff\xfe",
		`\`, `x\`, `\u0000\x00\0`, `\"`, `""`, `''`, `'''`, `"""`,
		"{{.Serial}}", "{}[]", "}{", "]]", "[x]", "#", ",", ";", "=", "%s%d", "$(x)", "<x>&",
		// Long values.
		strings.Repeat("A", 5000),
		strings.Repeat(`"\`, 300),
	}
}

// benignValue is the plain value whose rendering a hostile value's is
// compared with: letters only, so that every escaping function takes it.
const benignValue = "ztbenign"

// hostileField is a Data field CheckSample tries hostile values in.
type hostileField struct {
	name string
	set  func(d *Data, v string)
}

// hostileFields are the fields whose values come from the board, or may be
// derived from what it says (the registration and device IDs), and the
// Custom fields of d.
func hostileFields(d Data) []hostileField {
	fs := []hostileField{
		{"Serial", func(d *Data, v string) { d.Serial = v }},
		{"Model", func(d *Data, v string) { d.Model = v }},
		{"RegistrationID", func(d *Data, v string) { d.RegistrationID = v }},
		{"DeviceID", func(d *Data, v string) { d.DeviceID = v }},
	}
	for _, k := range slices.Sorted(maps.Keys(d.Custom)) {
		fs = append(fs, hostileField{"Custom." + k, func(d *Data, v string) {
			d.Custom = maps.Clone(d.Custom)
			d.Custom[k] = v
		}})
	}
	return fs
}

// checkHostile renders d with each hostile value in each hostile field,
// but a Custom field that a raw action writes by name.
// A render that refuses the value is fine: the board would be refused, not
// given a broken file. A template fails when a hostile value makes output
// that is not valid for the format, or valid output whose structure (the
// keys of a JSON or TOML document, the directives of a C header, the rows
// of a CSV) differs from that of the same render with benignValue in the
// field, both read with each value replaced by one marker.
func (t *Template) checkHostile(d Data) error {
	if t.Format == FormatText {
		return nil
	}
	for _, f := range hostileFields(d) {
		if strings.HasPrefix(f.name, "Custom.") && slices.ContainsFunc(t.raw, func(a action) bool { return a.field == f.name }) {
			// {{raw .Custom.port}}: a line's setting, the same for every
			// board, which the sample has just rendered with its value.
			continue
		}
		base := d
		f.set(&base, benignValue)
		baseOut, err := t.Render(base)
		if err != nil {
			// A template that cannot take a plain value in this field
			// (fileuri .Serial) is compared with nothing; the hostile
			// values are still tried for output that is not valid.
			baseOut = nil
		} else {
			other := d
			f.set(&other, benignValue+"x")
			if out, err := t.Render(other); err == nil && bytes.Equal(out, baseOut) {
				continue // the field does not reach the output
			}
		}
		var baseTree parsed
		if baseOut != nil {
			baseTree, _ = parseStructure(t.Format, baseOut)
		}
		for _, v := range hostileValues() {
			hd := d
			f.set(&hd, v)
			if hd.Validate() != nil {
				continue
			}
			out, err := t.execute(hd)
			var fe *formatError
			switch {
			case errors.As(err, &fe):
				return t.hostileError(d, f.name, v, fe)
			case err != nil || baseTree == nil:
				continue
			}
			tree, err := parseStructure(t.Format, out)
			if err != nil {
				return t.hostileError(d, f.name, v, &formatError{format: t.Format, err: err})
			}
			if diff := diffStructure(baseTree.structure(v), tree.structure(v)); diff != "" {
				return t.hostileError(d, f.name, v, fmt.Errorf("%s output changes its structure: it %s, which it does not with a plain value", t.Format, diff))
			}
		}
	}
	return nil
}

func (t *Template) hostileError(d Data, field, value string, err error) error {
	e := &Error{Kind: ErrTemplate, Template: t.Name, Field: field,
		Err: &hostileError{attestation: d.Attestation, value: value, err: err}}
	for _, a := range t.raw {
		if a.field == field {
			e.Line = a.line
			break
		}
	}
	return e
}

// hostileError says which hostile value broke the template.
type hostileError struct {
	attestation string
	value       string
	err         error
}

func (e *hostileError) Error() string {
	v := e.value
	if len(v) > 60 {
		v = strconv.Quote(v[:60]) + fmt.Sprintf("... (%d bytes)", len(e.value))
	} else {
		v = strconv.Quote(v)
	}
	return fmt.Sprintf("with sample data for %s attestation and the hostile value %s: %v (is the value written with raw, or with the escaping function of another format?)",
		e.attestation, v, e.err)
}

func (e *hostileError) Unwrap() error { return e.err }

// parsed is output read for its structure: a JSON or TOML document's
// values, a C header's lines without comments and with literals emptied,
// a CSV's rows as nvs_partition_gen reads them.
type parsed interface {
	// structure returns the structure as a multiset of entries: the path
	// and type of each JSON or TOML value, each line of a C header, the
	// key, type and encoding of each CSV row. Occurrences of value and of
	// benignValue in names and code are replaced by <value>, so that a
	// template that makes a key of a value keeps its structure.
	structure(value string) map[string]int
}

type (
	treeParsed    struct{ v any }
	cParsed       []logicalLine
	csvRowsParsed []csvRow
)

// parseStructure reads out, valid for format, for its structure.
func parseStructure(format string, out []byte) (parsed, error) {
	switch format {
	case FormatJSON:
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		return treeParsed{v}, nil
	case FormatTOML:
		var v map[string]any
		if _, err := toml.Decode(string(out), &v); err != nil {
			return nil, err
		}
		return treeParsed{v}, nil
	case FormatCHeader:
		lines, err := cCode(out)
		return cParsed(lines), err
	case FormatNVSCSV:
		rows, err := readCSV(nvscsv.ToolText(out), 0)
		return csvRowsParsed(rows), err
	}
	return nil, fmt.Errorf("no structure for format %q", format)
}

func normalizer(value string) func(string) string {
	return func(s string) string {
		return strings.ReplaceAll(strings.ReplaceAll(s, value, "<value>"), benignValue, "<value>")
	}
}

func (p treeParsed) structure(value string) map[string]int {
	m := map[string]int{}
	treeStructure("$", p.v, normalizer(value), m)
	return m
}

func (p cParsed) structure(value string) map[string]int {
	norm := normalizer(value)
	m := map[string]int{}
	for _, l := range p {
		t := strings.Join(strings.Fields(l.text), " ")
		for strings.Contains(t, `"" ""`) || strings.Contains(t, `""""`) {
			t = strings.ReplaceAll(strings.ReplaceAll(t, `"" ""`, `""`), `""""`, `""`)
		}
		if t != "" {
			m["line "+norm(t)]++
		}
	}
	return m
}

func (p csvRowsParsed) structure(value string) map[string]int {
	norm := normalizer(value)
	m := map[string]int{}
	for _, r := range p {
		f := r.fields
		if len(f) > 0 {
			f = slices.Clone(f)
			f[0] = norm(f[0])
		}
		m[fmt.Sprintf("row %q with %d fields", strings.Join(f[:min(3, len(f))], ","), len(f))]++
	}
	return m
}

func treeStructure(path string, v any, norm func(string) string, m map[string]int) {
	switch v := v.(type) {
	case map[string]any:
		m[path+" object"]++
		for k, x := range v {
			treeStructure(path+"."+strconv.Quote(norm(k)), x, norm, m)
		}
	case []map[string]any:
		m[path+" array"]++
		for i, x := range v {
			treeStructure(fmt.Sprintf("%s[%d]", path, i), x, norm, m)
		}
	case []any:
		m[path+" array"]++
		for i, x := range v {
			treeStructure(fmt.Sprintf("%s[%d]", path, i), x, norm, m)
		}
	case string:
		m[path+" string"]++
	case json.Number:
		m[path+" number"]++
	case nil:
		m[path+" null"]++
	default:
		m[fmt.Sprintf("%s %T", path, v)]++
	}
}

// diffStructure says the first entry got has more of than want ("gains
// ..."), else the first it has fewer of ("loses ..."), or "" when they are
// the same.
func diffStructure(want, got map[string]int) string {
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if got[k] > want[k] {
			return "gains " + k
		}
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] < want[k] {
			return "loses " + k
		}
	}
	return ""
}
