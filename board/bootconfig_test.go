package board

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	fwtemplates "zerotouch/firmware-templates"
)

// awkward is sample data whose values hold what each format must escape:
// quotes, backslashes, commas, newlines, comment and trigraph starts, a
// space and a percent in the certificate's path; non-ASCII too, except
// for the NVS CSV, which cannot store it.
func awkward(attestation string, ascii bool) fwtemplates.Data {
	d := fwtemplates.SampleData(attestation)
	d.IDScope = `0ne"\,?? /*x*/ ,#` + "\t"
	d.RegistrationID = "id \"q\" \\back ,comma ??= */ end\nline2 # not a comment"
	if !ascii {
		d.IDScope += " é☃"
	}
	d.GlobalEndpoint = "dps.example.test:8443"
	if attestation == fwtemplates.AttestationX509 {
		d.CertificatePath = `/var/sec rets/de"v,%41 ??=.pem`
		d.KeyURI = `pkcs11:token=a"b;object=c\d,e??/0x81000002`
	}
	return d
}

// want is what the board should read of the configuration rendered from
// d by the template name.
func want(name string, d fwtemplates.Data) bootConfig {
	bc := bootConfig{Format: name, GlobalEndpoint: "https://" + d.GlobalEndpoint, IDScope: d.IDScope, RegistrationID: d.RegistrationID,
		Attestation: d.Attestation, CertificateChain: d.CertificateChain, CertificatePath: d.CertificatePath, KeyURI: d.KeyURI}
	if d.DerivedKey != "" {
		bc.SymmetricKey, _ = base64.StdEncoding.DecodeString(d.DerivedKey)
	}
	if name == formatAziotTOML {
		// aziot references the certificate by its file; the chain is
		// not inline.
		bc.CertificateChain = ""
	}
	return bc
}

