package fwtemplates

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"text/template"
	"unicode/utf8"
)

// funcs are the functions every template may call; the package
// documentation lists them.
func funcs() template.FuncMap {
	return template.FuncMap{
		"required":     required,
		"json":         jsonValue,
		"toml":         tomlString,
		"cstring":      cString,
		"cstringlines": cStringLines,
		"cmacro":       cMacro,
		"csv":          csvField,
		"nvs":          nvsString,
		"nvskey":       nvsKey,
		"fileuri":      fileURI,
		"raw":          raw,
	}
}

// raw returns v as it is: an action that ends in raw writes its value
// verbatim instead of escaped for the format.
func raw(v any) any { return v }

// required returns value, or fails the render naming field when it is
// empty.
func required(field, value string) (string, error) {
	if value == "" {
		return "", &fieldError{field: field, msg: "is empty (the template requires it)"}
	}
	return value, nil
}

var errNotUTF8 = errors.New("value is not valid UTF-8")

// jsonValue renders v as JSON: a string as a string literal, a
// map[string]string as an object with sorted keys (a nil map as {}),
// anything else as encoding/json encodes it. Invalid UTF-8 is refused
// rather than silently replaced.
func jsonValue(v any) (string, error) {
	switch v := v.(type) {
	case string:
		if !utf8.ValidString(v) {
			return "", errNotUTF8
		}
	case map[string]string:
		if v == nil {
			return "{}", nil
		}
		for k, s := range v {
			if !utf8.ValidString(k) || !utf8.ValidString(s) {
				return "", fmt.Errorf("key %q: %w", k, errNotUTF8)
			}
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// tomlString renders s as a TOML basic string ("..."), escaping what TOML
// 1.0 requires: quote, backslash and the control characters other than
// tab (tab is escaped too, for legibility).
func tomlString(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", errNotUTF8
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\t':
			b.WriteString(`\t`)
		case '\n':
			b.WriteString(`\n`)
		case '\f':
			b.WriteString(`\f`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				fmt.Fprintf(&b, `\u%04X`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String(), nil
}

// cString renders s as one C string literal holding exactly the bytes of
// s: printable ASCII as is, except " and \ escaped and a ? next to another
// ? escaped (no trigraph can form); \n \r \t by name; every other byte
// (controls, UTF-8 sequences) as a three-digit octal escape, which no
// following character can extend. A NUL byte is refused: it would end the
// string early on the device.
func cString(s string) (string, error) {
	inner, err := cContents(s, false, false, false)
	if err != nil {
		return "", err
	}
	return `"` + inner + `"`, nil
}

// cStringLines renders s as adjacent C string literals, one for each line
// of s (each ending in its \n escape), joined by a backslash-newline and a
// tab, so a multi-line value such as a PEM chain stays legible inside a
// #define. The C compiler joins the literals into one string.
func cStringLines(s string) (string, error) {
	if s == "" {
		return `""`, nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	parts := make([]string, len(lines))
	for i, l := range lines {
		q, err := cString(l)
		if err != nil {
			return "", err
		}
		parts[i] = q
	}
	return strings.Join(parts, " \\\n\t"), nil
}

// cMacro turns a key into the tail of a C macro name: ASCII letters,
// digits and _ only, upper-cased.
func cMacro(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty name cannot be part of a C macro name")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return "", fmt.Errorf("name %q cannot be part of a C macro name: character %q; use letters, digits and _", s, c)
		}
	}
	return strings.ToUpper(s), nil
}

// csvField renders s as one CSV field (RFC 4180): quoted, with quotes
// doubled, when it holds a comma, a quote, a line break, begins with
// white space or begins with # (which would make a line that starts with it
// a comment to some readers).
func csvField(s string) string {
	if s == "" || !strings.ContainsAny(s, ",\"\r\n") && s[0] != ' ' && s[0] != '\t' && s[0] != '#' {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// NVS limits, from ESP-IDF's nvs_partition_gen.py (see validateNVSCSV).
const (
	nvsMaxKey    = 15   // characters in a key or a namespace name
	nvsMaxString = 4000 // bytes in a string value, with the NUL the tool appends
)

// nvsString renders s as the CSV value of an NVS "string" entry,
// refusing values that nvs_partition_gen cannot store unchanged: longer
// than 3999 bytes (4000 with its NUL), holding a NUL, a carriage return
// (the tool reads the file in text mode, which turns it into a newline), a
// non-ASCII character (the tool sizes entries in characters but writes
// UTF-8 bytes) or a line that starts with # (the tool drops such lines
// before it parses the CSV, even inside a quoted value).
func nvsString(s string) (string, error) {
	if err := checkNVSString(s); err != nil {
		return "", err
	}
	return csvField(s), nil
}

func checkNVSString(s string) error {
	if len(s)+1 > nvsMaxString {
		return fmt.Errorf("value is %d bytes; an NVS string holds at most %d (%d with its NUL)", len(s), nvsMaxString-1, nvsMaxString)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0:
			return fmt.Errorf("value holds a NUL byte at offset %d; an NVS string cannot", i)
		case c == '\r':
			return fmt.Errorf("value holds a carriage return at offset %d, which nvs_partition_gen reads as a newline", i)
		case c >= 0x80:
			return fmt.Errorf("value holds a non-ASCII byte at offset %d, which nvs_partition_gen cannot store in a string", i)
		case c == '#' && i > 0 && s[i-1] == '\n':
			return fmt.Errorf("value has a line starting with # at offset %d, which nvs_partition_gen drops as a comment", i)
		}
	}
	return nil
}

// nvsKey renders s as the key of an NVS entry or namespace, refusing keys
// that are empty, longer than 15 characters, or hold anything but printable
// ASCII without space, comma or quote, or begin with #.
func nvsKey(s string) (string, error) {
	if err := checkNVSKey(s); err != nil {
		return "", err
	}
	return s, nil
}

func checkNVSKey(s string) error {
	switch {
	case s == "":
		return errors.New("NVS key is empty")
	case len(s) > nvsMaxKey:
		return fmt.Errorf("NVS key %q is %d characters, at most %d", s, len(s), nvsMaxKey)
	case s[0] == '#':
		return fmt.Errorf("NVS key %q starts with #, which makes its line a comment", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ',' || c == '"' {
			return fmt.Errorf("NVS key %q: character %q; use printable ASCII without space, comma or quote", s, c)
		}
	}
	return nil
}

// fileURI returns s as a URI: an absolute path becomes a file:// URI; a
// string that already is a URI with a scheme (file:, pkcs11:, ...) is
// returned as is.
func fileURI(s string) (string, error) {
	if strings.HasPrefix(s, "/") {
		if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			return "", fmt.Errorf("path %q holds a control character", s)
		}
		return (&url.URL{Scheme: "file", Path: s}).String(), nil
	}
	u, err := url.Parse(s)
	if err != nil || len(u.Scheme) < 2 {
		return "", fmt.Errorf("%q is neither an absolute path nor a URI", s)
	}
	return s, nil
}
