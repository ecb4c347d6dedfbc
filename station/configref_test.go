package station

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	fwtemplates "zerotouch/firmware-templates"
)

// configReference is the station.yaml reference, checked against Config.
const configReference = "../docs/config.md"

// refHeader is the header of the reference's key tables; other tables
// (the secrets') are not read.
const refHeader = "| key | type | default | meaning |"

// refRow is one key's row in the reference.
type refRow struct {
	line              int
	typ, def, meaning string
}

// readReference returns the rows of the key tables in r, by key, and the
// problems with the rows it could not take: a key given twice, a key not
// in backquotes, a row without its four cells.
func readReference(r io.Reader) (map[string]refRow, []string, error) {
	rows := map[string]refRow{}
	var problems []string
	inTable := false
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == refHeader:
			inTable = true
			continue
		case !strings.HasPrefix(line, "|"):
			inTable = false
			continue
		case !inTable || strings.HasPrefix(line, "|---"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) != 4 {
			problems = append(problems, fmt.Sprintf("line %d: want 4 cells (key, type, default, meaning), got %d: %s", n, len(cells), line))
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		key, ok := strings.CutPrefix(cells[0], "`")
		key, ok2 := strings.CutSuffix(key, "`")
		if !ok || !ok2 || key == "" {
			problems = append(problems, fmt.Sprintf("line %d: key %q: want it in backquotes, as `dps.quota`", n, cells[0]))
			continue
		}
		if r, dup := rows[key]; dup {
			problems = append(problems, fmt.Sprintf("line %d: key %s is also on line %d", n, key, r.line))
			continue
		}
		rows[key] = refRow{line: n, typ: cells[1], def: cells[2], meaning: cells[3]}
	}
	return rows, problems, sc.Err()
}

var durationType = reflect.TypeFor[time.Duration]()

// configKey is one key of station.yaml: its path, as "slots[].port", and
// its Go type.
type configKey struct {
	path string
	typ  reflect.Type
}

// yamlName is the key yaml.v3 decodes into f; "" for none.
func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return ""
	case "":
		return strings.ToLower(f.Name)
	}
	return name
}

