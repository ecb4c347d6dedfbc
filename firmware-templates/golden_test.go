package fwtemplates

import (
	"encoding/json"
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

// TestJSONOperationalCertificate: the json template asks for an
// operational certificate only when the data names its file, and the
// request is what the board reads (provisioning.operationalCertificate).
func TestJSONOperationalCertificate(t *testing.T) {
	tmpl, err := Builtin("json")
	if err != nil {
		t.Fatal(err)
	}
	for _, att := range Attestations() {
		d := SampleData(att)
		plain, err := tmpl.Render(d)
		if err != nil {
			t.Fatalf("Render(%s) = %v", att, err)
		}
		d.OperationalCertificatePath = "/lfs/zerotouch/\"op\".pem"
		got, err := tmpl.Render(d)
		if err != nil {
			t.Fatalf("Render(%s, operational certificate) = %v", att, err)
		}
		var doc struct {
			Provisioning struct {
				OperationalCertificate *struct {
					Issuer string `json:"issuer"`
					Path   string `json:"path"`
				} `json:"operationalCertificate"`
			} `json:"provisioning"`
		}
		if err := json.Unmarshal(plain, &doc); err != nil || doc.Provisioning.OperationalCertificate != nil {
			t.Errorf("Render(%s) without a path: operationalCertificate = %+v, %v; want none", att, doc.Provisioning.OperationalCertificate, err)
		}
		if err := json.Unmarshal(got, &doc); err != nil {
			t.Fatalf("Render(%s) = %s: %v", att, got, err)
		}
		oc := doc.Provisioning.OperationalCertificate
		if oc == nil || oc.Issuer != "dps" || oc.Path != d.OperationalCertificatePath {
			t.Errorf("Render(%s).provisioning.operationalCertificate = %+v, want issuer dps, path %q", att, oc, d.OperationalCertificatePath)
		}
	}
}
