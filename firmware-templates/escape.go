package fwtemplates

// Escaping by default. After a template is parsed, escapeTree appends an
// internal command to every action that outputs a value and does not
// already end in one of the escaping functions (see escapers). At render
// time that command records the value and writes a placeholder; after the
// template has run, substitute scans the output for the format to find
// where each placeholder landed (inside a JSON string, a TOML literal
// string, a C comment, a CSV field, ...) and writes the value escaped for
// that place. Working on the real output, after if, range, with and
// template have done their work, the context is never guessed from the
// template's text.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/template"
	tparse "text/template/parse"
	"unicode/utf8"
)

// escapeFunc is the name of the internal command escapeTree appends. It is
// bound only in the clone a render runs (see Template.Render), so a
// template cannot call it: Parse refuses the name as an unknown function.
const escapeFunc = "_fwtemplates_escape"

// escapers are the functions whose output an action writes as it is: the
// package's escaping functions, whose output is final for their format,
// and raw, the explicit opt-out.
func escapers() []string {
	return []string{"json", "toml", "cstring", "cstringlines", "cmacro", "csv", "nvs", "nvskey", "raw"}
}

// action describes an action that writes a value, for errors.
type action struct {
	line  int    // line in the template text
	text  string // the action as written, e.g. {{.Serial}}
	field string // the Data field it outputs when it is a plain field (Serial, Custom.line), else ""
}

// escapeTree appends the escape command to every value-outputting action
// of every template in t's set that does not end in an escaper, and
// returns those actions, indexed by the number the command passes, and
// the actions that end in raw.
func escapeTree(t *template.Template) (escaped, raw []action) {
	w := &escapeWalker{final: escapers()}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			w.list(tt.Tree, tt.Tree.Root)
		}
	}
	return w.actions, w.raw
}

type escapeWalker struct {
	final   []string
	actions []action
	raw     []action
}

func (w *escapeWalker) list(tree *tparse.Tree, l *tparse.ListNode) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		switch n := n.(type) {
		case *tparse.ActionNode:
			w.action(tree, n)
		case *tparse.IfNode:
			w.list(tree, n.List)
			w.list(tree, n.ElseList)
		case *tparse.RangeNode:
			w.list(tree, n.List)
			w.list(tree, n.ElseList)
		case *tparse.WithNode:
			w.list(tree, n.List)
			w.list(tree, n.ElseList)
		case *tparse.ListNode:
			w.list(tree, n)
		}
		// Text, comments, {{template}}, {{break}} and {{continue}} write no
		// value of their own; a called template's actions are escaped in
		// its own tree.
	}
}

func (w *escapeWalker) action(tree *tparse.Tree, n *tparse.ActionNode) {
	if len(n.Pipe.Decl) > 0 || len(n.Pipe.Cmds) == 0 {
		return // {{$x := ...}} and {{$x = ...}} write nothing
	}
	a := action{text: n.String(), field: fieldOf(n.Pipe)}
	loc, _ := tree.ErrorContext(n)
	if i := strings.LastIndexByte(loc, ':'); i > 0 {
		if j := strings.LastIndexByte(loc[:i], ':'); j >= 0 {
			a.line, _ = strconv.Atoi(loc[j+1 : i])
		}
	}
	if w.endsInEscaper(n.Pipe) {
		last := n.Pipe.Cmds[len(n.Pipe.Cmds)-1]
		if id, ok := last.Args[0].(*tparse.IdentifierNode); ok && id.Ident == "raw" {
			switch {
			case len(last.Args) == 2 && len(n.Pipe.Cmds) == 1: // {{raw .Serial}}
				a.field = fieldOf(&tparse.PipeNode{Cmds: []*tparse.CommandNode{{Args: last.Args[1:]}}})
			case len(last.Args) == 1: // {{.Serial | raw}}
				a.field = fieldOf(&tparse.PipeNode{Cmds: n.Pipe.Cmds[:len(n.Pipe.Cmds)-1]})
			}
			w.raw = append(w.raw, a)
		}
		return
	}
	id := len(w.actions)
	w.actions = append(w.actions, a)
	n.Pipe.Cmds = append(n.Pipe.Cmds, &tparse.CommandNode{
		NodeType: tparse.NodeCommand,
		Pos:      n.Pos,
		Args: []tparse.Node{
			tparse.NewIdentifier(escapeFunc).SetTree(nil).SetPos(n.Pos),
			&tparse.NumberNode{NodeType: tparse.NodeNumber, Pos: n.Pos, IsInt: true, Int64: int64(id), Text: strconv.Itoa(id)},
		},
	})
}

