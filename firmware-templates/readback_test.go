package fwtemplates

// Test helpers that read rendered output back with parsers independent of
// the templates (encoding/json, BurntSushi/toml, encoding/csv, a small C
// literal decoder checked against gcc) and compare it with the Data that
// was rendered.

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
)

// want returns the values a built-in template must carry for d, keyed by
// Data field name ("Custom.NAME" for a custom field).
func want(name string, d Data) map[string]string {
	m := map[string]string{
		"IDScope":        d.IDScope,
		"GlobalEndpoint": d.GlobalEndpoint,
		"RegistrationID": d.RegistrationID,
		"Attestation":    d.Attestation,
	}
	all := name != "aziot-toml" // aziot's section has only the provisioning settings
	if all {
		m["Serial"] = d.Serial
		m["Model"] = d.Model
		if d.DeviceID != "" {
			m["DeviceID"] = d.DeviceID
		}
		for k, v := range d.Custom {
			if name == "c-header" {
				k = strings.ToUpper(k)
			}
			m["Custom."+k] = v
		}
	}
	switch d.Attestation {
	case AttestationX509:
		if all {
			m["CertificateChain"] = d.CertificateChain
		}
		if d.CertificatePath != "" {
			m["CertificatePath"] = d.CertificatePath
		}
		if d.KeyURI != "" {
			m["KeyURI"] = d.KeyURI
		}
	case AttestationSymmetricKey:
		m["DerivedKey"] = d.DerivedKey
	}
	return m
}

// checkReadBack reads out, rendered by the built-in template name from d,
// back with the format's own parser and reports any value that differs.
func checkReadBack(t testing.TB, name string, d Data, out []byte) {
	t.Helper()
	var (
		got map[string]string
		err error
	)
	switch name {
	case "json":
		got, err = readJSON(out)
	case "aziot-toml":
		got, err = readAziot(out, d)
	case "c-header":
		got, err = readCHeader(out)
	case "esp-idf-nvs-csv":
		got, err = readNVSCSV(out)
	default:
		t.Fatalf("no reader for template %q", name)
	}
	if err != nil {
		t.Fatalf("%s output does not read back: %v\n%s", name, err, out)
	}
	if diff := cmp.Diff(want(name, d), got); diff != "" {
		t.Errorf("%s output read back differs from the Data rendered (-want +got):\n%s\noutput:\n%s", name, diff, out)
	}
}

func readJSON(out []byte) (map[string]string, error) {
	var doc struct {
		Provisioning struct {
			GlobalEndpoint string  `json:"globalEndpoint"`
			IDScope        string  `json:"idScope"`
			RegistrationID string  `json:"registrationId"`
			DeviceID       *string `json:"deviceId"`
			Attestation    struct {
				Type             string  `json:"type"`
				CertificateChain *string `json:"certificateChain"`
				CertificatePath  *string `json:"certificatePath"`
				KeyURI           *string `json:"keyUri"`
				SymmetricKey     *string `json:"symmetricKey"`
			} `json:"attestation"`
		} `json:"provisioning"`
		Device struct {
			Serial string `json:"serial"`
			Model  string `json:"model"`
		} `json:"device"`
		Custom map[string]string `json:"custom"`
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the JSON document")
	}
	p := doc.Provisioning
	m := map[string]string{
		"IDScope":        p.IDScope,
		"GlobalEndpoint": p.GlobalEndpoint,
		"RegistrationID": p.RegistrationID,
		"Attestation":    p.Attestation.Type,
		"Serial":         doc.Device.Serial,
		"Model":          doc.Device.Model,
	}
	opt := func(k string, v *string) {
		if v != nil {
			m[k] = *v
		}
	}
	opt("DeviceID", p.DeviceID)
	opt("CertificateChain", p.Attestation.CertificateChain)
	opt("CertificatePath", p.Attestation.CertificatePath)
	opt("KeyURI", p.Attestation.KeyURI)
	opt("DerivedKey", p.Attestation.SymmetricKey)
	for k, v := range doc.Custom {
		m["Custom."+k] = v
	}
	return m, nil
}

