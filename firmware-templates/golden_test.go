package fwtemplates

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the built-in templates")

// TestGolden renders every built-in template with SampleData for every
// attestation and compares with testdata/golden/NAME-ATTESTATION.golden.
func TestGolden(t *testing.T) {
	for _, name := range Names() {
		tmpl, err := Builtin(name)
		if err != nil {
			t.Fatalf("Builtin(%q) = %v", name, err)
		}
		for _, att := range Attestations() {
			t.Run(name+"/"+att, func(t *testing.T) {
				got, err := tmpl.Render(SampleData(att))
				if err != nil {
					t.Fatalf("Render(SampleData(%q)) = %v", att, err)
				}
				file := filepath.Join("testdata", "golden", name+"-"+att+".golden")
				if *update {
					if err := os.WriteFile(file, got, 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(file)
				if err != nil {
					t.Fatalf("%v (run go test -update to create it)", err)
				}
				if diff := cmp.Diff(string(want), string(got)); diff != "" {
					t.Errorf("%s rendered for %s differs from %s (-want +got):\n%s", name, att, file, diff)
				}
			})
		}
	}
}

func TestBuiltinsPassCheck(t *testing.T) {
	for _, name := range Names() {
		tmpl, err := Builtin(name)
		if err != nil {
			t.Fatalf("Builtin(%q) = %v", name, err)
		}
		if err := tmpl.Check(); err != nil {
			t.Errorf("Builtin(%q).Check() = %v", name, err)
		}
	}
}