// endsInEscaper reports whether the pipeline's last command is a call of
// an escaper, looking inside a parenthesized last command.
func (w *escapeWalker) endsInEscaper(p *tparse.PipeNode) bool {
	last := p.Cmds[len(p.Cmds)-1]
	if len(last.Args) == 0 {
		return false
	}
	switch a := last.Args[0].(type) {
	case *tparse.IdentifierNode:
		return slices.Contains(w.final, a.Ident)
	case *tparse.PipeNode:
		return len(last.Args) == 1 && len(a.Decl) == 0 && len(a.Cmds) > 0 && w.endsInEscaper(a)
	}
	return false
}

// fieldOf returns the Data field a pipeline outputs when it is just that
// field: "Serial" for {{.Serial}}, "Custom.line" for {{.Custom.line}}.
func fieldOf(p *tparse.PipeNode) string {
	if len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return ""
	}
	if f, ok := p.Cmds[0].Args[0].(*tparse.FieldNode); ok {
		return strings.Join(f.Ident, ".")
	}
	return ""
}

// recorder is one render's escape command: it keeps each value and writes
// a placeholder that no value can forge, as it holds a random nonce.
type recorder struct {
	prefix string
	values []recorded
}

type recorded struct {
	action int
	value  any
}

func newRecorder() *recorder {
	var nonce [12]byte
	rand.Read(nonce[:])
	return &recorder{prefix: "\x00zt" + hex.EncodeToString(nonce[:]) + ":"}
}

func (r *recorder) escape(action int, v any) string {
	r.values = append(r.values, recorded{action: action, value: v})
	return r.prefix + strconv.Itoa(len(r.values)-1) + "\x00"
}

// substitute replaces the placeholders in out by their values, escaped
// for where each landed in a file of the given format.
func substitute(format string, out []byte, r *recorder, actions []action) ([]byte, error) {
	if len(r.values) == 0 {
		return out, nil
	}
	// The skeleton is out with each placeholder replaced by one neutral
	// byte, at the offsets in at: the scanners read it with lookahead.
	type piece struct {
		text  []byte
		value int // index in r.values, or -1 for text only
	}
	var (
		pieces []piece
		skel   []byte
		at     []int
	)
	for rest := out; len(rest) > 0; {
		i := bytes.Index(rest, []byte(r.prefix))
		if i < 0 {
			pieces = append(pieces, piece{text: rest, value: -1})
			skel = append(skel, rest...)
			break
		}
		end := bytes.IndexByte(rest[i+len(r.prefix):], 0)
		if end < 0 {
			return nil, errors.New("internal error: a value placeholder does not end")
		}
		n, err := strconv.Atoi(string(rest[i+len(r.prefix) : i+len(r.prefix)+end]))
		if err != nil || n < 0 || n >= len(r.values) {
			return nil, errors.New("internal error: unknown value placeholder")
		}
		pieces = append(pieces, piece{text: rest[:i], value: n})
		skel = append(skel, rest[:i]...)
		at = append(at, len(skel))
		skel = append(skel, 'a')
		rest = rest[i+len(r.prefix)+end+1:]
	}
	ctxs := contexts(format, skel, at)
	var b bytes.Buffer
	k := 0
	for _, p := range pieces {
		b.Write(p.text)
		if p.value < 0 {
			continue
		}
		c := ctxs[k]
		k++
		rec := r.values[p.value]
		s, err := c.escape(rec.value)
		if err != nil {
			a := actions[rec.action]
			return nil, &Error{Kind: ErrRender, Line: a.line, Field: a.field,
				Err: fmt.Errorf("%s %s: %w", a.text, c.describe(), err)}
		}
		b.WriteString(s)
	}
	return b.Bytes(), nil
}