// configKeys walks t, a struct type decoded from YAML, and returns its
// keys: the leaves, with nested structs (and pointers to them) as
// "section.key" and lists of structs as "list[].key".
func configKeys(t reflect.Type, prefix string) []configKey {
	var keys []configKey
	for i := range t.NumField() {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		path := prefix + name
		switch ft := f.Type; {
		case ft != durationType && ft.Kind() == reflect.Struct:
			keys = append(keys, configKeys(ft, path+".")...)
		case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, configKeys(ft.Elem(), path+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			keys = append(keys, configKeys(ft.Elem(), path+"[].")...)
		default:
			keys = append(keys, configKey{path, ft})
		}
	}
	return keys
}

// configValue returns the value at a key's path in v, a struct as
// configKeys walks it: the first item of a list, the zero value below a
// nil pointer or in an empty list.
func configValue(v reflect.Value, path string) reflect.Value {
	for part := range strings.SplitSeq(path, ".") {
		name, list := strings.CutSuffix(part, "[]")
		f, ok := reflect.VisibleFields(v.Type()), false
		for _, sf := range f {
			if len(sf.Index) == 1 && yamlName(sf) == name {
				v, ok = v.Field(sf.Index[0]), true
				break
			}
		}
		if !ok {
			panic("configValue: no key " + path)
		}
		if v.Kind() == reflect.Pointer && v.Type().Elem().Kind() == reflect.Struct {
			if v.IsNil() {
				v = reflect.New(v.Type().Elem())
			}
			v = v.Elem()
		}
		if list {
			if v.Len() == 0 {
				v = reflect.New(v.Type().Elem()).Elem()
			} else {
				v = v.Index(0)
			}
		}
	}
	return v
}

// typeWord is how the reference names a key's Go type.
func typeWord(t reflect.Type) string {
	if t == durationType {
		return "duration"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return typeWord(t.Elem())
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		return "list of " + typeWord(t.Elem()) + "s"
	case reflect.Map:
		return "map of " + typeWord(t.Elem()) + "s"
	}
	return t.String()
}

// parseDefault reads a default as the reference writes it: a string as
// it is, anything else as YAML would.
func parseDefault(lit string, t reflect.Type) (reflect.Value, error) {
	v := reflect.New(t)
	if t.Kind() == reflect.String {
		v.Elem().SetString(lit)
		return v.Elem(), nil
	}
	if err := yaml.Unmarshal([]byte(lit), v.Interface()); err != nil {
		return reflect.Value{}, err
	}
	return v.Elem(), nil
}

// checkReference compares the reference's rows with the keys of cfg, a
// pointer to a configuration with its defaults applied, and returns each
// difference: a key with no row, a row with no key, a type that is not
// the key's, a row without meaning, and a default that is not what cfg
// holds. A default is a literal in backquotes (`2s`: the value, with
// words after it if need be), "none" (the zero value; words may follow
// a colon) or "required" (not checked).
func checkReference(rows map[string]refRow, cfg any) []string {
	v := reflect.ValueOf(cfg).Elem()
	var problems []string
	inType := map[string]bool{}
	for _, k := range configKeys(v.Type(), "") {
		inType[k.path] = true
		r, ok := rows[k.path]
		if !ok {
			problems = append(problems, fmt.Sprintf("key %s (%s) is in %s but not in the reference: add a row to its section's table", k.path, k.typ, v.Type()))
			continue
		}
		if want := typeWord(k.typ); r.typ != want {
			problems = append(problems, fmt.Sprintf("line %d: key %s has type %q, want %q (%s)", r.line, k.path, r.typ, want, k.typ))
		}
		if r.meaning == "" {
			problems = append(problems, fmt.Sprintf("line %d: key %s has no meaning", r.line, k.path))
		}
		got := configValue(v, k.path)
		switch {
		case r.def == "required":
		case r.def == "none" || strings.HasPrefix(r.def, "none:"):
			if !got.IsZero() {
				problems = append(problems, fmt.Sprintf("line %d: key %s: default none, but it is %v", r.line, k.path, got.Interface()))
			}
		case strings.HasPrefix(r.def, "`"):
			lit, _, _ := strings.Cut(r.def[1:], "`")
			want, err := parseDefault(lit, k.typ)
			if err != nil {
				problems = append(problems, fmt.Sprintf("line %d: key %s: default %q is not a %s: %v", r.line, k.path, lit, k.typ, err))
				continue
			}
			if !reflect.DeepEqual(got.Interface(), want.Interface()) {
				problems = append(problems, fmt.Sprintf("line %d: key %s: default %v, but it is %v", r.line, k.path, want.Interface(), got.Interface()))
			}
		default:
			problems = append(problems, fmt.Sprintf("line %d: key %s: default %q: want a literal in backquotes, none, or required", r.line, k.path, r.def))
		}
	}
	var extra []string
	for k, r := range rows {
		if !inType[k] {
			extra = append(extra, fmt.Sprintf("line %d: key %s is in the reference but not in %s: remove its row, or mend its name", r.line, k, v.Type()))
		}
	}
	sort.Strings(extra)
	return append(problems, extra...)
}

// minimalConfig is the least a station.yaml says: every other key takes
// its default.
const minimalConfig = `
attestation: tpm
id_scope: 0ne0001A2B3
slots:
  - port: /dev/ttyACM0
`

// TestConfigRef checks docs/config.md against Config: every key of the
// type has a row and every row is a key of the type, with the key's
// type, a meaning, and the default ParseConfig gives a file that leaves
// the key out.
func TestConfigRef(t *testing.T) {
	f, err := os.Open(configReference)
	if err != nil {
		t.Fatalf("the configuration reference: %v", err)
	}
	defer f.Close()
	rows, problems, err := readReference(f)
	if err != nil {
		t.Fatalf("read %s: %v", configReference, err)
	}
	cfg, err := ParseConfig([]byte(minimalConfig))
	if err != nil {
		t.Fatalf("ParseConfig(%q): %v", minimalConfig, err)
	}
	if n := len(configKeys(reflect.TypeFor[Config](), "")); n < 40 {
		t.Fatalf("configKeys(Config) found %d keys, want all of station.yaml's", n)
	}
	problems = append(problems, checkReference(rows, cfg)...)
	// The built-in templates are all named, as the error for an unknown
	// one names them.
	for _, name := range fwtemplates.Names() {
		if !strings.Contains(rows["template.name"].meaning, "`"+name+"`") {
			problems = append(problems, fmt.Sprintf("key template.name does not name the built-in template %q", name))
		}
	}
	for _, p := range problems {
		t.Errorf("%s: %s", configReference, p)
	}
}

// TestConfigRefCatchesDrift: the reference check fails, naming the key,
// for a key missing from the reference, a row with no key, a wrong type,
// a wrong default and malformed rows; it walks nested sections, pointers
// to sections and lists of sections.
func TestConfigRefCatchesDrift(t *testing.T) {
	type inner struct {
		B int           `yaml:"b"`
		D time.Duration `yaml:"d"`
	}
	type sample struct {
		A     string   `yaml:"a"`
		In    inner    `yaml:"in"`
		P     *inner   `yaml:"p"`
		L     []inner  `yaml:"l"`
		S     []string `yaml:"s,omitempty"`
		Skip  string   `yaml:"-"`
		NoTag bool
		hid   int
	}
	var keys []string
	for _, k := range configKeys(reflect.TypeFor[sample](), "") {
		keys = append(keys, k.path+":"+typeWord(k.typ))
	}
	want := []string{"a:string", "in.b:integer", "in.d:duration", "p.b:integer", "p.d:duration",
		"l[].b:integer", "l[].d:duration", "s:list of strings", "notag:boolean"}
	if !slices.Equal(keys, want) {
		t.Errorf("configKeys(sample) = %q, want %q", keys, want)
	}

	doc := "# sample\n\n" + refHeader + "\n|---|---|---|---|\n" +
		"| `a` | string | `x` | A. |\n" +
		"| `a` | string | none | A again. |\n" +
		"| b | string | none | Not in backquotes. |\n" +
		"| `c` | string | none |\n" +
		"| `in.b` | integer | `7` | B. |\n" +
		"| `in.d` | integer | `2s` | D. |\n" +
		"| `p.b` | integer | none | B. |\n" +
		"| `p.d` | duration | none: later | D. |\n" +
		"| `l[].b` | integer | `3` | B. |\n" +
		"| `l[].d` | duration | `1m` | D. |\n" +
		"| `s` | list of strings | required | S. |\n" +
		"| `gone` | string | none | Removed from the type. |\n" +
		"\n| setting | other | x | y |\n|---|---|---|---|\n| `e` | not | a key | table |\n"
	rows, problems, err := readReference(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	wantProblems := []string{"line 6: key a is also on line 5", "line 7: key \"b\"", "line 8: want 4 cells"}
	if len(problems) != len(wantProblems) {
		t.Errorf("readReference: problems %q, want %d", problems, len(wantProblems))
	}
	for i, w := range wantProblems {
		if i < len(problems) && !strings.HasPrefix(problems[i], w) {
			t.Errorf("readReference: problem %d = %q, want it to start %q", i, problems[i], w)
		}
	}
	if _, ok := rows["e"]; ok {
		t.Errorf("readReference read row e of a table that is not a key table")
	}

	cfg := &sample{A: "x", In: inner{B: 8, D: 2 * time.Second}, L: []inner{{B: 3, D: time.Minute}}}
	got := checkReference(rows, cfg)
	wantDiff := []string{
		"key in.b: default 7, but it is 8",
		"key in.d has type \"integer\", want \"duration\"",
		"key notag (bool) is in",
		"key gone is in the reference but not in",
	}
	if len(got) != len(wantDiff) {
		t.Errorf("checkReference: %d problems, want %d:\n%s", len(got), len(wantDiff), strings.Join(got, "\n"))
	}
	for _, w := range wantDiff {
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, w) }) {
			t.Errorf("checkReference: no problem saying %q in:\n%s", w, strings.Join(got, "\n"))
		}
	}

	for _, tt := range []struct {
		lit  string
		typ  reflect.Type
		want any
	}{
		{"0x81000002", reflect.TypeFor[uint32](), uint32(0x81000002)},
		{"10m", durationType, 10 * time.Minute},
		{"{{.Serial}}", reflect.TypeFor[string](), "{{.Serial}}"},
		{"0.97", reflect.TypeFor[float64](), 0.97},
	} {
		if v, err := parseDefault(tt.lit, tt.typ); err != nil || v.Interface() != tt.want {
			t.Errorf("parseDefault(%q, %s) = %v, %v, want %v", tt.lit, tt.typ, v, err, tt.want)
		}
	}
	if v, err := parseDefault("often", durationType); err == nil {
		t.Errorf("parseDefault(often, duration) = %v, want an error", v)
	}
}
