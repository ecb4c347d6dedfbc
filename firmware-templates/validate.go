package fwtemplates

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"

	"zerotouch/internal/nvscsv"
)

// Output formats. A template's format decides how Check and Render
// validate what it renders.
const (
	FormatJSON    = "json"     // a JSON document
	FormatTOML    = "toml"     // a TOML document
	FormatCHeader = "c-header" // a C header with an include guard
	FormatNVSCSV  = "nvs-csv"  // an ESP-IDF NVS partition generator CSV
	FormatText    = "text"     // anything; not validated
)

// FormatOf returns the format for a template file name, by its extension:
// .json, .toml, .h and .csv; "text" for anything else.
func FormatOf(name string) string {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json":
		return FormatJSON
	case ".toml":
		return FormatTOML
	case ".h":
		return FormatCHeader
	case ".csv":
		return FormatNVSCSV
	}
	return FormatText
}

// validate reports whether out is valid for format.
func validate(format string, out []byte) error {
	switch format {
	case FormatJSON:
		return validateJSON(out)
	case FormatTOML:
		return validateTOML(out)
	case FormatCHeader:
		return validateCHeader(out)
	case FormatNVSCSV:
		return validateNVSCSV(out)
	}
	return nil
}

func validateJSON(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("not valid JSON: line %d: %v", lineAt(b, se.Offset), err)
		}
		return fmt.Errorf("not valid JSON: %w", err)
	}
	return checkJSONKeys(b)
}

// checkJSONKeys refuses an object that has a key twice: RFC 8259 section 4
// leaves what a parser makes of it open, and one that takes the first and
// one that takes the last would read different documents.
func checkJSONKeys(b []byte) error {
	type object struct {
		keys    map[string]bool
		wantKey bool
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var stack []*object // nil for an array
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not valid JSON: %w", err)
		}
		var top *object
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &object{keys: map[string]bool{}, wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, nil)
			continue
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			if len(stack) > 0 && stack[len(stack)-1] != nil {
				stack[len(stack)-1].wantKey = true
			}
			continue
		}
		switch {
		case top == nil:
		case top.wantKey:
			k := tok.(string)
			if top.keys[k] {
				return fmt.Errorf("line %d: key %q appears twice in one object (parsers differ on which one they take)", lineAt(b, dec.InputOffset()), k)
			}
			top.keys[k] = true
			top.wantKey = false
		default:
			top.wantKey = true
		}
	}
}

// lineAt returns the 1-based line of byte offset off in b.
func lineAt(b []byte, off int64) int {
	off = min(max(off, 0), int64(len(b)))
	return bytes.Count(b[:off], []byte("\n")) + 1
}

func validateTOML(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	var v map[string]any
	if _, err := toml.Decode(string(b), &v); err != nil {
		return fmt.Errorf("not valid TOML: %w", err)
	}
	return nil
}

