// Package locale tells the user's preferred locales as BCP 47 tags
// ("en-US", "de"), for Fyne's lang package, which imports it under the
// path github.com/jeandeaual/go-locale.
//
// On Unix-like systems (and macOS, without cgo) the locales come from the
// environment as POSIX and GNU gettext read it: the first non-empty of
// LC_ALL, LC_MESSAGES and LANG names the locale; the C (or POSIX) locale,
// whatever its codeset or modifier (C.UTF-8, POSIX, C@euro), is no locale
// at all; otherwise LANGUAGE, a colon-separated list, gives the preferences
// in order when it is set. Each ll_CC.codeset@modifier becomes ll-CC. A
// setting that names no language is skipped rather than reported, so that
// a caller falls back to its own default silently.
//
// On Windows the locales are the user's preferred UI languages
// (GetUserPreferredUILanguages).
//
// The functions are safe for concurrent use.
package locale

import "strings"

// GetLocale returns the user's first preferred locale as a BCP 47 tag, or
// "" (and a nil error) when the user has none, as under the C locale. Only
// the Windows API can make it fail.
func GetLocale() (string, error) {
	all, err := GetLocales()
	if err != nil || len(all) == 0 {
		return "", err
	}
	return all[0], nil
}

// GetLocales returns the user's preferred locales as BCP 47 tags, most
// preferred first, or nil (and a nil error) when the user has none. Only
// the Windows API can make it fail.
func GetLocales() ([]string, error) {
	return system()
}

// SetRunOnJVM is kept for Fyne's Android build, which calls it; the
// locales come from the environment there too.
func SetRunOnJVM(func(fn func(vm, env, ctx uintptr) error) error) {}

// fromEnv returns the locales the environment, read through getenv,
// names (see the package comment).
func fromEnv(getenv func(string) string) []string {
	var current string
	for _, name := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if current = getenv(name); current != "" {
			break
		}
	}
	if current == "" || isC(current) {
		return nil
	}
	var tags []string
	for _, l := range strings.Split(getenv("LANGUAGE"), ":") {
		tags = appendTag(tags, l)
	}
	if len(tags) == 0 {
		tags = appendTag(tags, current)
	}
	return tags
}

// appendTag appends the BCP 47 tag of the POSIX locale name l to tags,
// unless l names no language or tags holds it already.
func appendTag(tags []string, l string) []string {
	t, ok := tag(l)
	if !ok {
		return tags
	}
	for _, have := range tags {
		if have == t {
			return tags
		}
	}
	return append(tags, t)
}

// isC reports whether the POSIX locale name l is the C locale, spelt
// C or POSIX, with or without a codeset and a modifier.
func isC(l string) bool {
	l = base(l)
	return l == "C" || l == "POSIX"
}

// base strips a POSIX locale name's @modifier and .codeset:
// "sr_RS.UTF-8@latin" gives "sr_RS".
func base(l string) string {
	if i := strings.IndexByte(l, '@'); i >= 0 {
		l = l[:i]
	}
	if i := strings.IndexByte(l, '.'); i >= 0 {
		l = l[:i]
	}
	return l
}

// tag turns the POSIX locale name l (language[_territory][.codeset][@modifier])
// into a BCP 47 tag (language[-REGION]): "en_US.UTF-8" gives "en-US". ok
// is false when l names no language: the C locale, a path, an empty string.
func tag(l string) (t string, ok bool) {
	l = base(l)
	if isC(l) {
		return "", false
	}
	lang, region, hasRegion := strings.Cut(l, "_")
	if len(lang) < 2 || len(lang) > 3 || !all(lang, isLetter) {
		return "", false
	}
	t = strings.ToLower(lang)
	if !hasRegion {
		return t, true
	}
	switch {
	case len(region) == 2 && all(region, isLetter):
		return t + "-" + strings.ToUpper(region), true
	case len(region) == 3 && all(region, isDigit): // a UN M.49 area: es_419
		return t + "-" + region, true
	}
	return "", false
}

func all(s string, f func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !f(s[i]) {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
