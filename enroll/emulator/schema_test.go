package emulator

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The subset of Swagger 2.0 (JSON schema draft 4) the DPS service
// specification uses, and a checker for it: $ref, type (object, array,
// string, integer, boolean), format (date-time, byte, int32), enum, required,
// properties, additionalProperties, items and minLength.
//
// Two rules go past JSON schema, as the specification is read by
// AutoRest, Azure's own code generator:
//   - an object's properties are those the schema names (or, with
//     additionalProperties, any): a name the schema does not know is an
//     error, so that a misspelt or extra property is caught;
//   - {"type": "object"} with neither properties nor additionalProperties
//     is an untyped value (a twin's tag, a custom allocation payload):
//     anything goes.

// specDoc is a service.json: its operations and definitions.
type specDoc struct {
	Swagger string `json:"swagger"`
	Info    struct {
		Title   string `json:"title"`
		Version string `json:"version"`
	} `json:"info"`
	Paths       map[string]map[string]specOperation `json:"paths"`
	Definitions map[string]*specSchema              `json:"definitions"`
}

type specOperation struct {
	OperationID string                  `json:"operationId"`
	Responses   map[string]specResponse `json:"responses"`
}

type specResponse struct {
	Schema *specSchema `json:"schema"`
}

type specSchema struct {
	Ref                  string                 `json:"$ref"`
	Type                 string                 `json:"type"`
	Format               string                 `json:"format"`
	Enum                 []string               `json:"enum"`
	Required             []string               `json:"required"`
	Properties           map[string]*specSchema `json:"properties"`
	AdditionalProperties json.RawMessage        `json:"additionalProperties"`
	Items                *specSchema            `json:"items"`
	MinLength            *int                   `json:"minLength"`
	Default              json.RawMessage        `json:"default"`  // not checked: answers carry values
	ReadOnly             bool                   `json:"readOnly"` // not checked: answers carry them
}

func loadSpec(t *testing.T, file string) *specDoc {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var d specDoc
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v (a keyword the checker does not know?)", file, err)
	}
	return &d
}

// operation finds the operation of method on path (the path as sent,
// without its query), literal segments before {id}.
func (d *specDoc) operation(method, path string) (string, *specOperation) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	var best string
	bestLiterals := -1
	for tmpl := range d.Paths {
		ts := strings.Split(strings.Trim(tmpl, "/"), "/")
		if len(ts) != len(segs) {
			continue
		}
		literals, ok := 0, true
		for i, s := range ts {
			switch {
			case strings.HasPrefix(s, "{"):
			case strings.EqualFold(s, segs[i]):
				literals++
			default:
				ok = false
			}
		}
		if _, has := d.Paths[tmpl][strings.ToLower(method)]; ok && has && literals > bestLiterals {
			best, bestLiterals = tmpl, literals
		}
	}
	if best == "" {
		return "", nil
	}
	op := d.Paths[best][strings.ToLower(method)]
	return best, &op
}

