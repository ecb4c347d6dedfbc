// Package textsafe makes text that came from a board or a file safe to
// print to a terminal or a log: control characters, escape sequences and
// bytes that are not UTF-8 are written as Go escapes, so that such text
// can neither forge a line of output nor drive the terminal.
package textsafe

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Escape returns s with every rune that is not printable (unicode.IsPrint,
// which keeps the ASCII space) written as a Go escape (\n, \x1b, \u2028),
// and every byte that is not UTF-8 as \xNN; a backslash is doubled when
// anything was escaped, so the result reads back unambiguously. Text that
// is printable already comes back unchanged.
func Escape(s string) string {
	if Printable(s) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

// Printable reports whether s is UTF-8 made only of printable runes
// (unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the
// ASCII space).
func Printable(s string) bool {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 || !unicode.IsPrint(r) {
			return false
		}
		i += n
	}
	return true
}

// Truncate returns s cut to at most n runes, marking a cut with "...".
func Truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	var b strings.Builder
	for i, r := range []rune(s) {
		if i >= n {
			break
		}
		b.WriteRune(r)
	}
	return b.String() + "..."
}