// aziotConfig is the part of aziot's config.toml the template writes, as
// Azure/iot-identity-service's super_config.rs reads it.
type aziotConfig struct {
	Provisioning struct {
		Source         string `toml:"source"`
		GlobalEndpoint string `toml:"global_endpoint"`
		IDScope        string `toml:"id_scope"`
		Attestation    struct {
			Method         string  `toml:"method"`
			RegistrationID string  `toml:"registration_id"`
			IdentityCert   *string `toml:"identity_cert"`
			IdentityPK     *string `toml:"identity_pk"`
			SymmetricKey   *struct {
				Value string `toml:"value"`
			} `toml:"symmetric_key"`
		} `toml:"attestation"`
	} `toml:"provisioning"`
}

func readAziot(out []byte, d Data) (map[string]string, error) {
	var c aziotConfig
	md, err := toml.Decode(string(out), &c)
	if err != nil {
		return nil, err
	}
	if u := md.Undecoded(); len(u) > 0 {
		return nil, fmt.Errorf("keys aziot does not know: %v", u)
	}
	p := c.Provisioning
	if p.Source != "dps" {
		return nil, fmt.Errorf("source = %q, want dps", p.Source)
	}
	ep, err := url.Parse(p.GlobalEndpoint)
	if err != nil || ep.Scheme != "https" || ep.Path != "/" {
		return nil, fmt.Errorf("global_endpoint %q is not https://HOST/ (%v)", p.GlobalEndpoint, err)
	}
	methods := map[string]string{"tpm": AttestationTPM, "x509": AttestationX509, "symmetric_key": AttestationSymmetricKey}
	a := p.Attestation
	m := map[string]string{
		"IDScope":        p.IDScope,
		"GlobalEndpoint": strings.TrimSuffix(strings.TrimPrefix(p.GlobalEndpoint, "https://"), "/"),
		"RegistrationID": a.RegistrationID,
		"Attestation":    methods[a.Method],
	}
	// aziot takes locations as URLs: a path the station gave comes back
	// as a file URL whose path must be that path.
	loc := func(field, given string, v *string) error {
		if v == nil {
			return nil
		}
		if !strings.HasPrefix(given, "/") {
			m[field] = *v
			return nil
		}
		u, err := url.Parse(*v)
		if err != nil || u.Scheme != "file" || u.Host != "" {
			return fmt.Errorf("%s %q is not a file URL (%v)", field, *v, err)
		}
		m[field] = u.Path
		return nil
	}
	if err := loc("CertificatePath", d.CertificatePath, a.IdentityCert); err != nil {
		return nil, err
	}
	if err := loc("KeyURI", d.KeyURI, a.IdentityPK); err != nil {
		return nil, err
	}
	if a.SymmetricKey != nil {
		m["DerivedKey"] = a.SymmetricKey.Value
	}
	return m, nil
}

// cMacros maps the header's macros to Data fields.
var cMacros = map[string]string{
	"DPS_GLOBAL_ENDPOINT":   "GlobalEndpoint",
	"DPS_ID_SCOPE":          "IDScope",
	"DPS_REGISTRATION_ID":   "RegistrationID",
	"DPS_DEVICE_ID":         "DeviceID",
	"DPS_ATTESTATION":       "Attestation",
	"DPS_CERTIFICATE_CHAIN": "CertificateChain",
	"DPS_CERTIFICATE_PATH":  "CertificatePath",
	"DPS_KEY_URI":           "KeyURI",
	"DPS_SYMMETRIC_KEY":     "DerivedKey",
	"DEVICE_SERIAL":         "Serial",
	"DEVICE_MODEL":          "Model",
}

// readCHeader decodes the string macros of a rendered header. It also
// checks that exactly one DPS_ATTESTATION_* flag matches DPS_ATTESTATION.
func readCHeader(out []byte) (map[string]string, error) {
	macros, err := decodeCDefines(string(out))
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	flags := 0
	for name, v := range macros {
		switch {
		case strings.HasPrefix(name, "DPS_ATTESTATION_"):
			if v.literal {
				return nil, fmt.Errorf("%s is a string", name)
			}
			flags++
			continue
		case name == "ZEROTOUCH_DPS_CONFIG_H":
			continue
		case !v.literal:
			return nil, fmt.Errorf("%s is not a string literal", name)
		case strings.HasPrefix(name, "DEVICE_CUSTOM_"):
			m["Custom."+strings.TrimPrefix(name, "DEVICE_CUSTOM_")] = v.value
		case cMacros[name] != "":
			m[cMacros[name]] = v.value
		default:
			return nil, fmt.Errorf("unexpected macro %s", name)
		}
	}
	flag := map[string]string{AttestationTPM: "TPM", AttestationX509: "X509", AttestationSymmetricKey: "SYMMETRIC_KEY"}[m["Attestation"]]
	if _, ok := macros["DPS_ATTESTATION_"+flag]; !ok || flags != 1 {
		return nil, fmt.Errorf("DPS_ATTESTATION_%s is not the one flag defined (%d flags)", flag, flags)
	}
	return m, nil
}

