package board

// The configuration a board reads at first boot: the output of each
// built-in firmware template (firmware-templates/builtin), told apart by
// its content and read as the firmware it is written for would read it.

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/BurntSushi/toml"

	"zerotouch/internal/nvscsv"
)

// Configuration formats the board reads, named as the built-in templates
// that write them.
const (
	formatJSON      = "json"            // one JSON object with "provisioning"
	formatAziotTOML = "aziot-toml"      // aziot's config.toml, [provisioning]
	formatCHeader   = "c-header"        // C #defines, DPS_*
	formatNVSCSV    = "esp-idf-nvs-csv" // ESP-IDF NVS generator CSV, namespace azure_dps
)

// Attestations, as DPS spells them.
const (
	attTPM          = "tpm"
	attX509         = "x509"
	attSymmetricKey = "symmetricKey"
)

// bootConfig is what the board reads of its configuration, whatever the
// format.
type bootConfig struct {
	Format         string // one of the format constants
	GlobalEndpoint string // an https URL, no path
	IDScope        string
	// RegistrationID may be empty only in aziot-toml with x509, where
	// aziot takes the certificate's common name.
	RegistrationID string
	Attestation    string // attTPM, attX509 or attSymmetricKey
	// X.509: the PEM chain (device certificate first) when the
	// configuration holds it; else CertificatePath names the file on the
	// board that holds it. KeyURI says where the key is, when given.
	CertificateChain string
	CertificatePath  string
	KeyURI           string
	SymmetricKey     []byte // symmetricKey: the derived device key
}

// bootConfigError is a configuration the board cannot register with: a
// field its format needs is missing or holds a value it cannot use.
// Field is spelled as the format spells it (provisioning.id_scope in
// aziot-toml, DPS_ID_SCOPE in c-header).
type bootConfigError struct {
	Format string // "json", "aziot-toml", "c-header" or "esp-idf-nvs-csv"
	Field  string // empty when the whole file is at fault
	Err    error
}

func (e *bootConfigError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s configuration: %v", e.Format, e.Err)
	}
	return fmt.Sprintf("%s configuration: %s: %v", e.Format, e.Field, e.Err)
}

func (e *bootConfigError) Unwrap() error { return e.Err }

// errMissing is a field the configuration lacks.
var errMissing = errors.New("missing (the board needs it to register)")

// errUnknownFormat is a configuration that is none of the formats.
var errUnknownFormat = errors.New("the virtual board reads the built-in templates' formats only: a JSON object (json), TOML with a [provisioning] table (aziot-toml), C #defines (c-header) or an NVS CSV with the header key,type,encoding,value (esp-idf-nvs-csv)")

// fieldNames are a format's names for the fields check looks at.
type fieldNames struct {
	endpoint, scope, regID, attestation, chain, key string
}

var names = map[string]fieldNames{
	formatJSON: {"provisioning.globalEndpoint", "provisioning.idScope", "provisioning.registrationId", "provisioning.attestation.type",
		"provisioning.attestation.certificateChain (or certificatePath)", "provisioning.attestation.symmetricKey"},
	formatAziotTOML: {"provisioning.global_endpoint", "provisioning.id_scope", "provisioning.attestation.registration_id", "provisioning.attestation.method",
		"provisioning.attestation.identity_cert", "provisioning.attestation.symmetric_key.value"},
	formatCHeader: {"DPS_GLOBAL_ENDPOINT", "DPS_ID_SCOPE", "DPS_REGISTRATION_ID", "DPS_ATTESTATION",
		"DPS_CERTIFICATE_CHAIN (or DPS_CERTIFICATE_PATH)", "DPS_SYMMETRIC_KEY"},
	formatNVSCSV: {"azure_dps/global_endpoint", "azure_dps/id_scope", "azure_dps/registration_id", "azure_dps/attestation",
		"azure_dps/cert_chain (or cert_path)", "azure_dps/symmetric_key"},
}

