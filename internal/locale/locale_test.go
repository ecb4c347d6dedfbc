package locale

import (
	"slices"
	"testing"
)

func TestFromEnv(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"nothing set", nil, nil},
		{"C", map[string]string{"LANG": "C"}, nil},
		{"C.UTF-8", map[string]string{"LANG": "C.UTF-8"}, nil},
		{"C.utf8", map[string]string{"LANG": "C.utf8"}, nil},
		{"POSIX", map[string]string{"LANG": "POSIX"}, nil},
		{"POSIX.UTF-8", map[string]string{"LANG": "POSIX.UTF-8"}, nil},
		{"C with a modifier", map[string]string{"LANG": "C@euro"}, nil},
		{"C with a codeset and a modifier", map[string]string{"LANG": "C.UTF-8@euro"}, nil},
		{"C ignores LANGUAGE", map[string]string{"LANG": "C.UTF-8", "LANGUAGE": "de:fr"}, nil},
		{"unset ignores LANGUAGE", map[string]string{"LANGUAGE": "de:fr"}, nil},
		{"LANG", map[string]string{"LANG": "en_US.UTF-8"}, []string{"en-US"}},
		{"language only", map[string]string{"LANG": "de"}, []string{"de"}},
		{"modifier", map[string]string{"LANG": "sr_RS.UTF-8@latin"}, []string{"sr-RS"}},
		{"three-letter language", map[string]string{"LANG": "fil_PH"}, []string{"fil-PH"}},
		{"numeric area", map[string]string{"LANG": "es_419.UTF-8"}, []string{"es-419"}},
		{"case", map[string]string{"LANG": "EN_us"}, []string{"en-US"}},
		{"LC_MESSAGES over LANG", map[string]string{"LANG": "en_US.UTF-8", "LC_MESSAGES": "fr_FR.UTF-8"}, []string{"fr-FR"}},
		{"LC_ALL over both", map[string]string{"LANG": "en_US", "LC_MESSAGES": "fr_FR", "LC_ALL": "de_DE.UTF-8"}, []string{"de-DE"}},
		{"LC_ALL=C over LANG", map[string]string{"LANG": "en_US.UTF-8", "LC_ALL": "C.UTF-8"}, nil},
		{"empty LC_ALL is unset", map[string]string{"LANG": "it_IT", "LC_ALL": ""}, []string{"it-IT"}},
		{"LANGUAGE list", map[string]string{"LANG": "en_US.UTF-8", "LANGUAGE": "de_AT:de:en_GB"}, []string{"de-AT", "de", "en-GB"}},
		{"LANGUAGE skips empty and bad entries", map[string]string{"LANG": "en_US", "LANGUAGE": ":C:pt_BR::x:pt_BR"}, []string{"pt-BR"}},
		{"LANGUAGE with nothing usable", map[string]string{"LANG": "nl_NL", "LANGUAGE": "C"}, []string{"nl-NL"}},
		{"a path", map[string]string{"LANG": "/usr/share/locale/xx"}, nil},
		{"a bad region", map[string]string{"LANG": "en_USA"}, nil},
		{"a bare codeset", map[string]string{"LANG": "UTF-8"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := fromEnv(func(k string) string { return tt.env[k] })
			if !slices.Equal(got, tt.want) {
				t.Errorf("fromEnv(%v) = %q, want %q", tt.env, got, tt.want)
			}
		})
	}
}
