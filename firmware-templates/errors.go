package fwtemplates

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Sentinel errors; every error this package returns wraps one of them.
var (
	// ErrUnknown: Builtin was asked for a name it does not have.
	ErrUnknown = errors.New("unknown built-in firmware template")
	// ErrTemplate: a template cannot be parsed, or Check found that it
	// fails on sample data or renders output that is not valid for its
	// format. The station refuses to start on it.
	ErrTemplate = errors.New("bad firmware template")
	// ErrRender: one board's Data cannot be rendered (a field the
	// attestation needs is empty or invalid, a value the format cannot
	// carry, or output that would not be valid for the format).
	ErrRender = errors.New("cannot render firmware template")
)

// Error is the error type behind ErrTemplate and ErrRender: it names the
// template and, when known, the template line and the Data field at fault.
// errors.Is(err, ErrTemplate) or errors.Is(err, ErrRender) tells which kind
// it is; errors.As finds it for the details.
type Error struct {
	Kind     error  // ErrTemplate or ErrRender
	Template string // the template's name (a built-in name or a file)
	Line     int    // line in the template text, 0 when not known
	Field    string // the Data field at fault, "" when not known
	Err      error  // the cause
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v %q", e.Kind, e.Template)
	if e.Line > 0 {
		fmt.Fprintf(&b, " line %d", e.Line)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": field %s", e.Field)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

// Unwrap returns the kind and the cause, so errors.Is sees both.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// fieldError is what template functions and Data.Validate return for a
// value at fault; templateError lifts its field name into Error.Field.
type fieldError struct {
	field string
	msg   string
}

func (e *fieldError) Error() string { return e.field + " " + e.msg }

// templateError turns an error from text/template (parse or execute) into
// an *Error, taking the line number out of text/template's
// "template: NAME:LINE[:COL]: " prefix.
func templateError(kind error, name string, err error) *Error {
	e := &Error{Kind: kind, Template: name, Err: err}
	var fe *fieldError
	if errors.As(err, &fe) {
		e.Field = fe.field
		if err == error(fe) {
			// The field is named once, by Error.
			e.Err = &causeError{msg: fe.msg, err: fe}
		}
	}
	msg := err.Error()
	prefix := "template: " + name + ":"
	if !strings.HasPrefix(msg, prefix) {
		return e
	}
	m := lineRE.FindStringSubmatch(msg[len(prefix):])
	if m == nil {
		return e
	}
	e.Line, _ = strconv.Atoi(m[1])
	e.Err = &causeError{msg: m[2], err: err}
	return e
}

var lineRE = regexp.MustCompile(`^(\d+)(?::\d+)?: (?s:(.*))$`)

// causeError keeps text/template's error in the chain while printing it
// without the prefix that Error already says.
type causeError struct {
	msg string
	err error
}

func (e *causeError) Error() string { return e.msg }
func (e *causeError) Unwrap() error { return e.err }
