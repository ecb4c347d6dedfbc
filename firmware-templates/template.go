package fwtemplates

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/template"
)

// builtins maps a built-in template's name to its file and format.
var builtins = map[string]struct{ file, format string }{
	"json":            {"builtin/json.tmpl", FormatJSON},
	"aziot-toml":      {"builtin/aziot-toml.tmpl", FormatTOML},
	"c-header":        {"builtin/c-header.tmpl", FormatCHeader},
	"esp-idf-nvs-csv": {"builtin/esp-idf-nvs-csv.tmpl", FormatNVSCSV},
}

//go:embed builtin/*.tmpl
var builtinFS embed.FS

// Names returns the names of the built-in templates, sorted.
func Names() []string {
	names := make([]string, 0, len(builtins))
	for n := range builtins {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Builtin returns the built-in template called name. For a name it does
// not know, the error wraps ErrUnknown and lists the names it knows.
func Builtin(name string) (*Template, error) {
	b, ok := builtins[name]
	if !ok {
		return nil, fmt.Errorf("%w %q; the built-in templates are %s", ErrUnknown, name, strings.Join(Names(), ", "))
	}
	text, err := builtinFS.ReadFile(b.file)
	if err != nil {
		return nil, fmt.Errorf("read built-in template %s: %w", name, err)
	}
	return parse(name, b.format, string(text))
}

// Template is a parsed firmware configuration template. It is safe for
// concurrent use: slots may Render with one Template at once.
type Template struct {
	Name   string // built-in name, or the name given to Parse (the file for Load)
	Format string // one of the Format constants; decides how output is escaped and validated
	tmpl   *template.Template
	// actions are the actions whose values are escaped (see escapeTree),
	// indexed by the number the escape command passes.
	actions []action
	raw     []action // the actions that end in raw
}

// Parse parses a custom template. Its format comes from name's extension
// (see FormatOf). A parse error (syntax, an unknown function) wraps
// ErrTemplate and says on which line. Parse cannot tell a misspelt field
// (.Nope) from a good one: Check can, and must run before the first board.
func Parse(name, text string) (*Template, error) {
	return parse(name, FormatOf(name), text)
}

func parse(name, format, text string) (*Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(funcs()).Parse(text)
	if err != nil {
		return nil, templateError(ErrTemplate, name, err)
	}
	tmpl := &Template{Name: name, Format: format, tmpl: t}
	if format != FormatText {
		tmpl.actions, tmpl.raw = escapeTree(t)
	}
	return tmpl, nil
}

// Load reads a custom template from file and parses it, named by the file,
// its format given by the file's extension (see FormatOf). Errors wrap
// ErrTemplate, and the file system's error when the file cannot be read.
func Load(file string) (*Template, error) {
	text, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	return Parse(file, string(text))
}

// Render renders the template for one board. It first checks that d has
// every field its attestation needs (Data.Validate), then runs the
// template, escaping each value for the place in the format where it lands
// (unless the action ends in an escaping function or raw; see the package
// documentation), and checks that the output is valid for the template's
// format, so it never returns a broken file. Errors wrap ErrRender, are an
// *Error, and name the template and, when the fault is a field, the field;
// a value that cannot go where the template puts it (a NUL byte in a C
// string, a quote in a TOML literal string) names the action and its line.
func (t *Template) Render(d Data) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, templateError(ErrRender, t.Name, err)
	}
	return t.execute(d)
}

// execute runs the template on d, escapes its values and validates the
// output.
func (t *Template) execute(d Data) ([]byte, error) {
	tmpl, rec := t.tmpl, (*recorder)(nil)
	if len(t.actions) > 0 {
		// Each render binds the escape command to its own recorder, in a
		// clone that shares the parse trees: Templates stay safe for
		// concurrent use.
		c, err := t.tmpl.Clone()
		if err != nil {
			return nil, templateError(ErrRender, t.Name, err)
		}
		rec = newRecorder()
		tmpl = c.Funcs(template.FuncMap{escapeFunc: rec.escape})
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, d); err != nil {
		return nil, templateError(ErrRender, t.Name, err)
	}
	out := b.Bytes()
	if rec != nil {
		var err error
		if out, err = substitute(t.Format, out, rec, t.actions); err != nil {
			var e *Error
			if !errors.As(err, &e) {
				e = &Error{Kind: ErrRender, Err: err}
			}
			e.Template = t.Name
			return nil, e
		}
	}
	if err := validate(t.Format, out); err != nil {
		return nil, &Error{Kind: ErrRender, Template: t.Name, Err: &formatError{format: t.Format, err: err}}
	}
	return out, nil
}

// formatError is output that is not valid for its format: what Render
// refuses after running the template, as against a value it refuses.
type formatError struct {
	format string
	err    error
}

func (e *formatError) Error() string { return e.format + " output: " + e.err.Error() }
func (e *formatError) Unwrap() error { return e.err }

// Check renders SampleData for each attestation and validates the output
// for the template's format: JSON parses; TOML parses; a C header has its
// include guard, ends every literal and comment and balances its
// conditionals; an NVS CSV has the right header, a namespace first, known
// types and encodings, keys of at most 15 characters and values that fit.
// Any failure, including a field the template names that Data does not
// have, wraps ErrTemplate: the station refuses to start on it.
//
// A template meant for one attestation only, or one that reads the line's
// Custom fields as .Custom.NAME, is checked with CheckSample instead.
func (t *Template) Check() error {
	for _, a := range Attestations() {
		if err := t.CheckSample(SampleData(a)); err != nil {
			return err
		}
	}
	return nil
}

// CheckSample is Check with the sample d: for a station, SampleData of the
// line's attestation with the line's Custom fields. After d itself, it
// renders d with hostile values, one field at a time, in the fields a
// board can influence (Serial, Model, RegistrationID, DeviceID) and in
// each Custom field that no raw action writes by name: values that try to close a string or field and add a
// key, a definition or a row (a second "registrationId"), control
// characters, long values. A render may refuse such a value; it fails the
// template when the output is not valid for its format, or when its
// structure (the keys of a JSON or TOML document, the lines of a C header
// outside literals and comments, the rows of a CSV) differs from the
// render of a plain value in the same field. That happens only to a value
// written with raw, or with the escaping function of another format.
//
// Errors wrap ErrTemplate (and ErrRender, with the render error's
// details); for a hostile value, Field names the field it was in, and
// Line the raw action that writes that field, if there is one.
func (t *Template) CheckSample(d Data) error {
	if _, err := t.Render(d); err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return &Error{Kind: ErrTemplate, Template: t.Name, Err: err}
		}
		return &Error{Kind: ErrTemplate, Template: t.Name, Line: e.Line, Field: e.Field,
			Err: &sampleError{attestation: d.Attestation, err: err, msg: e.Err.Error()}}
	}
	return t.checkHostile(d)
}

// sampleError says which sample failed; it keeps the render error in the
// chain but prints only its cause, as the outer Error already names the
// template, line and field.
type sampleError struct {
	attestation string
	msg         string
	err         error
}

func (e *sampleError) Error() string {
	return fmt.Sprintf("with sample data for %s attestation: %s", e.attestation, e.msg)
}
func (e *sampleError) Unwrap() error { return e.err }
