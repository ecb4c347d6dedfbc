// Package nvscsv reads text as ESP-IDF's nvs_partition_gen reads an NVS
// CSV file, for the esp-idf-nvs-csv template's checks and for the virtual
// board that reads its output.
package nvscsv

import "strings"

// ToolText returns the text of b that nvs_partition_gen parses as CSV:
// newlines as in Python's text mode ("\r\n" and "\r" read as "\n"), lines
// starting with '#' dropped, even inside a quoted value.
func ToolText(b []byte) string {
	text := strings.ReplaceAll(string(b), "\r\n", "\n")
	text = strings.ReplaceAll(text, "\r", "\n")
	var kept strings.Builder
	for _, l := range strings.SplitAfter(text, "\n") {
		if !strings.HasPrefix(l, "#") {
			kept.WriteString(l)
		}
	}
	return kept.String()
}