type cDefine struct {
	literal bool
	value   string
}

// decodeCDefines reads the object-like #defines of a header whose values
// are string literals (adjacent ones concatenated) or other tokens.
func decodeCDefines(src string) (map[string]cDefine, error) {
	src = strings.ReplaceAll(src, "\\\n", "")
	out := map[string]cDefine{}
	for i, line := range strings.Split(src, "\n") {
		rest, ok := strings.CutPrefix(line, "#define ")
		if !ok {
			continue
		}
		name, body, _ := strings.Cut(rest, " ")
		body = strings.TrimSpace(body)
		if !strings.HasPrefix(body, `"`) {
			out[name] = cDefine{value: body}
			continue
		}
		var v strings.Builder
		for body != "" {
			body = strings.TrimLeft(body, " \t")
			if body == "" {
				break
			}
			s, n, err := decodeCLiteral(body)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s: %v", i+1, name, err)
			}
			v.WriteString(s)
			body = body[n:]
		}
		out[name] = cDefine{literal: true, value: v.String()}
	}
	return out, nil
}

// decodeCLiteral decodes the C string literal at the start of s and
// returns its bytes and length in s.
func decodeCLiteral(s string) (string, int, error) {
	if s == "" || s[0] != '"' {
		return "", 0, fmt.Errorf("no string literal at %q", s)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), i + 1, nil
		case c == '\n':
			return "", 0, fmt.Errorf("newline in string literal")
		case c == '?' && i+2 < len(s) && s[i+1] == '?' && strings.IndexByte("=(/)'<!>-", s[i+2]) >= 0:
			return "", 0, fmt.Errorf("%q is a trigraph", s[i:i+3])
		case c != '\\':
			b.WriteByte(c)
			continue
		}
		i++
		if i == len(s) {
			break
		}
		switch e := s[i]; e {
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case '\\', '"', '?', '\'':
			b.WriteByte(e)
		default:
			if e < '0' || e > '7' {
				return "", 0, fmt.Errorf("escape \\%c", e)
			}
			j := i
			for j < len(s) && j < i+3 && s[j] >= '0' && s[j] <= '7' {
				j++
			}
			n, _ := strconv.ParseUint(s[i:j], 8, 16)
			if n > 0xff {
				return "", 0, fmt.Errorf("octal escape \\%s out of range", s[i:j])
			}
			b.WriteByte(byte(n))
			i = j - 1
		}
	}
	return "", 0, fmt.Errorf("string literal does not end")
}

// nvsFields maps the NVS entries in namespace azure_dps to Data fields.
var nvsFields = map[string]string{
	"global_endpoint": "GlobalEndpoint",
	"id_scope":        "IDScope",
	"registration_id": "RegistrationID",
	"device_id":       "DeviceID",
	"attestation":     "Attestation",
	"cert_chain":      "CertificateChain",
	"cert_path":       "CertificatePath",
	"key_uri":         "KeyURI",
	"symmetric_key":   "DerivedKey",
	"serial":          "Serial",
	"model":           "Model",
}

// readNVSCSV reads the CSV with encoding/csv (# comment lines skipped) and
// maps its string entries back to Data fields.
func readNVSCSV(out []byte) (map[string]string, error) {
	r := csv.NewReader(bytes.NewReader(out))
	r.Comment = '#'
	recs, err := r.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 || strings.Join(recs[0], ",") != "key,type,encoding,value" {
		return nil, fmt.Errorf("no header")
	}
	m := map[string]string{}
	ns := ""
	for _, rec := range recs[1:] {
		key, typ, enc, val := rec[0], rec[1], rec[2], rec[3]
		switch {
		case typ == "namespace":
			ns = key
		case typ != "data" || enc != "string":
			return nil, fmt.Errorf("entry %s is %s/%s, want data/string", key, typ, enc)
		case ns == "azure_dps" && nvsFields[key] != "":
			m[nvsFields[key]] = val
		case ns == "custom":
			m["Custom."+key] = val
		default:
			return nil, fmt.Errorf("unexpected entry %s in namespace %q", key, ns)
		}
	}
	return m, nil
}