// validateCHeader checks what a C compiler would trip over first in a
// generated header, without a compiler: every string and character literal
// and every block comment ends (after backslash-newline splicing, as in
// translation phase 2), escapes are C escapes, conditionals balance, the
// first directive is an include guard (#ifndef G, #define G) whose #endif
// is the last directive with nothing but comments around them, and no
// macro outside further conditionals is defined twice.
func validateCHeader(b []byte) error {
	if bytes.IndexByte(b, 0) >= 0 {
		return errors.New("header holds a NUL byte")
	}
	type directive struct {
		line      int
		name, arg string
	}
	var (
		dirs   []directive
		codeAt []int // lines with code outside directives
	)
	lines, err := cCode(b)
	if err != nil {
		return err
	}
	for _, ll := range lines {
		t := strings.TrimSpace(ll.text)
		if t == "" {
			continue
		}
		if t[0] != '#' {
			codeAt = append(codeAt, ll.line)
			continue
		}
		name, arg, _ := strings.Cut(strings.TrimSpace(t[1:]), " ")
		if i := strings.IndexAny(name, "(\t"); i >= 0 {
			name = name[:i]
		}
		arg = strings.TrimSpace(arg)
		if name == "define" || name == "ifdef" || name == "ifndef" || name == "undef" {
			arg = macroName(arg)
		}
		dirs = append(dirs, directive{line: ll.line, name: name, arg: arg})
	}
	if len(dirs) < 3 || dirs[0].name != "ifndef" || dirs[1].name != "define" || dirs[1].arg != dirs[0].arg || dirs[0].arg == "" {
		return errors.New("no include guard: the first directives must be #ifndef NAME and #define NAME")
	}
	guard := dirs[0].arg
	var (
		stack   []directive
		defined = map[string]int{}
	)
	for i, d := range dirs {
		switch d.name {
		case "if", "ifdef", "ifndef":
			stack = append(stack, d)
		case "elif", "else", "elifdef", "elifndef":
			if len(stack) == 0 {
				return fmt.Errorf("line %d: #%s without #if", d.line, d.name)
			}
			if len(stack) == 1 {
				return fmt.Errorf("line %d: #%s belongs to the include guard %s", d.line, d.name, guard)
			}
		case "endif":
			if len(stack) == 0 {
				return fmt.Errorf("line %d: #endif without #if", d.line)
			}
			stack = stack[:len(stack)-1]
			if len(stack) == 0 && i != len(dirs)-1 {
				return fmt.Errorf("line %d: the include guard %s ends here but directives follow", d.line, guard)
			}
		case "define":
			if d.arg == "" {
				return fmt.Errorf("line %d: #define without a macro name", d.line)
			}
			if len(stack) == 1 {
				if prev, ok := defined[d.arg]; ok {
					return fmt.Errorf("line %d: macro %s is already defined on line %d", d.line, d.arg, prev)
				}
				defined[d.arg] = d.line
			}
		}
	}
	if len(stack) > 0 {
		d := stack[len(stack)-1]
		return fmt.Errorf("line %d: #%s %s has no #endif", d.line, d.name, d.arg)
	}
	for _, l := range codeAt {
		if l < dirs[0].line || l > dirs[len(dirs)-1].line {
			return fmt.Errorf("line %d: code outside the include guard %s", l, guard)
		}
	}
	return nil
}

// cCode returns the logical lines of a C source with each comment
// replaced by a space and each string or character literal by its empty
// quotes, or an error where a literal or a comment does not end.
func cCode(b []byte) ([]logicalLine, error) {
	var (
		out       []logicalLine
		inComment bool
	)
	for _, ll := range logicalLines(string(b)) {
		var text strings.Builder // the line without comments and literals' contents
		s := ll.text
		for i := 0; i < len(s); {
			if inComment {
				end := strings.Index(s[i:], "*/")
				if end < 0 {
					i = len(s)
					continue
				}
				inComment = false
				i += end + 2
				text.WriteByte(' ')
				continue
			}
			switch {
			case strings.HasPrefix(s[i:], "/*"):
				inComment = true
				i += 2
			case strings.HasPrefix(s[i:], "//"):
				i = len(s)
			case s[i] == '"' || s[i] == '\'':
				n, err := scanLiteral(s[i:])
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", ll.line, err)
				}
				text.WriteString(s[i : i+1])
				text.WriteString(s[i : i+1])
				i += n
			default:
				text.WriteByte(s[i])
				i++
			}
		}
		out = append(out, logicalLine{line: ll.line, text: text.String()})
	}
	if inComment {
		return nil, errors.New("a /* comment does not end")
	}
	return out, nil
}

type logicalLine struct {
	line int // physical line it starts on, from 1
	text string
}

