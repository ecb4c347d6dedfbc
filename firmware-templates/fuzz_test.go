package fwtemplates

import (
	"errors"
	"testing"
)

// FuzzRender renders random Data string fields through every built-in
// template. Render either refuses with ErrRender and no output, or its
// output parses for its format and carries every value unchanged, as read
// back with the format's own parser.
func FuzzRender(f *testing.F) {
	for i, att := range Attestations() {
		d := SampleData(att)
		f.Add(uint8(i), d.IDScope, d.GlobalEndpoint, d.RegistrationID, d.DeviceID, d.CertificatePath, d.KeyURI, d.DerivedKey, d.Serial, d.Model, "line", "L1")
		d = trickyData(att, tricky)
		f.Add(uint8(i), d.IDScope, d.GlobalEndpoint, d.RegistrationID, d.DeviceID, d.CertificatePath, d.KeyURI, d.DerivedKey, d.Serial, d.Model, "q_2", `"`)
		d = trickyData(att, nvsTricky)
		f.Add(uint8(i), d.IDScope, d.GlobalEndpoint, d.RegistrationID, d.DeviceID, d.CertificatePath, d.KeyURI, d.DerivedKey, d.Serial, d.Model, "k", "a\r\n#b\x00")
	}
	f.Add(uint8(1), "s", "h:1", "r", "", "/p", "/k", "", "", "", "K", "")
	f.Add(uint8(2), "s", "h", "r", "\xff", "", "", "AAAA", "é", "\\", "", "")

	var tmpls []*Template
	for _, name := range Names() {
		tmpl, err := Builtin(name)
		if err != nil {
			f.Fatal(err)
		}
		tmpls = append(tmpls, tmpl)
	}
	f.Fuzz(func(t *testing.T, att uint8, idScope, endpoint, regID, deviceID, certPath, keyURI, derivedKey, serial, model, customKey, customValue string) {
		d := Data{
			IDScope:         idScope,
			GlobalEndpoint:  endpoint,
			RegistrationID:  regID,
			DeviceID:        deviceID,
			Attestation:     Attestations()[int(att)%len(Attestations())],
			CertificatePath: certPath,
			KeyURI:          keyURI,
			DerivedKey:      derivedKey,
			Serial:          serial,
			Model:           model,
			Custom:          map[string]string{customKey: customValue},
		}
		if d.Attestation == AttestationX509 {
			d.CertificateChain = sampleChain
		}
		for _, tmpl := range tmpls {
			out, err := tmpl.Render(d)
			if err != nil {
				if !errors.Is(err, ErrRender) || out != nil {
					t.Fatalf("%s: Render = %q, %v; want no output and ErrRender", tmpl.Name, out, err)
				}
				continue
			}
			if err := validate(tmpl.Format, out); err != nil {
				t.Fatalf("%s: output does not validate: %v\n%s", tmpl.Name, err, out)
			}
			checkReadBack(t, tmpl.Name, d, out)
		}
	})
}

// FuzzCustomRender renders custom templates that write values with no
// escaping function, in every context of every format (customCases), with
// arbitrary Serial, Model and Custom.line. Render either refuses a value
// (ErrRender, never for output that is not valid), or its output parses
// and carries every value exactly, with no key, definition or row more.
func FuzzCustomRender(f *testing.F) {
	for _, v := range append([]string{"SN-000123", tricky, nvsTricky}, hostileValues()...) {
		f.Add(v, "ZT-EVK-1", "L1")
		f.Add("SN-000123", v, v)
	}
	cases := customCases()
	tmpls := make([]*Template, len(cases))
	for i, c := range cases {
		tmpl, err := Parse(c.file, c.text)
		if err != nil {
			f.Fatalf("%s: %v", c.name, err)
		}
		tmpls[i] = tmpl
	}
	f.Fuzz(func(t *testing.T, serial, model, line string) {
		for i, c := range cases {
			renderCustom(t, tmpls[i], c, serial, model, line)
		}
	})
}