// parseBootConfig reads a configuration in any of the formats, telling
// them apart by content: a JSON object; an NVS CSV (its first line that
// is not a # comment is key,type,encoding,value); a C header (a #define
// directive); TOML with a [provisioning] table. Errors are a
// *bootConfigError naming the format and the field.
func parseBootConfig(data []byte) (bootConfig, error) {
	format := detectFormat(data)
	var (
		bc  bootConfig
		err error
	)
	switch format {
	case formatJSON:
		bc, err = parseJSONConfig(data)
	case formatNVSCSV:
		bc, err = parseNVSConfig(data)
	case formatCHeader:
		bc, err = parseCHeaderConfig(data)
	case formatAziotTOML:
		bc, err = parseAziotConfig(data)
	default:
		return bc, &bootConfigError{Format: "unknown", Err: errUnknownFormat}
	}
	if err != nil {
		return bc, err
	}
	bc.Format = format
	return bc, bc.check()
}

var (
	cDefineRE   = regexp.MustCompile(`(?m)^[ \t]*#[ \t]*define[ \t]`)
	tomlTableRE = regexp.MustCompile(`(?m)^[ \t]*\[[ \t]*provisioning[ \t]*\][ \t]*(#.*)?\r?$`)
)

// detectFormat returns the format of data, or "".
func detectFormat(data []byte) string {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return formatJSON
	}
	for _, l := range strings.Split(nvscsv.ToolText(data), "\n") {
		if l == "" {
			continue
		}
		if l == "key,type,encoding,value" {
			return formatNVSCSV
		}
		break
	}
	if cDefineRE.Match(data) {
		return formatCHeader
	}
	if tomlTableRE.Match(data) {
		return formatAziotTOML
	}
	return ""
}

// check fills in what the format leaves implicit and refuses what the
// board cannot register with.
func (bc *bootConfig) check() error {
	n := names[bc.Format]
	bad := func(field string, err error) error {
		return &bootConfigError{Format: bc.Format, Field: field, Err: err}
	}
	if bc.Attestation == "" {
		return bad(n.attestation, errMissing)
	}
	if bc.GlobalEndpoint == "" {
		return bad(n.endpoint, errMissing)
	}
	ep, err := endpointURL(bc.GlobalEndpoint)
	if err != nil {
		return bad(n.endpoint, err)
	}
	bc.GlobalEndpoint = ep
	if bc.IDScope == "" {
		return bad(n.scope, errMissing)
	}
	if bc.RegistrationID == "" && !(bc.Format == formatAziotTOML && bc.Attestation == attX509) {
		return bad(n.regID, errMissing)
	}
	switch bc.Attestation {
	case attTPM:
	case attX509:
		if bc.CertificateChain == "" && bc.CertificatePath == "" {
			return bad(n.chain, errMissing)
		}
	case attSymmetricKey:
		if len(bc.SymmetricKey) == 0 {
			return bad(n.key, errMissing)
		}
	default:
		return bad(n.attestation, fmt.Errorf("%q is not tpm, x509 or symmetricKey", bc.Attestation))
	}
	return nil
}

// endpointURL returns the DPS global endpoint s, a host name or an https
// URL, as an https URL without a path.
func endpointURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" ||
		strings.Trim(u.Path, "/") != "" || strings.ContainsAny(u.Host, " \t\r\n") {
		return "", fmt.Errorf("%q is neither a host name nor an https URL of one", s)
	}
	return "https://" + u.Host, nil
}

// decodeKey decodes a base64 symmetric key.
func decodeKey(format, field, s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, &bootConfigError{Format: format, Field: field, Err: fmt.Errorf("not base64: %w", err)}
	}
	return k, nil
}

