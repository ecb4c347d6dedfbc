package fwtemplates

import "strings"

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
