package station

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"

	fwtemplates "zerotouch/firmware-templates"
	"zerotouch/internal/regid"
)

// TemplateError is a line's template that cannot render what the
// pipeline gives it with the line's attestation and settings: every
// board would fail at the render step, after its key and certificate
// were made. CheckTemplate returns it; it matches ErrConfig, and its
// cause wraps fwtemplates.ErrTemplate.
type TemplateError struct {
	Template    string // the template's name (built-in name or file)
	Attestation string // the line's mode, as ModeX509Keygen
	// Setting is the configuration key at fault, as
	// "template.certificate_path" or "template.custom.site"; empty when
	// the template itself is (a field the attestation never gives, a
	// value it does not escape).
	Setting string
	// Missing: Setting is not set (or lacks the key), as against set to
	// a value the template cannot take.
	Missing bool
	Err     error // the cause, from fwtemplates
	// unset names a field the template requires that this attestation
	// never gives (DerivedKey on an X.509 line).
	unset string
}

func (e *TemplateError) Error() string {
	what := fmt.Sprintf("template %q with attestation %s", e.Template, e.Attestation)
	switch {
	case e.Setting != "" && e.Missing:
		return fmt.Sprintf("%s needs %s, which the configuration does not set: %v", what, e.Setting, e.Err)
	case e.Setting != "":
		return fmt.Sprintf("%s cannot take the configuration's %s: %v", what, e.Setting, e.Err)
	}
	if e.unset != "" {
		return fmt.Sprintf("%s cannot render: the template requires %s, which attestation %s does not give (is the template for another attestation?): %v",
			what, e.unset, e.Attestation, e.Err)
	}
	return fmt.Sprintf("%s cannot render: %v", what, e.Err)
}

func (e *TemplateError) Unwrap() error { return e.Err }

// Is matches ErrConfig: the line cannot start with this template.
func (e *TemplateError) Is(target error) bool { return target == ErrConfig }

// CheckTemplate renders the template as the pipeline will for each board
// of the line: the line's attestation and its settings (id_scope,
// global_endpoint, registration_id and device_id rendered for a sample
// board, template.custom, template.certificate_path, template.key_uri)
// exactly as configured, and for what comes from the board, sample
// values of the right shape (a serial and model, a PEM certificate chain
// for the X.509 modes, a derived key for symmetric-key, a TPM
// registration ID), then hostile board values (see
// fwtemplates.Template.CheckSample). A template that passes here renders
// for every board whose own values are valid; one that does not stops
// the station before the first board, with a *TemplateError naming the
// template, the attestation and, when one is at fault, the setting.
//
// On an X.509 line, template.certificate_path is also where the station
// writes each board's certificate chain before the configuration (see
// the write step): it must be a file name the board takes (an absolute,
// clean path) other than template.path, or CheckTemplate returns a
// *ConfigError for it.
//
// New calls it; a caller may call it first, before it opens anything.
func CheckTemplate(cfg *Config, t *fwtemplates.Template) error {
	if err := checkCertificatePath(cfg); err != nil {
		return err
	}
	d, err := pipelineSample(cfg)
	if err != nil {
		return err
	}
	if err := checkOperationalTemplate(cfg, t, d); err != nil {
		return err
	}
	err = t.CheckSample(d)
	if err == nil {
		return nil
	}
	te := &TemplateError{Template: t.Name, Attestation: cfg.Attestation, Err: err}
	te.Setting, te.Missing = faultySetting(cfg, t, d)
	var fe *fwtemplates.Error
	if te.Setting == "" && errors.As(err, &fe) &&
		(fe.Field == "CertificateChain" && d.CertificateChain == "" || fe.Field == "DerivedKey" && d.DerivedKey == "") {
		te.unset = fe.Field
	}
	return te
}

// checkCertificatePath refuses, on an X.509 line, a
// template.certificate_path that the station cannot write the board's
// certificate chain to.
func checkCertificatePath(cfg *Config) error {
	p := cfg.Template.CertificatePath
	if DPSAttestation(cfg.Attestation) != "x509" || p == "" {
		return nil
	}
	bad := func(msg string) error {
		return &ConfigError{Field: "template.certificate_path", Msg: fmt.Sprintf("%q: %s", p, msg)}
	}
	switch {
	case !strings.HasPrefix(p, "/"):
		return bad("the station writes the board's certificate chain to this file on the board, so it must be an absolute path (as /lfs/zerotouch/device.pem), not a URI or a relative path")
	case p == "/":
		return bad("is the root folder, not a file")
	case path.Clean(p) != p:
		return bad(fmt.Sprintf("not a clean path on the board: write it as %s", path.Clean(p)))
	case strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return bad("holds a control character")
	case p == cfg.Template.Path:
		return bad("is also template.path: the configuration would overwrite the certificate; give the certificate a file of its own")
	}
	return nil
}