// logicalLines splits s into lines, joining a line that ends in a backslash
// with the next (C translation phase 2).
func logicalLines(s string) []logicalLine {
	phys := strings.Split(s, "\n")
	var out []logicalLine
	for i := 0; i < len(phys); i++ {
		ll := logicalLine{line: i + 1}
		var b strings.Builder
		for {
			p := strings.TrimSuffix(phys[i], "\r")
			if strings.HasSuffix(p, `\`) && i+1 < len(phys) {
				b.WriteString(p[:len(p)-1])
				i++
				continue
			}
			b.WriteString(p)
			break
		}
		ll.text = b.String()
		out = append(out, ll)
	}
	return out
}

// scanLiteral returns the length of the string or character literal at the
// start of s, or an error when it does not end on its line or holds an
// escape C does not have.
func scanLiteral(s string) (int, error) {
	q := s[0]
	kind := "string"
	if q == '\'' {
		kind = "character"
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case q:
			return i + 1, nil
		case '\\':
			i++
			if i == len(s) {
				return 0, fmt.Errorf("%s literal does not end", kind)
			}
			if !strings.ContainsRune(`'"?\abfnrtv01234567xuU`, rune(s[i])) {
				return 0, fmt.Errorf("%s literal has an unknown escape \\%c", kind, s[i])
			}
			if n := map[byte]int{'u': 4, 'U': 8}[s[i]]; n > 0 {
				if err := checkUCN(s[i+1:], n); err != nil {
					return 0, fmt.Errorf("%s literal: \\%c: %w", kind, s[i], err)
				}
				i += n
			}
		}
	}
	return 0, fmt.Errorf("%s literal does not end (unbalanced %c)", kind, q)
}

// checkUCN checks the n hex digits of a universal character name (\u or
// \U) at the start of s: C99 section 6.4.3 refuses one below U+00A0 but
// $, @ and `, and one in the surrogates D800-DFFF.
func checkUCN(s string, n int) error {
	if len(s) < n {
		return errors.New("universal character name without its hex digits")
	}
	c, err := strconv.ParseUint(s[:n], 16, 32)
	if err != nil {
		return fmt.Errorf("universal character name %q is not %d hex digits", s[:n], n)
	}
	if c < 0xa0 && c != '$' && c != '@' && c != '`' || c >= 0xd800 && c <= 0xdfff || c > 0x10ffff {
		return fmt.Errorf("universal character name %s cannot stand for U+%04X", s[:n], c)
	}
	return nil
}

// macroName returns the identifier that starts s.
func macroName(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return s[:i]
		}
	}
	return s
}

