package fwtemplates

import (
	"strings"
	"testing"
)

func TestValidateCHeader(t *testing.T) {
	const guard = "#ifndef A_H\n#define A_H\n"
	for _, tc := range []struct {
		name, src, wantErr string
	}{
		{"minimal", guard + "#endif\n", ""},
		{"comments around", "/* c */\n// d\n" + guard + "#define X \"a\" /* \" */\n#endif /* A_H */\n", ""},
		{"spliced literal", guard + "#define X \"a\\\nb\" \\\n\t\"c\"\n#endif\n", ""},
		{"nested conditional", guard + "#ifdef B\n#define X 1\n#else\n#define X 2\n#endif\n#endif\n", ""},
		{"quote in char literal", guard + "#define Q '\"'\n#endif\n", ""},
		{"no guard", "#define X 1\n", "no include guard"},
		{"guard names differ", "#ifndef A_H\n#define B_H\n#endif\n", "no include guard"},
		{"unterminated string", guard + "#define X \"abc\n#endif\n", "line 3: string literal does not end"},
		{"unterminated char", guard + "#define X 'a\n#endif\n", "line 3: character literal does not end"},
		{"bad escape", guard + "#define X \"a\\qb\"\n#endif\n", `unknown escape \q`},
		{"open comment", guard + "/* x\n#endif\n", "comment does not end"},
		{"missing endif", guard + "#define X 1\n", "#ifndef A_H has no #endif"},
		{"extra endif", guard + "#endif\n#endif\n", "directives follow"},
		{"endif alone", "#endif\n", "no include guard"},
		{"directive after guard", guard + "#endif\n#define Y 1\n", "directives follow"},
		{"code before guard", "int x;\n" + guard + "#endif\n", "line 1: code outside the include guard"},
		{"else of guard", guard + "#else\n#endif\n", "belongs to the include guard"},
		{"macro twice", guard + "#define X \"a\"\n#define X \"b\"\n#endif\n", "macro X is already defined on line 3"},
		{"NUL", guard + "#define X \"\x00\"\n#endif\n", "NUL"},
		{"universal character names", guard + "#define X \"\\u00e9\\U0001F600\\u0024\"\n#endif\n", ""},
		{"universal character name for a control", guard + "#define X \"\\u0001\"\n#endif\n", `\u: universal character name 0001 cannot stand for U+0001`},
		{"universal character name too short", guard + "#define X \"\\u12zz\"\n#endif\n", "not 4 hex digits"},
		{"universal character name surrogate", guard + "#define X \"\\uD800\"\n#endif\n", "cannot stand for U+D800"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, "validateCHeader", validateCHeader([]byte(tc.src)), tc.wantErr)
		})
	}
}