// parseJSONConfig reads the json template's document.
func parseJSONConfig(data []byte) (bootConfig, error) {
	var doc struct {
		Provisioning *struct {
			GlobalEndpoint string `json:"globalEndpoint"`
			IDScope        string `json:"idScope"`
			RegistrationID string `json:"registrationId"`
			Attestation    *struct {
				Type             string `json:"type"`
				CertificateChain string `json:"certificateChain"`
				CertificatePath  string `json:"certificatePath"`
				KeyURI           string `json:"keyUri"`
				SymmetricKey     string `json:"symmetricKey"`
			} `json:"attestation"`
		} `json:"provisioning"`
	}
	var bc bootConfig
	if err := json.Unmarshal(data, &doc); err != nil {
		return bc, &bootConfigError{Format: formatJSON, Err: err}
	}
	p := doc.Provisioning
	if p == nil {
		return bc, &bootConfigError{Format: formatJSON, Field: "provisioning", Err: errMissing}
	}
	if p.Attestation == nil {
		return bc, &bootConfigError{Format: formatJSON, Field: "provisioning.attestation", Err: errMissing}
	}
	a := p.Attestation
	bc = bootConfig{GlobalEndpoint: p.GlobalEndpoint, IDScope: p.IDScope, RegistrationID: p.RegistrationID, Attestation: a.Type,
		CertificateChain: a.CertificateChain, CertificatePath: a.CertificatePath, KeyURI: a.KeyURI}
	var err error
	bc.SymmetricKey, err = decodeKey(formatJSON, names[formatJSON].key, a.SymmetricKey)
	return bc, err
}

// parseAziotConfig reads the [provisioning] table of aziot's
// config.toml (Azure/iot-identity-service, aziotctl-common's
// super_config.rs): source "dps", global_endpoint a URL, the attestation
// method tpm, x509 (identity_cert the file:// URI of the certificate,
// identity_pk the key's URI) or symmetric_key (its value inline).
func parseAziotConfig(data []byte) (bootConfig, error) {
	var doc struct {
		Provisioning *struct {
			Source         string `toml:"source"`
			GlobalEndpoint string `toml:"global_endpoint"`
			IDScope        string `toml:"id_scope"`
			Attestation    *struct {
				Method         string `toml:"method"`
				RegistrationID string `toml:"registration_id"`
				IdentityCert   string `toml:"identity_cert"`
				IdentityPK     string `toml:"identity_pk"`
				SymmetricKey   *struct {
					Value string `toml:"value"`
				} `toml:"symmetric_key"`
			} `toml:"attestation"`
		} `toml:"provisioning"`
	}
	var bc bootConfig
	bad := func(field string, err error) error {
		return &bootConfigError{Format: formatAziotTOML, Field: field, Err: err}
	}
	if !utf8.Valid(data) {
		return bc, bad("", errors.New("not valid UTF-8"))
	}
	if _, err := toml.Decode(string(data), &doc); err != nil {
		return bc, bad("", err)
	}
	p := doc.Provisioning
	switch {
	case p == nil:
		return bc, bad("provisioning", errMissing)
	case p.Source != "dps":
		return bc, bad("provisioning.source", fmt.Errorf("%q, want \"dps\"", p.Source))
	case p.Attestation == nil:
		return bc, bad("provisioning.attestation", errMissing)
	}
	a := p.Attestation
	bc = bootConfig{GlobalEndpoint: p.GlobalEndpoint, IDScope: p.IDScope, RegistrationID: a.RegistrationID}
	switch a.Method {
	case "tpm":
		bc.Attestation = attTPM
	case "x509":
		bc.Attestation = attX509
		if a.IdentityCert == "" {
			return bc, bad("provisioning.attestation.identity_cert", errMissing)
		}
		path, err := filePath(a.IdentityCert)
		if err != nil {
			return bc, bad("provisioning.attestation.identity_cert", err)
		}
		bc.CertificatePath, bc.KeyURI = path, a.IdentityPK
	case "symmetric_key":
		bc.Attestation = attSymmetricKey
		if a.SymmetricKey == nil {
			return bc, bad("provisioning.attestation.symmetric_key", errMissing)
		}
		var err error
		if bc.SymmetricKey, err = decodeKey(formatAziotTOML, "provisioning.attestation.symmetric_key.value", a.SymmetricKey.Value); err != nil {
			return bc, err
		}
	case "":
	default:
		return bc, bad("provisioning.attestation.method", fmt.Errorf("%q is not tpm, x509 or symmetric_key", a.Method))
	}
	return bc, nil
}