// ctxKind is where in a file of its format a value lands.
type ctxKind int

const (
	ctxText          ctxKind = iota // text format: written as it is
	ctxInvalid                      // no value can go here; valueContext.err says why
	ctxJSONString                   // inside a JSON string literal
	ctxJSONValue                    // where a JSON value goes
	ctxTOMLString                   // inside a TOML basic string, "..." or """..."""
	ctxTOMLLiteral                  // inside a TOML literal string, '...'
	ctxTOMLMLLiteral                // inside a TOML multi-line literal string, '''...'''
	ctxTOMLComment                  // in a TOML # comment
	ctxTOMLValue                    // where a TOML value (or key) goes
	ctxCString                      // inside a C string literal
	ctxCChar                        // inside a C character literal
	ctxCComment                     // in a C comment, /* */ or //
	ctxCCode                        // in C code or a directive, outside literals and comments
	ctxCSVField                     // a whole CSV field
	ctxCSVQuoted                    // inside a quoted CSV field
	ctxCSVPartial                   // part of an unquoted CSV field, with other text
	ctxCSVComment                   // in a # comment line of a CSV
)

// valueContext is a ctxKind with what the escaper needs to know of the
// text around the value.
type valueContext struct {
	kind ctxKind
	// ctxCString, ctxCChar: the text before would join the value's first
	// character (an unfinished octal or hex escape, or ??), so it is
	// written as an octal escape.
	escFirst bool
	// ctxCString, ctxCChar: the text before and after would form a
	// trigraph if the value were empty.
	emptyJoins bool
	// CSV: the value starts a physical line, where a # makes a comment.
	lineStart bool
	where     string // ctxInvalid: where the value is
	err       string // ctxInvalid: why it cannot be there
}

func (c valueContext) describe() string {
	switch c.kind {
	case ctxJSONString:
		return "in a JSON string"
	case ctxJSONValue:
		return "as a JSON value"
	case ctxTOMLString:
		return "in a TOML basic string"
	case ctxTOMLLiteral:
		return "in a TOML literal string ('...')"
	case ctxTOMLMLLiteral:
		return "in a TOML multi-line literal string ('''...''')"
	case ctxTOMLComment:
		return "in a TOML comment"
	case ctxTOMLValue:
		return "as a TOML value"
	case ctxCString:
		return "in a C string literal"
	case ctxCChar:
		return "in a C character literal"
	case ctxCComment:
		return "in a C comment"
	case ctxCCode:
		return "in C code"
	case ctxCSVField:
		return "as a CSV field"
	case ctxCSVQuoted:
		return "in a quoted CSV field"
	case ctxCSVPartial:
		return "in part of a CSV field"
	case ctxCSVComment:
		return "in a CSV comment line"
	case ctxInvalid:
		return c.where
	}
	return "in text"
}

// contexts returns the context of each neutral byte at the offsets at in
// the skeleton s of a file of the given format.
func contexts(format string, s []byte, at []int) []valueContext {
	switch format {
	case FormatJSON:
		return jsonContexts(s, at)
	case FormatTOML:
		return tomlContexts(s, at)
	case FormatCHeader:
		return cContexts(s, at)
	case FormatNVSCSV:
		return csvContexts(s, at)
	}
	return make([]valueContext, len(at)) // ctxText
}

// valueAt reports whether offset i of the skeleton is a value's.
func valueAt(at []int, i int) bool {
	_, ok := slices.BinarySearch(at, i)
	return ok
}