// checkAnswer checks an answer to method on path against the operation's
// responses: a status it lists (an error status may fall to "default"),
// and a body of the schema given for it; none for a response without one.
func (d *specDoc) checkAnswer(method, path string, status int, body []byte) []string {
	tmpl, op := d.operation(method, path)
	if op == nil {
		return []string{fmt.Sprintf("%s %s: no such operation in service.json %s", method, path, d.Info.Version)}
	}
	r, ok := op.Responses[strconv.Itoa(status)]
	if !ok {
		if status < 400 {
			return []string{fmt.Sprintf("%s (%s): status %d is not one of its responses %v", op.OperationID, tmpl, status, keys(op.Responses))}
		}
		r, ok = op.Responses["default"]
		if !ok {
			return []string{fmt.Sprintf("%s: error status %d and no default response", op.OperationID, status)}
		}
	}
	if r.Schema == nil {
		if len(bytes.TrimSpace(body)) != 0 {
			return []string{fmt.Sprintf("%s: status %d has no body in the specification, the answer has %q", op.OperationID, status, body)}
		}
		return nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return []string{fmt.Sprintf("%s: status %d: body %q is not JSON: %v", op.OperationID, status, body, err)}
	}
	var errs []string
	d.check(r.Schema, v, op.OperationID, &errs)
	return errs
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (d *specDoc) resolve(s *specSchema) (*specSchema, string) {
	name := ""
	for s != nil && s.Ref != "" {
		name = strings.TrimPrefix(s.Ref, "#/definitions/")
		next, ok := d.Definitions[name]
		if !ok {
			return nil, name
		}
		s = next
	}
	return s, name
}

// check appends to errs what in v (decoded with UseNumber) does not
// hold to s; at names where in the answer.
func (d *specDoc) check(s *specSchema, v any, at string, errs *[]string) {
	fail := func(format string, args ...any) { *errs = append(*errs, at+": "+fmt.Sprintf(format, args...)) }
	s, name := d.resolve(s)
	if s == nil {
		fail("$ref %q is not defined", name)
		return
	}
	switch s.Type {
	case "object", "":
		if s.Type == "" && len(s.Properties) == 0 && s.AdditionalProperties == nil {
			return // {}: anything
		}
		m, ok := v.(map[string]any)
		if !ok {
			if len(s.Properties) == 0 && s.AdditionalProperties == nil {
				return // an untyped value
			}
			fail("%s is not an object", describe(v))
			return
		}
		if len(s.Properties) == 0 && s.AdditionalProperties == nil {
			return
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				fail("required property %q is missing", r)
			}
		}
		for k, pv := range m {
			if ps, ok := s.Properties[k]; ok {
				d.check(ps, pv, at+"."+k, errs)
				continue
			}
			if s.AdditionalProperties == nil {
				fail("property %q is not in the specification's %s (it has %v)", k, name, keys(s.Properties))
				continue
			}
			var as specSchema
			if err := json.Unmarshal(s.AdditionalProperties, &as); err != nil {
				fail("additionalProperties: %v", err)
				continue
			}
			d.check(&as, pv, at+"."+k, errs)
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			fail("%s is not an array", describe(v))
			return
		}
		for i, e := range a {
			d.check(s.Items, e, fmt.Sprintf("%s[%d]", at, i), errs)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			fail("%s is not a string", describe(v))
			return
		}
		if len(s.Enum) > 0 && !slices.Contains(s.Enum, str) {
			fail("%q is not one of %q", str, s.Enum)
		}
		if s.MinLength != nil && len(str) < *s.MinLength {
			fail("%q is shorter than %d", str, *s.MinLength)
		}
		switch s.Format {
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				fail("%q is not an RFC 3339 date-time", str)
			}
		case "byte":
			if _, err := base64.StdEncoding.DecodeString(str); err != nil {
				fail("%q is not base64", describe(str))
			}
		}
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			fail("%s is not an integer", describe(v))
			return
		}
		i, err := n.Int64()
		if err != nil {
			fail("%s is not an integer", n)
			return
		}
		if s.Format == "int32" && (i < math.MinInt32 || i > math.MaxInt32) {
			fail("%d is out of int32", i)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			fail("%s is not a boolean", describe(v))
		}
	default:
		fail("schema type %q is not one the checker knows", s.Type)
	}
}

func describe(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 80 {
		b = append(b[:80], "..."...)
	}
	return string(b)
}