func TestValidateNVSCSV(t *testing.T) {
	const head = "key,type,encoding,value\nns,namespace,,\n"
	for _, tc := range []struct {
		name, src, wantErr string
	}{
		{"minimal", head + "k,data,string,v\n", ""},
		{"comments and blank lines", "# c\n" + head + "\n# d\nk,data,string,v\n", ""},
		{"every encoding", head + "a,data,u8,255\nb,data,i8,-128\nc,data,u16,65535\nd,data,i16,-1\ne,data,u32,4294967295\nf,data,i32,-2147483648\ng,data,u64,18446744073709551615\nh,data,i64,-9223372036854775808\ni,data,hex2bin,00ff\nj,data,base64,AAE=\nk,data,binary,xyz\nl,data,string,\"a,\"\"b\"\"\nc\"\n", ""},
		{"file row", head + "cert,file,string,/tmp/cert.pem\n", ""},
		{"two namespaces same key", head + "k,data,string,v\nother,namespace,,\nk,data,string,w\n", ""},
		{"back to a namespace", head + "k,data,string,v\nother,namespace,,\nns,namespace,,\nk,data,string,w\n", "key k already set on line 3 in namespace ns"},
		{"empty", "", "no header row"},
		{"header only comment", "# x\n", "no header row"},
		{"wrong header", "key,type,value,encoding\n", "header is"},
		{"BOM", "\ufeff" + head, "header is"},
		{"three fields", head + "k,data,string\n", "line 3: 3 fields, want 4"},
		{"no namespace first", "key,type,encoding,value\nk,data,string,v\n", "first entry must be a namespace"},
		{"key 16 chars", head + "abcdefghijklmnop,data,string,v\n", "at most 15"},
		{"namespace 16 chars", "key,type,encoding,value\nabcdefghijklmnop,namespace,,\n", "at most 15"},
		{"empty key", head + ",data,string,v\n", "NVS key is empty"},
		{"unknown type", head + "k,blob,string,v\n", `type "blob"`},
		{"unknown encoding", head + "k,data,u128,1\n", `encoding "u128"`},
		{"file encoding", head + "k,file,u8,/x\n", `encoding "u8" for a file`},
		{"file without name", head + "k,file,string,\n", "without a file name"},
		{"u8 out of range", head + "k,data,u8,256\n", `"256" is not a u8`},
		{"i32 not a number", head + "k,data,i32,x\n", "not a i32"},
		{"bad hex", head + "k,data,hex2bin,abc\n", "hex2bin value"},
		{"bad base64", head + "k,data,base64,%%\n", "base64 value"},
		{"string too long", head + "k,data,string," + strings.Repeat("x", 4000) + "\n", "at most 3999"},
		{"string longest", head + "k,data,string," + strings.Repeat("x", 3999) + "\n", ""},
		{"string non-ASCII", head + "k,data,string,é\n", "non-ASCII"},
		{"string carriage return", head + "k,data,string,\"a\rb\"\n", "read the values differently"},
		{"hash line in value", head + "k,data,string,\"a\n#b\"\n", "read the values differently"},
		{"duplicate key", head + "k,data,string,v\nk,data,u8,1\n", "already set on line 3"},
		{"bare quote", head + "k,data,string,a\"b\n", "not valid CSV"},
		{"invalid UTF-8", head + "k,data,string,\xff\n", "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, "validateNVSCSV", validateNVSCSV([]byte(tc.src)), tc.wantErr)
		})
	}
}

func TestValidateJSONAndTOML(t *testing.T) {
	for _, tc := range []struct {
		name, format, src, wantErr string
	}{
		{"json object", FormatJSON, `{"a": "b"}`, ""},
		{"json trailing comma", FormatJSON, "{\n\"a\": 1,\n}", "not valid JSON: line 3"},
		{"json two values", FormatJSON, `{} {}`, "not valid JSON"},
		{"json invalid UTF-8", FormatJSON, "\"\xff\"", "UTF-8"},
		{"json duplicate key", FormatJSON, "{\"a\": 1,\n\"b\": 2,\n\"a\": 3}", `line 3: key "a" appears twice in one object`},
		{"json duplicate nested key", FormatJSON, `{"a": [{"k": 1}, {"k": 2, "x": {"k": 1, "k": 1}}]}`, `key "k" appears twice`},
		{"json same key in two objects", FormatJSON, `{"a": {"k": 1}, "b": {"k": 1}, "k": [{"k": {}}, {"k": []}]}`, ""},
		{"toml table", FormatTOML, "[a]\nb = \"c\"\n", ""},
		{"toml bare string", FormatTOML, "a = b\n", "not valid TOML"},
		{"toml duplicate key", FormatTOML, "a = 1\na = 2\n", "not valid TOML"},
		{"text anything", FormatText, "\x00{", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, "validate("+tc.format+")", validate(tc.format, []byte(tc.src)), tc.wantErr)
		})
	}
}

func checkErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s = %v, want nil", what, err)
	case want != "" && err == nil:
		t.Errorf("%s = nil, want an error containing %q", what, want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("%s = %q, want it to contain %q", what, err, want)
	}
}