// filePath returns the path of a file:// URI (or an absolute path as it
// is).
func filePath(s string) (string, error) {
	if strings.HasPrefix(s, "/") {
		return s, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "file" || u.Host != "" && u.Host != "localhost" || !strings.HasPrefix(u.Path, "/") || u.RawQuery != "" {
		return "", fmt.Errorf("%q is not a file:// URI of an absolute path", s)
	}
	return u.Path, nil
}

// parseNVSConfig reads the namespace azure_dps of an NVS CSV as ESP-IDF's
// nvs_partition_gen.py does: newlines as in Python's text mode, lines
// that start with # dropped before the CSV is read, the first row the
// header key,type,encoding,value, a namespace row starting the namespace
// of the rows after it. Only string data entries are read.
func parseNVSConfig(data []byte) (bootConfig, error) {
	var bc bootConfig
	bad := func(line int, field string, err error) error {
		if line > 0 {
			err = fmt.Errorf("line %d: %w", line, err)
		}
		return &bootConfigError{Format: formatNVSCSV, Field: field, Err: err}
	}
	if !utf8.Valid(data) {
		return bc, bad(0, "", errors.New("not valid UTF-8"))
	}
	r := csv.NewReader(strings.NewReader(nvscsv.ToolText(data)))
	r.FieldsPerRecord = -1
	header := true
	ns := ""
	entries := map[string]string{}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return bc, bad(0, "", err)
		}
		line, _ := r.FieldPos(0)
		if header {
			if strings.Join(rec, ",") != "key,type,encoding,value" {
				return bc, bad(line, "", fmt.Errorf("header %q, want key,type,encoding,value", strings.Join(rec, ",")))
			}
			header = false
			continue
		}
		if len(rec) != 4 {
			return bc, bad(line, "", fmt.Errorf("%d fields, want 4 (key,type,encoding,value)", len(rec)))
		}
		key, typ, enc, val := rec[0], rec[1], rec[2], rec[3]
		switch {
		case typ == "namespace":
			ns = key
			continue
		case ns != "azure_dps":
			continue
		case typ != "data" || enc != "string":
			return bc, bad(line, "azure_dps/"+key, fmt.Errorf("a %s entry with encoding %s; the board reads string data", typ, enc))
		}
		if _, dup := entries[key]; dup {
			return bc, bad(line, "azure_dps/"+key, errors.New("set twice"))
		}
		entries[key] = val
	}
	if header {
		return bc, bad(0, "", errors.New("no header row key,type,encoding,value"))
	}
	bc = bootConfig{GlobalEndpoint: entries["global_endpoint"], IDScope: entries["id_scope"], RegistrationID: entries["registration_id"],
		Attestation: entries["attestation"], CertificateChain: entries["cert_chain"], CertificatePath: entries["cert_path"], KeyURI: entries["key_uri"]}
	var err error
	bc.SymmetricKey, err = decodeKey(formatNVSCSV, names[formatNVSCSV].key, entries["symmetric_key"])
	return bc, err
}