// validateNVSCSV checks a CSV file for ESP-IDF's NVS partition generator
// as nvs_partition_gen.py reads it (espressif/esp-idf-nvs-partition-gen,
// esp_idf_nvs_partition_gen/nvs_partition_gen.py, generate() and
// write_entry(); the same rules as in ESP-IDF's "NVS Partition Generator
// Utility" documentation):
//
//   - the file is read as UTF-8 text, so "\r\n" and "\r" become "\n";
//   - every line whose first character is '#' is dropped before the CSV
//     is parsed (even a line inside a quoted value);
//   - the rest is read with Python's csv.DictReader, the first row naming
//     the columns: it must be key,type,encoding,value;
//   - a key (or namespace name) has at most 15 characters;
//   - type is namespace, data or file; a namespace row starts the
//     namespace that the rows after it go into, so the first row must be
//     one;
//   - encoding is u8, i8, u16, i16, u32, i32, u64, i64, string, hex2bin,
//     base64 or binary (file rows: hex2bin, base64, string, binary);
//   - a string value gets a NUL appended and may then be at most 4000
//     bytes; the tool sizes it in characters but writes UTF-8, so only
//     ASCII is stored intact.
//
// Beyond what the tool enforces, it refuses a key written twice in one
// namespace and a file that reads differently with and without the tool's
// comment and newline handling (a carriage return or a '#' line inside a
// quoted value), since either way the board would get something else than
// what was rendered.
func validateNVSCSV(b []byte) error {
	if !utf8.Valid(b) {
		return errors.New("not valid UTF-8")
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return errors.New("holds a NUL byte")
	}
	plain, err := readCSV(string(b), '#')
	if err != nil {
		return fmt.Errorf("not valid CSV: %w", err)
	}
	const differently = "nvs_partition_gen would read the values differently than they were written: a value holds a carriage return or a line starting with #"
	rows, err := readCSV(nvscsv.ToolText(b), 0)
	if err != nil {
		return fmt.Errorf("%s (%w)", differently, err)
	}
	if !slices.EqualFunc(rows, plain, func(a, b csvRow) bool { return slices.Equal(a.fields, b.fields) }) {
		return errors.New(differently)
	}
	if len(rows) == 0 {
		return errors.New("no header row key,type,encoding,value")
	}
	if h := rows[0].fields; !slices.Equal(h, []string{"key", "type", "encoding", "value"}) {
		return fmt.Errorf("line %d: header is %q, want key,type,encoding,value", rows[0].line, strings.Join(h, ","))
	}
	for _, r := range rows[1:] {
		if len(r.fields) != 4 {
			return fmt.Errorf("line %d: %d fields, want 4 (key,type,encoding,value)", r.line, len(r.fields))
		}
	}
	if len(rows) > 1 && rows[1].fields[1] != "namespace" {
		return fmt.Errorf("line %d: the first entry must be a namespace row (KEY,namespace,,)", rows[1].line)
	}
	seen := map[[2]string]int{}
	ns := ""
	for _, r := range rows[1:] {
		key, typ, enc, val := r.fields[0], r.fields[1], r.fields[2], r.fields[3]
		if err := checkNVSKey(key); err != nil {
			return fmt.Errorf("line %d: %w", r.line, err)
		}
		switch typ {
		case "namespace":
			ns = key
			continue
		case "data":
			if err := checkNVSValue(enc, val); err != nil {
				return fmt.Errorf("line %d: key %s: %w", r.line, key, err)
			}
		case "file":
			switch enc {
			case "hex2bin", "base64", "string", "binary":
			default:
				return fmt.Errorf("line %d: key %s: encoding %q for a file; use hex2bin, base64, string or binary", r.line, key, enc)
			}
			if val == "" {
				return fmt.Errorf("line %d: key %s: file row without a file name", r.line, key)
			}
		default:
			return fmt.Errorf("line %d: key %s: type %q; use namespace, data or file", r.line, key, typ)
		}
		if prev, ok := seen[[2]string{ns, key}]; ok {
			return fmt.Errorf("line %d: key %s already set on line %d in namespace %s", r.line, key, prev, ns)
		}
		seen[[2]string{ns, key}] = r.line
	}
	return nil
}

type csvRow struct {
	line   int
	fields []string
}

func readCSV(s string, comment rune) ([]csvRow, error) {
	r := csv.NewReader(strings.NewReader(s))
	r.Comment = comment
	r.FieldsPerRecord = -1
	var rows []csvRow
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, err
		}
		line, _ := r.FieldPos(0)
		rows = append(rows, csvRow{line: line, fields: rec})
	}
}

// checkNVSValue checks a data row's value for its encoding.
func checkNVSValue(enc, val string) error {
	bits := map[string]int{"u8": 8, "i8": 8, "u16": 16, "i16": 16, "u32": 32, "i32": 32, "u64": 64, "i64": 64}
	if n, ok := bits[enc]; ok {
		var err error
		if enc[0] == 'u' {
			_, err = strconv.ParseUint(val, 10, n)
		} else {
			_, err = strconv.ParseInt(val, 10, n)
		}
		if err != nil {
			return fmt.Errorf("value %q is not a %s", val, enc)
		}
		return nil
	}
	switch enc {
	case "string":
		return checkNVSString(val)
	case "binary":
		for i := 0; i < len(val); i++ {
			if val[i] >= 0x80 {
				return fmt.Errorf("binary value holds a non-ASCII byte at offset %d, which nvs_partition_gen cannot store", i)
			}
		}
	case "hex2bin":
		v := strings.TrimSpace(val)
		if _, err := hex.DecodeString(v); err != nil {
			return fmt.Errorf("hex2bin value: %w", err)
		}
	case "base64":
		if _, err := base64.StdEncoding.DecodeString(val); err != nil {
			return fmt.Errorf("base64 value: %w", err)
		}
	default:
		return fmt.Errorf("encoding %q; use u8, i8, u16, i16, u32, i32, u64, i64, string, hex2bin, base64 or binary", enc)
	}
	return nil
}
