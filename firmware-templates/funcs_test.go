package fwtemplates

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestFuncs(t *testing.T) {
	for _, tc := range []struct {
		fn      string
		in      string
		want    string
		wantErr string
	}{
		{"json", `a"b\c` + "\n\t<&>", `"a\"b\\c\n\t<&>"`, ""},
		{"json", "\xff", "", "UTF-8"},
		{"toml", `a"b\c` + "\n\t\r\x01\x7fé", `"a\"b\\c\n\t\r\u0001\u007Fé"`, ""},
		{"toml", "\xff", "", "UTF-8"},
		{"cstring", `a"b\c` + "\n\t\r", `"a\"b\\c\n\t\r"`, ""},
		{"cstring", "??=?a?", `"\?\?=?a?"`, ""},
		{"cstring", "é\x01" + "7", `"\303\251\0017"`, ""},
		{"cstring", "a\x00b", "", "NUL byte at offset 1"},
		{"cstringlines", "a\nb\n", "\"a\\n\" \\\n\t\"b\\n\"", ""},
		{"cstringlines", "a\nb", "\"a\\n\" \\\n\t\"b\"", ""},
		{"cstringlines", "", `""`, ""},
		{"cmacro", "work_order2", "WORK_ORDER2", ""},
		{"cmacro", "work-order", "", `character '-'`},
		{"cmacro", "", "", "empty name"},
		{"csv", "plain", "plain", ""},
		{"csv", "", "", ""},
		{"csv", `a,"b"`, `"a,""b"""`, ""},
		{"csv", "a\nb", "\"a\nb\"", ""},
		{"csv", " lead", `" lead"`, ""},
		{"csv", "#x", `"#x"`, ""},
		{"nvs", `a,"b"`, `"a,""b"""`, ""},
		{"nvs", "a\r", "", "carriage return"},
		{"nvs", "é", "", "non-ASCII"},
		{"nvs", "a\n#b", "", "line starting with #"},
		{"nvs", "a#b", "a#b", ""},
		{"nvskey", "registration_id", "registration_id", ""},
		{"nvskey", "registration_ids", "", "at most 15"},
		{"nvskey", "#k", "", "starts with #"},
		{"nvskey", "a b", "", "character ' '"},
		{"fileuri", "/var/secrets/device id.pem", "file:///var/secrets/device%20id.pem", ""},
		{"fileuri", "pkcs11:token=t;object=k?pin-value=1", "pkcs11:token=t;object=k?pin-value=1", ""},
		{"fileuri", "file:///x", "file:///x", ""},
		{"fileuri", "secrets/key.pem", "", "neither an absolute path nor a URI"},
		{"fileuri", "C:/key.pem", "", "neither an absolute path nor a URI"},
		{"fileuri", "/a\nb", "", "control character"},
		{"required", "x", "x", ""},
		{"required", "", "", "F is empty"},
	} {
		got, err := callFunc(tc.fn, tc.in)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s(%q) = %q, %v; want error containing %q", tc.fn, tc.in, got, err, tc.wantErr)
			}
		case err != nil || got != tc.want:
			t.Errorf("%s(%q) = %q, %v; want %q", tc.fn, tc.in, got, err, tc.want)
		}
	}
}

func callFunc(name, in string) (string, error) {
	switch name {
	case "json":
		return jsonValue(in)
	case "toml":
		return tomlString(in)
	case "cstring":
		return cString(in)
	case "cstringlines":
		return cStringLines(in)
	case "cmacro":
		return cMacro(in)
	case "csv":
		return csvField(in), nil
	case "nvs":
		return nvsString(in)
	case "nvskey":
		return nvsKey(in)
	case "fileuri":
		return fileURI(in)
	case "required":
		return required("F", in)
	}
	panic("no function " + name)
}

func TestJSONMap(t *testing.T) {
	for _, tc := range []struct {
		in   map[string]string
		want string
	}{
		{nil, "{}"},
		{map[string]string{}, "{}"},
		{map[string]string{"b": "2", "a": "<1>"}, `{"a":"<1>","b":"2"}`},
	} {
		got, err := jsonValue(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("json(%v) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := jsonValue(map[string]string{"k": "\xff"}); err == nil {
		t.Errorf("json(map with invalid UTF-8) = nil error")
	}
}

// TestFuncsDocumented: every template function is named in the package
// documentation.
func TestFuncsDocumented(t *testing.T) {
	b, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for name := range funcs() {
		if !strings.Contains(doc, "//   - "+name+" ") {
			t.Errorf("template function %s is not documented in doc.go", name)
		}
	}
	for f := range reflect.TypeFor[Data]().Fields() {
		if field := f.Name; !strings.Contains(doc, "."+field+":") && !strings.Contains(doc, "."+field+",") {
			t.Errorf("Data field %s is not documented in doc.go", field)
		}
	}
}