// parseCHeaderConfig reads the DPS_* macros of a C header as a firmware
// compiled with it sees them: lines joined at a backslash-newline
// (translation phase 2), comments dropped, each macro's value a sequence
// of string literals that the compiler joins (C17 5.1.1.2, 6.4.5). The
// attestation is the DPS_ATTESTATION_TPM, _X509 or _SYMMETRIC_KEY macro
// that is defined, which must agree with DPS_ATTESTATION when both are.
func parseCHeaderConfig(data []byte) (bootConfig, error) {
	var bc bootConfig
	bad := func(field string, err error) error {
		return &bootConfigError{Format: formatCHeader, Field: field, Err: err}
	}
	macros, err := cMacros(string(data))
	if err != nil {
		return bc, bad("", err)
	}
	str := func(name string) (string, error) {
		m, ok := macros[name]
		if !ok {
			return "", nil
		}
		s, err := cStringValue(m)
		if err != nil {
			return "", bad(name, err)
		}
		return s, nil
	}
	fields := []struct {
		name string
		to   *string
	}{
		{"DPS_GLOBAL_ENDPOINT", &bc.GlobalEndpoint},
		{"DPS_ID_SCOPE", &bc.IDScope},
		{"DPS_REGISTRATION_ID", &bc.RegistrationID},
		{"DPS_ATTESTATION", &bc.Attestation},
		{"DPS_CERTIFICATE_CHAIN", &bc.CertificateChain},
		{"DPS_CERTIFICATE_PATH", &bc.CertificatePath},
		{"DPS_KEY_URI", &bc.KeyURI},
	}
	for _, f := range fields {
		if *f.to, err = str(f.name); err != nil {
			return bc, err
		}
	}
	var flagged, att []string
	for _, f := range []struct{ macro, att string }{
		{"DPS_ATTESTATION_TPM", attTPM}, {"DPS_ATTESTATION_X509", attX509}, {"DPS_ATTESTATION_SYMMETRIC_KEY", attSymmetricKey},
	} {
		if _, ok := macros[f.macro]; ok {
			flagged, att = append(flagged, f.macro), append(att, f.att)
		}
	}
	switch {
	case len(flagged) > 1:
		return bc, bad(strings.Join(flagged, ", "), errors.New("more than one attestation is defined"))
	case len(flagged) == 1 && bc.Attestation != "" && bc.Attestation != att[0]:
		return bc, bad(flagged[0], fmt.Errorf("defined, while DPS_ATTESTATION is %q", bc.Attestation))
	case len(flagged) == 1:
		bc.Attestation = att[0]
	}
	key, err := str("DPS_SYMMETRIC_KEY")
	if err != nil {
		return bc, err
	}
	bc.SymmetricKey, err = decodeKey(formatCHeader, "DPS_SYMMETRIC_KEY", key)
	return bc, err
}

// cMacros returns the object-like macros a C source defines, each with
// its replacement text (comments replaced by a space, string literals as
// written). A macro defined twice is an error.
func cMacros(src string) (map[string]string, error) {
	if strings.IndexByte(src, 0) >= 0 {
		return nil, errors.New("holds a NUL byte")
	}
	// Translation phase 2: a backslash at the end of a line joins it to
	// the next.
	src = strings.ReplaceAll(src, "\r\n", "\n")
	src = strings.ReplaceAll(src, "\\\n", "")
	macros := map[string]string{}
	inComment := false
	for n, line := range strings.Split(src, "\n") {
		var text strings.Builder // the line, comments replaced by a space
		for i := 0; i < len(line); {
			switch {
			case inComment:
				end := strings.Index(line[i:], "*/")
				if end < 0 {
					i = len(line)
					continue
				}
				inComment = false
				i += end + 2
				text.WriteByte(' ')
			case strings.HasPrefix(line[i:], "/*"):
				inComment = true
				i += 2
			case strings.HasPrefix(line[i:], "//"):
				i = len(line)
			case line[i] == '"' || line[i] == '\'':
				end, err := literalEnd(line[i:])
				if err != nil {
					return nil, fmt.Errorf("logical line %d: %w", n+1, err)
				}
				text.WriteString(line[i : i+end])
				i += end
			default:
				text.WriteByte(line[i])
				i++
			}
		}
		t := strings.TrimLeft(text.String(), " \t")
		if !strings.HasPrefix(t, "#") {
			continue
		}
		t = strings.TrimLeft(t[1:], " \t")
		if !strings.HasPrefix(t, "define") || len(t) == 6 || t[6] != ' ' && t[6] != '\t' {
			continue
		}
		t = strings.TrimLeft(t[6:], " \t")
		name := t
		if i := strings.IndexFunc(t, func(r rune) bool {
			return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		}); i >= 0 {
			name = t[:i]
		}
		rest := t[len(name):]
		if name == "" || strings.HasPrefix(rest, "(") {
			continue // not an object-like macro
		}
		if _, dup := macros[name]; dup {
			return nil, fmt.Errorf("logical line %d: macro %s is defined twice", n+1, name)
		}
		macros[name] = strings.TrimSpace(rest)
	}
	if inComment {
		return nil, errors.New("a /* comment does not end")
	}
	return macros, nil
}