// TestSchemaChecker checks the checker on answers made to fail: a test
// that passes whatever the emulator answers proves nothing.
func TestSchemaChecker(t *testing.T) {
	d := loadSpec(t, "testdata/spec/service-2026-04-01.json")
	good := `{"registrationId":"a","attestation":{"type":"tpm","tpm":{"endorsementKey":"ZWs="}},"capabilities":{"iotEdge":false},` +
		`"reprovisionPolicy":{"updateHubAssignment":true,"migrateDeviceData":true},"initialTwin":{"tags":{"line":"A"}},"createdDateTimeUtc":"2026-03-01T12:00:00Z"}`
	if errs := d.checkAnswer("GET", "/enrollments/a", 200, []byte(good)); len(errs) != 0 {
		t.Fatalf("a valid enrollment: %q", errs)
	}
	bad := []struct {
		name, method, path string
		status             int
		body, want         string
	}{
		{"unknown property", "GET", "/enrollments/a", 200, `{"registrationId":"a","attestation":{"type":"tpm"},"bogus":1}`, `"bogus" is not in`},
		{"required missing", "GET", "/enrollments/a", 200, `{"attestation":{"type":"tpm"}}`, `"registrationId" is missing`},
		{"enum", "GET", "/enrollments/a", 200, `{"registrationId":"a","attestation":{"type":"TPM"}}`, `"TPM" is not one of`},
		{"type", "GET", "/enrollments/a", 200, `{"registrationId":"a","attestation":{"type":"tpm"},"capabilities":{"iotEdge":"no"}}`, "not a boolean"},
		{"date-time", "GET", "/enrollments/a", 200, `{"registrationId":"a","attestation":{"type":"tpm"},"createdDateTimeUtc":"yesterday"}`, "RFC 3339"},
		{"nested required", "GET", "/enrollments/a", 200, `{"registrationId":"a","attestation":{"type":"tpm"},"reprovisionPolicy":{}}`, `"migrateDeviceData" is missing`},
		{"minLength", "POST", "/enrollments", 200, `{"isSuccessful":false,"errors":[{"registrationId":"","errorCode":1,"errorStatus":"x"}]}`, "shorter than 1"},
		{"int32", "POST", "/enrollments", 200, `{"isSuccessful":false,"errors":[{"registrationId":"a","errorCode":4294967296,"errorStatus":"x"}]}`, "out of int32"},
		{"array", "POST", "/enrollments/query", 200, `{"registrationId":"a"}`, "not an array"},
		{"status not listed", "GET", "/enrollments/a", 201, `{}`, "status 201 is not one"},
		{"body where none", "DELETE", "/enrollments/a", 204, `{}`, "has no body"},
		{"error body", "DELETE", "/enrollments/a", 404, `{"errorCode":"404201"}`, "not an integer"},
		{"no operation", "PATCH", "/enrollments/a", 200, `{}`, "no such operation"},
		{"error body property", "GET", "/enrollments/a", 404, `{"errorCode":404201,"retryAfter":3}`, `"retryAfter" is not in`},
	}
	for _, tt := range bad {
		errs := d.checkAnswer(tt.method, tt.path, tt.status, []byte(tt.body))
		if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tt.want) }) {
			t.Errorf("%s: checkAnswer(%s) = %q, want an error saying %q", tt.name, tt.body, errs, tt.want)
		}
	}
	if _, op := d.operation(http.MethodPost, "/enrollments/query"); op == nil || op.OperationID != "IndividualEnrollment_Query" {
		t.Errorf("POST /enrollments/query is %+v, want IndividualEnrollment_Query", op)
	}
	dev := loadSpec(t, "testdata/spec/device-2026-04-01.json")
	for _, tt := range []struct{ body, want string }{
		{`{"registrationId":"a","status":"assigned","issuedCertificateChain":["not base64!"]}`, "not base64"},
		{`{"registrationId":"a","status":"Assigned"}`, `"Assigned" is not one of`},
		{`{"registrationId":"a","x509":{"certificateInfo":{"subjectName":"CN=a"}}}`, `"sha1Thumbprint" is missing`},
	} {
		errs := dev.checkAnswer("POST", "/0ne00DE0000/registrations/a", 200, []byte(tt.body))
		if !slices.ContainsFunc(errs, func(e string) bool { return strings.Contains(e, tt.want) }) {
			t.Errorf("device checkAnswer(%s) = %q, want an error saying %q", tt.body, errs, tt.want)
		}
	}
}