func invalid(where, why string) valueContext {
	return valueContext{kind: ctxInvalid, where: where, err: why}
}

const errEscape = "it would be inside an escape sequence the template text starts"

func jsonContexts(s []byte, at []int) []valueContext {
	out := make([]valueContext, 0, len(at))
	inString := false
	esc := 0 // -1: after a backslash; n > 0: hex digits of \u left
	for i := 0; i < len(s); i++ {
		if len(out) < len(at) && at[len(out)] == i {
			switch {
			case !inString:
				out = append(out, valueContext{kind: ctxJSONValue})
			case esc != 0:
				out = append(out, invalid("in a JSON string", errEscape))
			default:
				out = append(out, valueContext{kind: ctxJSONString})
			}
			esc = 0
			continue
		}
		c := s[i]
		switch {
		case !inString:
			inString = c == '"'
		case esc == -1:
			esc = 0
			if c == 'u' {
				esc = 4
			}
		case esc > 0:
			esc--
		case c == '\\':
			esc = -1
		case c == '"':
			inString = false
		}
	}
	return out
}

func tomlContexts(s []byte, at []int) []valueContext {
	const (
		bare = iota
		comment
		basic
		mlBasic
		literal
		mlLiteral
	)
	out := make([]valueContext, 0, len(at))
	state := bare
	esc := 0 // -1: after a backslash; -2: after a line-ending backslash; n > 0: hex digits left
	// closes returns how many bytes of delimiter q end a multi-line string
	// at i: three to five quotes (up to two belong to the string).
	closes := func(i int, q byte) int {
		n := 0
		for i+n < len(s) && s[i+n] == q && n < 5 && !valueAt(at, i+n) {
			n++
		}
		if n < 3 {
			return 0
		}
		return n
	}
	bareKey := func(i int) bool {
		if i < 0 || i >= len(s) || valueAt(at, i) {
			return false
		}
		c := s[i]
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}
	for i := 0; i < len(s); i++ {
		if len(out) < len(at) && at[len(out)] == i {
			var c valueContext
			switch state {
			case bare:
				c = valueContext{kind: ctxTOMLValue}
				if bareKey(i-1) || bareKey(i+1) {
					c = invalid("as a TOML value", "it touches a bare key or value; a value is written as a quoted string, so it needs space or punctuation around it, or quotes around the action")
				}
			case comment:
				c = valueContext{kind: ctxTOMLComment}
			case basic, mlBasic:
				c = valueContext{kind: ctxTOMLString}
				if esc != 0 {
					c = invalid("in a TOML basic string", errEscape)
				}
			case literal:
				c = valueContext{kind: ctxTOMLLiteral}
			case mlLiteral:
				c = valueContext{kind: ctxTOMLMLLiteral}
			}
			out = append(out, c)
			esc = 0
			continue
		}
		c := s[i]
		switch state {
		case bare:
			switch c {
			case '#':
				state = comment
			case '"':
				state = basic
				if closes(i, '"') > 0 {
					state, i = mlBasic, i+2
				}
			case '\'':
				state = literal
				if closes(i, '\'') > 0 {
					state, i = mlLiteral, i+2
				}
			}
		case comment:
			if c == '\n' {
				state = bare
			}
		case basic, mlBasic:
			switch {
			case esc == -2:
				if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
					esc = 0
					i--
				}
			case esc == -1:
				esc = 0
				switch c {
				case 'u':
					esc = 4
				case 'U':
					esc = 8
				case ' ', '\t', '\n', '\r':
					if state == mlBasic {
						esc = -2
					}
				}
			case esc > 0:
				esc--
			case c == '\\':
				esc = -1
			case state == basic && (c == '"' || c == '\n'):
				state = bare
			case state == mlBasic && c == '"':
				if n := closes(i, '"'); n > 0 {
					state, i = bare, i+n-1
				}
			}
		case literal:
			if c == '\'' || c == '\n' {
				state = bare
			}
		case mlLiteral:
			if c == '\'' {
				if n := closes(i, '\''); n > 0 {
					state, i = bare, i+n-1
				}
			}
		}
	}
	return out
}

