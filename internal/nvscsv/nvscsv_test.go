package nvscsv

import "testing"

func TestToolText(t *testing.T) {
	for in, want := range map[string]string{
		"key,type\r\n# comment\r\nns,namespace\r":        "key,type\nns,namespace\n",
		"a,\"b\n# inside a quote\nc\"\n":                 "a,\"b\nc\"\n",
		"#only a comment":                                "",
		"no newline at the end":                          "no newline at the end",
		" # not a comment: it does not start the line\n": " # not a comment: it does not start the line\n",
	} {
		if got := ToolText([]byte(in)); got != want {
			t.Errorf("ToolText(%q) = %q, want %q", in, got, want)
		}
	}
}