// literalEnd returns the length of the string or character literal at the
// start of s.
func literalEnd(s string) (int, error) {
	q := s[0]
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case q:
			return i + 1, nil
		case '\\':
			i++
		}
	}
	return 0, fmt.Errorf("a %c literal does not end on its line", q)
}

// cStringValue returns the string a macro's replacement text stands for:
// one or more adjacent string literals, joined, their escapes decoded
// (C17 6.4.4.4).
func cStringValue(text string) (string, error) {
	var b strings.Builder
	s := strings.TrimSpace(text)
	if s == "" || s[0] != '"' {
		return "", fmt.Errorf("%q is not a string literal", text)
	}
	for s != "" {
		if s[0] != '"' {
			return "", fmt.Errorf("%q follows the string literals", s)
		}
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] != '\\' {
				b.WriteByte(s[i])
				continue
			}
			n, err := cEscape(s[i:], &b)
			if err != nil {
				return "", err
			}
			i += n - 1
		}
		if i == len(s) {
			return "", errors.New("a string literal does not end")
		}
		s = strings.TrimLeft(s[i+1:], " \t")
	}
	return b.String(), nil
}

// cEscape decodes the escape sequence at the start of s (which starts
// with a backslash) into b and returns its length.
func cEscape(s string, b *strings.Builder) (int, error) {
	if len(s) < 2 {
		return 0, errors.New("a string literal ends in a backslash")
	}
	simple := map[byte]byte{'\'': '\'', '"': '"', '?': '?', '\\': '\\', 'a': '\a', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v'}
	c := s[1]
	if v, ok := simple[c]; ok {
		b.WriteByte(v)
		return 2, nil
	}
	switch {
	case c >= '0' && c <= '7':
		n := 1
		for n < 3 && 1+n < len(s) && s[1+n] >= '0' && s[1+n] <= '7' {
			n++
		}
		v, _ := strconv.ParseUint(s[1:1+n], 8, 16)
		if v > 0xff {
			return 0, fmt.Errorf("octal escape \\%s is out of range for a char", s[1:1+n])
		}
		b.WriteByte(byte(v))
		return 1 + n, nil
	case c == 'x':
		n := 0
		for 2+n < len(s) && isHex(s[2+n]) {
			n++
		}
		v, err := strconv.ParseUint(s[2:2+n], 16, 8)
		if n == 0 || err != nil {
			return 0, fmt.Errorf("hex escape \\x%s is not a char", s[2:2+n])
		}
		b.WriteByte(byte(v))
		return 2 + n, nil
	case c == 'u' || c == 'U':
		n := 4
		if c == 'U' {
			n = 8
		}
		if len(s) < 2+n {
			return 0, fmt.Errorf("\\%c without its %d hex digits", c, n)
		}
		v, err := strconv.ParseUint(s[2:2+n], 16, 32)
		if err != nil || !utf8.ValidRune(rune(v)) {
			return 0, fmt.Errorf("\\%c%s is not a character", c, s[2:2+n])
		}
		b.WriteRune(rune(v))
		return 2 + n, nil
	}
	return 0, fmt.Errorf("unknown escape \\%c", c)
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