func cContexts(s []byte, at []int) []valueContext {
	const (
		code = iota
		str
		chr
		block
		line
	)
	const (
		escNone   = 0
		escAfter  = -1 // after a backslash
		escOctal1 = -2 // \N: up to two more octal digits would join
		escOctal2 = -3 // \NN: one more would join
		escHex    = -4 // \x...: any hex digit would join
		// n > 0: hex digits of \u or \U left
	)
	out := make([]valueContext, 0, len(at))
	state, esc := code, escNone
	ident := func(i int) bool {
		if i < 0 || i >= len(s) || valueAt(at, i) {
			return false
		}
		c := s[i]
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
	}
	for i := 0; i < len(s); i++ {
		if len(out) < len(at) && at[len(out)] == i {
			var c valueContext
			switch state {
			case code:
				c = valueContext{kind: ctxCCode}
				if ident(i-1) || ident(i+1) {
					c = invalid("in C code", "it touches an identifier; a value in C code is written as a string literal (use cmacro to build a macro name)")
				}
			case str, chr:
				c = valueContext{kind: ctxCString}
				if state == chr {
					c.kind = ctxCChar
				}
				switch {
				case esc == escAfter || esc > 0:
					c = invalid(c.describe(), errEscape)
				case esc != escNone:
					c.escFirst = true
				case i >= 2 && s[i-1] == '?' && s[i-2] == '?' && !valueAt(at, i-1) && !valueAt(at, i-2):
					c.escFirst = true
				}
				c.emptyJoins = trigraphAcross(s, at, i)
			case block, line:
				c = valueContext{kind: ctxCComment}
			}
			out = append(out, c)
			esc = escNone
			continue
		}
		c := s[i]
		// Translation phase 2: a backslash-newline joins lines anywhere.
		if c == '\\' && i+1 < len(s) && (s[i+1] == '\n' || s[i+1] == '\r' && i+2 < len(s) && s[i+2] == '\n') {
			if s[i+1] == '\r' {
				i++
			}
			i++
			continue
		}
		switch state {
		case code:
			switch {
			case c == '"':
				state = str
			case c == '\'':
				state = chr
			case c == '/' && i+1 < len(s) && s[i+1] == '*' && !valueAt(at, i+1):
				state, i = block, i+1
			case c == '/' && i+1 < len(s) && s[i+1] == '/' && !valueAt(at, i+1):
				state, i = line, i+1
			}
		case str, chr:
			octal := c >= '0' && c <= '7'
			hexDigit := octal || c >= '8' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
			switch {
			case esc == escAfter:
				switch {
				case octal:
					esc = escOctal1
				case c == 'x':
					esc = escHex
				case c == 'u':
					esc = 4
				case c == 'U':
					esc = 8
				default:
					esc = escNone
				}
				continue
			case esc == escOctal1 && octal:
				esc = escOctal2
				continue
			case esc == escOctal2 && octal, esc == escHex && hexDigit:
				if esc == escOctal2 {
					esc = escNone
				}
				continue
			case esc > 0:
				esc--
				continue
			}
			esc = escNone
			switch {
			case c == '\\':
				esc = escAfter
			case c == '"' && state == str, c == '\'' && state == chr, c == '\n':
				state = code
			}
		case block:
			if c == '*' && i+1 < len(s) && s[i+1] == '/' && !valueAt(at, i+1) {
				state, i = code, i+1
			}
		case line:
			if c == '\n' {
				state = code
			}
		}
	}
	return out
}