// TestBootConfigBuiltins: what every built-in template renders, for every
// attestation, with sample values and with values each format must
// escape, the board reads back exactly.
func TestBootConfigBuiltins(t *testing.T) {
	for _, name := range fwtemplates.Names() {
		tmpl, err := fwtemplates.Builtin(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, att := range fwtemplates.Attestations() {
			for _, kind := range []string{"sample", "awkward"} {
				t.Run(name+"/"+att+"/"+kind, func(t *testing.T) {
					d := fwtemplates.SampleData(att)
					if kind == "awkward" {
						d = awkward(att, name == formatNVSCSV)
					}
					out, err := tmpl.Render(d)
					if err != nil {
						t.Fatalf("Render: %v", err)
					}
					got, err := parseBootConfig(out)
					if err != nil {
						t.Fatalf("parseBootConfig(%s) = %v\n%s", name, err, out)
					}
					if diff := cmp.Diff(want(name, d), got); diff != "" {
						t.Errorf("parseBootConfig(%s) differs (-want +got):\n%s\nconfiguration:\n%s", name, diff, out)
					}
				})
			}
		}
	}
}

// TestBootConfigAziotRegistrationID: aziot-toml with x509 may leave out
// registration_id (aziot then takes the certificate's common name).
func TestBootConfigAziotRegistrationID(t *testing.T) {
	in := "[provisioning]\nsource = \"dps\"\nglobal_endpoint = \"https://dps.example.test/\"\nid_scope = \"0ne1\"\n" +
		"[provisioning.attestation]\nmethod = \"x509\"\nidentity_cert = \"file:///lfs/id.pem\"\nidentity_pk = \"file:///lfs/id.key\"\n"
	got, err := parseBootConfig([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if got.RegistrationID != "" || got.CertificatePath != "/lfs/id.pem" || got.KeyURI != "file:///lfs/id.key" || got.GlobalEndpoint != "https://dps.example.test" {
		t.Errorf("parseBootConfig = %+v", got)
	}
}

// TestBootConfigErrors: a configuration the board cannot register with
// is refused with an error that names its format and the field at fault.
func TestBootConfigErrors(t *testing.T) {
	golden := func(name string) string {
		b, err := os.ReadFile(filepath.Join("..", "firmware-templates", "testdata", "golden", name+".golden"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	drop := func(s, line string) string {
		if !strings.Contains(s, line) {
			t.Fatalf("the golden output lacks %q", line)
		}
		return strings.Replace(s, line, "", 1)
	}
	for _, tt := range []struct {
		name, in      string
		format, field string // bootConfigError's
		want          string // in the message
		unknownFormat bool
	}{
		{name: "empty", in: "", unknownFormat: true},
		{name: "plain text", in: "id_scope=0ne1\n", unknownFormat: true},
		{name: "json not JSON", in: `{"provisioning": `, format: formatJSON, want: "unexpected end"},
		{name: "json without provisioning", in: `{"device": {}}`, format: formatJSON, field: "provisioning"},
		{name: "json without id scope", in: drop(golden("json-tpm"), `"idScope": "0ne0001A2B3",`),
			format: formatJSON, field: "provisioning.idScope", want: "missing"},
		{name: "json bad key", in: strings.Replace(golden("json-symmetricKey"), "CgwkmWn768m9", "!!", 1),
			format: formatJSON, field: "provisioning.attestation.symmetricKey", want: "base64"},
		{name: "json unknown attestation", in: strings.Replace(golden("json-tpm"), `"type": "tpm"`, `"type": "psk"`, 1),
			format: formatJSON, field: "provisioning.attestation.type", want: `"psk"`},
		{name: "json endpoint a path", in: strings.Replace(golden("json-tpm"), `global.azure-devices-provisioning.net`, `dps.example/x`, 1),
			format: formatJSON, field: "provisioning.globalEndpoint", want: "host name"},
		{name: "toml without id scope", in: drop(golden("aziot-toml-tpm"), "id_scope = \"0ne0001A2B3\"\n"),
			format: formatAziotTOML, field: "provisioning.id_scope", want: "missing"},
		{name: "toml x509 without identity_cert", in: drop(golden("aziot-toml-x509"), "identity_cert = \"file:///var/secrets/device-id.pem\"\n"),
			format: formatAziotTOML, field: "provisioning.attestation.identity_cert", want: "missing"},
		{name: "toml identity_cert not a file URI", in: strings.Replace(golden("aziot-toml-x509"), "file:///var/", "https://host/", 1),
			format: formatAziotTOML, field: "provisioning.attestation.identity_cert", want: "file://"},
		{name: "toml other source", in: strings.Replace(golden("aziot-toml-tpm"), `source = "dps"`, `source = "manual"`, 1),
			format: formatAziotTOML, field: "provisioning.source", want: `"manual"`},
		{name: "toml unknown method", in: strings.Replace(golden("aziot-toml-tpm"), `method = "tpm"`, `method = "est"`, 1),
			format: formatAziotTOML, field: "provisioning.attestation.method", want: `"est"`},
		{name: "toml broken", in: golden("aziot-toml-tpm") + "\nid_scope = \n", format: formatAziotTOML},
		{name: "toml symmetric key not inline", in: strings.Replace(golden("aziot-toml-symmetricKey"),
			`symmetric_key = { value = "CgwkmWn768m9wGC8v5NUNvQcygAQ8ewnlyLI5fhDi9I=" }`, "", 1),
			format: formatAziotTOML, field: "provisioning.attestation.symmetric_key", want: "missing"},
		{name: "c without registration ID", in: drop(golden("c-header-tpm"), "#define DPS_REGISTRATION_ID \"7kxmzkrmfhdxh4hyohru3wx76e7ujjjh6bcw5vwgzgxnvuwevn2a\"\n"),
			format: formatCHeader, field: "DPS_REGISTRATION_ID", want: "missing"},
		{name: "c id scope not a string", in: strings.Replace(golden("c-header-tpm"), `DPS_ID_SCOPE "0ne0001A2B3"`, `DPS_ID_SCOPE 42`, 1),
			format: formatCHeader, field: "DPS_ID_SCOPE", want: "not a string literal"},
		{name: "c unknown escape", in: strings.Replace(golden("c-header-tpm"), `"0ne0001A2B3"`, `"0ne\q"`, 1),
			format: formatCHeader, field: "DPS_ID_SCOPE", want: `\q`},
		{name: "c two attestations", in: strings.Replace(golden("c-header-tpm"), "#define DPS_ATTESTATION_TPM 1\n", "#define DPS_ATTESTATION_TPM 1\n#define DPS_ATTESTATION_X509 1\n", 1),
			format: formatCHeader, field: "DPS_ATTESTATION_TPM, DPS_ATTESTATION_X509", want: "more than one"},
		{name: "c attestation disagrees", in: strings.Replace(golden("c-header-tpm"), `DPS_ATTESTATION "tpm"`, `DPS_ATTESTATION "x509"`, 1),
			format: formatCHeader, field: "DPS_ATTESTATION_TPM", want: `"x509"`},
		{name: "c x509 without chain", in: cutChain(t, golden("c-header-x509")),
			format: formatCHeader, field: "DPS_CERTIFICATE_CHAIN (or DPS_CERTIFICATE_PATH)", want: "missing"},
		{name: "c comment does not end", in: golden("c-header-tpm") + "/* open", format: formatCHeader, want: "does not end"},
		{name: "c defined twice", in: golden("c-header-tpm") + "#define DPS_ID_SCOPE \"x\"\n", format: formatCHeader, want: "twice"},
		{name: "nvs without attestation", in: drop(golden("esp-idf-nvs-csv-tpm"), "attestation,data,string,tpm\n"),
			format: formatNVSCSV, field: "azure_dps/attestation", want: "missing"},
		{name: "nvs without symmetric key", in: drop(golden("esp-idf-nvs-csv-symmetricKey"), "symmetric_key,data,string,CgwkmWn768m9wGC8v5NUNvQcygAQ8ewnlyLI5fhDi9I=\n"),
			format: formatNVSCSV, field: "azure_dps/symmetric_key", want: "missing"},
		{name: "nvs key as binary", in: strings.Replace(golden("esp-idf-nvs-csv-tpm"), "id_scope,data,string,", "id_scope,data,binary,", 1),
			format: formatNVSCSV, field: "azure_dps/id_scope", want: "string data"},
		{name: "nvs set twice", in: golden("esp-idf-nvs-csv-tpm") + "\nazure_dps,namespace,,\nid_scope,data,string,x\n",
			format: formatNVSCSV, field: "azure_dps/id_scope", want: "twice"},
		{name: "nvs three fields", in: golden("esp-idf-nvs-csv-tpm") + "\nx,data,string\n", format: formatNVSCSV, want: "3 fields"},
		{name: "nvs quote does not end", in: golden("esp-idf-nvs-csv-tpm") + "\nx,data,string,\"open\n", format: formatNVSCSV},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseBootConfig([]byte(tt.in))
			if tt.unknownFormat {
				if !errors.Is(err, errUnknownFormat) {
					t.Errorf("parseBootConfig(%q) = %v, want errUnknownFormat", tt.in, err)
				}
				return
			}
			var be *bootConfigError
			if !errors.As(err, &be) || be.Format != tt.format || be.Field != tt.field {
				t.Fatalf("parseBootConfig = %#v (%v), want a *bootConfigError for %s field %q", err, err, tt.format, tt.field)
			}
			for _, w := range []string{tt.format, tt.field, tt.want} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("parseBootConfig error %q does not say %q", err, w)
				}
			}
		})
	}
}

// cutChain removes DPS_CERTIFICATE_CHAIN and DPS_CERTIFICATE_PATH from the
// c-header x509 golden output.
func cutChain(t *testing.T, s string) string {
	t.Helper()
	i := strings.Index(s, "#define DPS_CERTIFICATE_CHAIN")
	j := strings.Index(s, "#define DPS_KEY_URI")
	if i < 0 || j < i {
		t.Fatal("the c-header x509 golden output lacks the chain or the key URI")
	}
	return s[:i] + s[j:]
}

// FuzzBootConfig: parseBootConfig never panics, and what it accepts is a
// configuration the board can register with: a known format and
// attestation, an https endpoint, the ID scope, and the attestation's
// material.
func FuzzBootConfig(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("..", "firmware-templates", "testdata", "golden", "*.golden"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no golden outputs to seed from: %v", err)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		bc, err := parseBootConfig(data)
		if err != nil {
			var be *bootConfigError
			if !errors.As(err, &be) || be.Format == "" || be.Err == nil {
				t.Fatalf("parseBootConfig error %v (%T) is not a *bootConfigError naming the format", err, err)
			}
			return
		}
		if _, ok := names[bc.Format]; !ok {
			t.Fatalf("format %q", bc.Format)
		}
		if !strings.HasPrefix(bc.GlobalEndpoint, "https://") || bc.IDScope == "" {
			t.Fatalf("accepted without an https endpoint or an ID scope: %+v", bc)
		}
		if bc.RegistrationID == "" && !(bc.Format == formatAziotTOML && bc.Attestation == attX509) {
			t.Fatalf("accepted without a registration ID: %+v", bc)
		}
		switch bc.Attestation {
		case attTPM:
		case attX509:
			if bc.CertificateChain == "" && bc.CertificatePath == "" {
				t.Fatalf("x509 accepted without a certificate: %+v", bc)
			}
		case attSymmetricKey:
			if len(bc.SymmetricKey) == 0 {
				t.Fatalf("symmetricKey accepted without a key: %+v", bc)
			}
		default:
			t.Fatalf("attestation %q accepted", bc.Attestation)
		}
	})
}