// pipelineSample is the Data provision gives the template, with the
// board's part made up: the line's settings as they are, sampleBoard for
// the board, sample values for what the board's identity yields.
func pipelineSample(cfg *Config) (fwtemplates.Data, error) {
	dpsAtt := DPSAttestation(cfg.Attestation)
	sample := fwtemplates.SampleData(dpsAtt)
	d := fwtemplates.Data{IDScope: cfg.IDScope, GlobalEndpoint: cfg.GlobalEndpoint, Serial: sampleBoard.Serial, Model: sampleBoard.Model,
		Custom: cfg.Template.Custom, CertificatePath: cfg.Template.CertificatePath, KeyURI: cfg.Template.KeyURI, Attestation: dpsAtt,
		OperationalCertificatePath: cfg.operationalCertificatePath()}
	bad := func(field string, err error) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf("for a board %+v: %v", sampleBoard, err)}
	}
	switch cfg.Attestation {
	case ModeTPM:
		// The EK gives it: lowercase base32 of a SHA-256.
		d.RegistrationID = sample.RegistrationID
	case ModeX509TPM, ModeX509Keygen, ModeX509StationKey, ModeSymmetricKey:
		max := regid.MaxLen
		if cfg.Attestation != ModeSymmetricKey {
			max = regid.MaxLenX509
		}
		t, err := identityTemplate(cfg.RegistrationID)
		if err != nil {
			return d, bad("registration_id", err)
		}
		id, err := renderID(t, sampleBoard)
		if err == nil {
			err = regid.Check(id, max)
		}
		if err != nil {
			return d, bad("registration_id", err)
		}
		d.RegistrationID = id
		if cfg.Attestation == ModeSymmetricKey {
			d.DerivedKey = sample.DerivedKey
		} else {
			d.CertificateChain = sample.CertificateChain
		}
	}
	if cfg.DeviceID != "" {
		t, err := identityTemplate(cfg.DeviceID)
		if err != nil {
			return d, bad("device_id", err)
		}
		if d.DeviceID, err = renderDeviceID(t, sampleBoard); err != nil {
			return d, bad("device_id", err)
		}
	}
	return d, nil
}

// settingOf maps the Data fields that come from the configuration to
// their keys.
var settingOf = map[string]string{
	"IDScope":         "id_scope",
	"GlobalEndpoint":  "global_endpoint",
	"DeviceID":        "device_id",
	"CertificatePath": "template.certificate_path",
	"KeyURI":          "template.key_uri",
}

// missingKey is text/template's error for .Custom.NAME when the line's
// custom settings lack NAME (Custom is the only map in Data).
var missingKey = regexp.MustCompile(`map has no entry for key "([^"]*)"`)

// faultySetting names the configuration key behind the template's
// failure on d, and whether it is missing rather than set to a value the
// template cannot take; "" when the template itself is at fault.
func faultySetting(cfg *Config, t *fwtemplates.Template, d fwtemplates.Data) (string, bool) {
	_, err := t.Render(d)
	if err == nil {
		return "", false // a hostile board value failed: the template's fault
	}
	var fe *fwtemplates.Error
	if errors.As(err, &fe) && fe.Field != "" {
		if fe.Field == "RegistrationID" && cfg.Attestation != ModeTPM {
			return "registration_id", false
		}
		s, ok := settingOf[fe.Field]
		if !ok {
			return "", false
		}
		return s, fieldValue(d, fe.Field) == ""
	}
	if m := missingKey.FindStringSubmatch(err.Error()); m != nil {
		return "template.custom." + m[1], true
	}
	// A value the template cannot take without saying which field (a
	// function's error): the setting that, put back to a sample value,
	// lets the template render.
	sample := fwtemplates.SampleData(d.Attestation)
	try := func(change func(*fwtemplates.Data)) bool {
		d2 := d
		change(&d2)
		_, err := t.Render(d2)
		return err == nil
	}
	for _, f := range []struct {
		setting string
		set     bool
		change  func(*fwtemplates.Data)
	}{
		{"template.certificate_path", d.CertificatePath != "", func(d *fwtemplates.Data) { d.CertificatePath = sample.CertificatePath }},
		{"template.key_uri", d.KeyURI != "", func(d *fwtemplates.Data) { d.KeyURI = sample.KeyURI }},
		{"global_endpoint", true, func(d *fwtemplates.Data) { d.GlobalEndpoint = sample.GlobalEndpoint }},
		{"device_id", d.DeviceID != "", func(d *fwtemplates.Data) { d.DeviceID = sample.DeviceID }},
	} {
		if f.set && try(f.change) {
			return f.setting, false
		}
	}
	for _, k := range slices.Sorted(maps.Keys(d.Custom)) {
		if try(func(d *fwtemplates.Data) {
			c := maps.Clone(d.Custom)
			c[k] = "sample"
			d.Custom = c
		}) {
			return "template.custom." + k, false
		}
	}
	return "", false
}

// fieldValue is d's value of a string field that settingOf names.
func fieldValue(d fwtemplates.Data, field string) string {
	switch field {
	case "IDScope":
		return d.IDScope
	case "GlobalEndpoint":
		return d.GlobalEndpoint
	case "DeviceID":
		return d.DeviceID
	case "CertificatePath":
		return d.CertificatePath
	case "KeyURI":
		return d.KeyURI
	}
	return ""
}