func csvContexts(s []byte, at []int) []valueContext {
	const (
		fieldStart = iota
		unquoted
		quoted
		closed // after a quoted field's closing quote
		comment
	)
	out := make([]valueContext, 0, len(at))
	state := fieldStart
	lineStart := func(i int) bool { return i == 0 || (s[i-1] == '\n' || s[i-1] == '\r') && !valueAt(at, i-1) }
	fieldEnd := func(i int) bool {
		return i >= len(s) || !valueAt(at, i) && (s[i] == ',' || s[i] == '\n' || s[i] == '\r')
	}
	for i := 0; i < len(s); i++ {
		if len(out) < len(at) && at[len(out)] == i {
			var c valueContext
			switch state {
			case comment:
				c = valueContext{kind: ctxCSVComment}
			case quoted:
				c = valueContext{kind: ctxCSVQuoted, lineStart: lineStart(i)}
			case fieldStart:
				c = valueContext{kind: ctxCSVPartial, lineStart: lineStart(i)}
				if fieldEnd(i + 1) {
					c.kind = ctxCSVField
				}
				state = unquoted
			case unquoted:
				c = valueContext{kind: ctxCSVPartial}
			case closed:
				c = invalid("in a CSV field", "it follows the closing quote of the field")
			}
			out = append(out, c)
			continue
		}
		c := s[i]
		switch state {
		case comment:
			if c == '\n' || c == '\r' {
				state = fieldStart
			}
		case fieldStart, unquoted, closed:
			switch {
			case c == ',' || c == '\n' || c == '\r':
				state = fieldStart
			case state == fieldStart && c == '#' && lineStart(i):
				state = comment
			case state == fieldStart && c == '"':
				state = quoted
			default:
				state = unquoted
			}
		case quoted:
			if c == '"' {
				if i+1 < len(s) && s[i+1] == '"' && !valueAt(at, i+1) {
					i++
				} else {
					state = closed
				}
			}
		}
	}
	return out
}

// trigraphAcross reports whether the text around the value at offset i
// of the skeleton s would form a trigraph without it.
func trigraphAcross(s []byte, at []int, i int) bool {
	var around []byte
	for j := max(i-2, 0); j < i; j++ {
		if !valueAt(at, j) {
			around = append(around, s[j])
		}
	}
	before := len(around)
	for j := i + 1; j < min(i+3, len(s)) && !valueAt(at, j); j++ {
		around = append(around, s[j])
	}
	for k := 0; k+2 < len(around); k++ {
		if k < before && k+2 >= before && around[k] == '?' && around[k+1] == '?' && strings.IndexByte("=(/)'<!>-", around[k+2]) >= 0 {
			return true
		}
	}
	return false
}

// escape writes v for its context, or says why it cannot go there.
func (c valueContext) escape(v any) (string, error) {
	switch c.kind {
	case ctxText:
		return stringify(v), nil
	case ctxInvalid:
		return "", errors.New(c.err)
	case ctxJSONString:
		q, err := jsonValue(stringify(v))
		if err != nil {
			return "", err
		}
		return q[1 : len(q)-1], nil
	case ctxJSONValue:
		return jsonValue(v)
	case ctxTOMLString:
		q, err := tomlString(stringify(v))
		if err != nil {
			return "", err
		}
		return q[1 : len(q)-1], nil
	case ctxTOMLLiteral, ctxTOMLMLLiteral:
		return tomlLiteral(stringify(v), c.kind == ctxTOMLMLLiteral)
	case ctxTOMLComment:
		return tomlString(stringify(v))
	case ctxTOMLValue:
		return tomlValue(v)
	case ctxCString, ctxCChar:
		s := stringify(v)
		if s == "" && c.emptyJoins {
			return "", errors.New("value is empty, and the ? before it and the text after it would form a trigraph")
		}
		return cContents(s, c.kind == ctxCChar, c.escFirst, true)
	case ctxCComment:
		q, err := cString(stringify(v))
		if err != nil {
			return "", err
		}
		// Neither end the comment nor start one inside it.
		return strings.ReplaceAll(strings.ReplaceAll(q, "*/", `*\057`), "/*", `/\052`), nil
	case ctxCCode:
		if n, ok := integer(v); ok {
			return n, nil
		}
		return cString(stringify(v))
	case ctxCSVComment:
		return jsonValue(stringify(v))
	case ctxCSVField, ctxCSVQuoted, ctxCSVPartial:
		s := stringify(v)
		if err := checkNVSString(s); err != nil {
			return "", err
		}
		if c.lineStart && strings.HasPrefix(s, "#") && c.kind != ctxCSVField {
			return "", errors.New("value starts with # at the start of a line, which nvs_partition_gen drops as a comment")
		}
		switch c.kind {
		case ctxCSVField:
			return csvField(s), nil
		case ctxCSVQuoted:
			return strings.ReplaceAll(s, `"`, `""`), nil
		}
		if i := strings.IndexAny(s, ",\"\r\n"); i >= 0 {
			return "", fmt.Errorf("value holds %q, which needs the CSV field quoted, but the field holds other text too: put the action alone in its field or inside the field's quotes", s[i])
		}
		return s, nil
	}
	return "", fmt.Errorf("internal error: context %d", c.kind)
}

// stringify returns v as text/template prints it.
func stringify(v any) string {
	switch v := v.(type) {
	case nil:
		return "<no value>"
	case string:
		return v
	}
	return fmt.Sprint(v)
}

// integer returns v in decimal when it is an integer.
func integer(v any) (string, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(rv.Int(), 10), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(rv.Uint(), 10), true
	}
	return "", false
}

// tomlValue renders v as a TOML value: an integer or a bool as itself, a
// map[string]string as an inline table with sorted, quoted keys, anything
// else as a basic string.
func tomlValue(v any) (string, error) {
	if n, ok := integer(v); ok {
		return n, nil
	}
	switch v := v.(type) {
	case bool:
		return strconv.FormatBool(v), nil
	case map[string]string:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			qk, err := tomlString(k)
			if err != nil {
				return "", fmt.Errorf("key %q: %w", k, err)
			}
			qv, err := tomlString(v[k])
			if err != nil {
				return "", fmt.Errorf("key %q: %w", k, err)
			}
			parts[i] = qk + " = " + qv
		}
		if len(parts) == 0 {
			return "{}", nil
		}
		return "{ " + strings.Join(parts, ", ") + " }", nil
	}
	return tomlString(stringify(v))
}

// tomlLiteral checks that s can stand in a TOML literal string, which has
// no escapes: no quote ('), and no control character but tab (and newline
// in a multi-line one).
func tomlLiteral(s string, multiLine bool) (string, error) {
	if !utf8.ValidString(s) {
		return "", errNotUTF8
	}
	for i, r := range s {
		if r == '\'' || r < 0x20 && r != '\t' && !(multiLine && r == '\n') || r == 0x7f {
			return "", fmt.Errorf("value holds %q at offset %d, which a TOML literal string cannot; quote the action with \"...\" instead", r, i)
		}
	}
	return s, nil
}

// cContents renders s as the inside of a C string literal, or of a
// character literal (char), where ' is escaped too. With openEnds, other
// text surrounds it inside the literal: a ? at either end is written as
// \077, so that no trigraph can form with the text around, and escFirst
// writes the first byte as an octal escape, as the text before would
// join it. cString is cContents between quotes.
func cContents(s string, char, escFirst, openEnds bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0:
			return "", fmt.Errorf("value holds a NUL byte at offset %d, which would end the C string there", i)
		case openEnds && (i == 0 && escFirst || c == '?' && (i == 0 || i == len(s)-1)):
			fmt.Fprintf(&b, `\%03o`, c)
		case c == '"' || c == '\\' || char && c == '\'':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '?' && (i > 0 && s[i-1] == '?' || i+1 < len(s) && s[i+1] == '?'):
			b.WriteString(`\?`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}
