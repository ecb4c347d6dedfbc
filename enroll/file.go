package enroll

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"zerotouch/internal/regid"
	"zerotouch/internal/textsafe"
)

// MaxFileSize is the largest enrollment file ReadFile reads: 1 GiB, room
// for well over the 1,000,000 individual enrollments a DPS instance holds.
const MaxFileSize = 1 << 30

// maxFileErrors is how many errors ReadFile collects before it stops.
const maxFileErrors = 20

// ErrFile means an enrollment file could not be used. Every *FileError
// matches it with errors.Is.
var ErrFile = errors.New("invalid enrollment file")

// FileError is one thing wrong with an enrollment file: where it is and
// what it is. Its Error is "FILE:LINE: field: msg" for a CSV row (the line
// the row starts on), "FILE: item N: field: msg" for the Nth element of a
// JSON array, and "FILE: msg" for the file as a whole.
type FileError struct {
	File  string // the name given to ReadFile
	Line  int    // CSV: the line the row starts on; JSON: the item's index + 1 (see Item); 0: the whole file
	Item  bool   // Line counts the items of a JSON array, not lines
	Field string // the CSV column or JSON field at fault; empty when none is
	Err   error
}

func (e *FileError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	switch {
	case e.Line > 0 && e.Item:
		fmt.Fprintf(&b, ": item %d", e.Line)
	case e.Line > 0:
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	// A field name may come from the file itself (a CSV header): it is
	// escaped, as the values in the messages are quoted.
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(textsafe.Escape(e.Field))
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(textsafe.Escape(e.Err.Error()))
	} else {
		b.WriteString("invalid")
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *FileError) Unwrap() error { return e.Err }

// Is reports whether target is ErrFile.
func (e *FileError) Is(target error) bool { return target == ErrFile }

// CSV column names, as WriteCSV writes them; ReadFile matches them
// case-insensitively.
const (
	ColRegistrationID     = "registrationId"
	ColAttestation        = "attestation"
	ColEndorsementKey     = "endorsementKey"
	ColStorageRootKey     = "storageRootKey"
	ColCertificate        = "certificate"
	ColPrimaryKey         = "primaryKey"
	ColSecondaryKey       = "secondaryKey"
	ColDeviceID           = "deviceId"
	ColIoTHubHostName     = "iotHubHostName"
	ColProvisioningStatus = "provisioningStatus"
	ColIoTEdge            = "iotEdge"
	ColIoTHubs            = "iotHubs"
	ColAllocationPolicy   = "allocationPolicy"
)

// csvColumns are the columns in the order WriteCSV writes them.
var csvColumns = []string{
	ColRegistrationID, ColAttestation, ColEndorsementKey, ColStorageRootKey,
	ColCertificate, ColPrimaryKey, ColSecondaryKey, ColDeviceID,
	ColIoTHubHostName, ColProvisioningStatus, ColIoTEdge, ColIoTHubs,
	ColAllocationPolicy,
}

// Allocation policies (IndividualEnrollment.allocationPolicy), whose case
// a CSV may get wrong: validAllocation checks them.
var allocationPolicies = []string{AllocationHashed, AllocationGeoLatency, AllocationStatic, AllocationCustom}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// ReadFile reads the enrollments of an enrollment file from r: a JSON array
// of enrollments in the DPS REST shape (IndividualEnrollment, 2021-10-01),
// or a CSV with a header row. name is used in errors and picks the format
// by its extension (".json", ".csv", in any case); with any other name the
// content decides: a first non-space character '[' means JSON, anything
// else CSV. A UTF-8 byte order mark is skipped.
//
// CSV columns (names in any case; registrationId and attestation are
// required, an empty cell means unset): registrationId; attestation (tpm,
// x509 or symmetricKey); endorsementKey and storageRootKey (base64
// TPM2B_PUBLIC, tpm only); certificate (PEM, possibly over several lines
// of a quoted cell, or base64 DER; x509 only, its CN must be the
// registration ID); primaryKey and secondaryKey (base64, symmetricKey
// only); deviceId; iotHubHostName; provisioningStatus (enabled or
// disabled); iotEdge (true or false); iotHubs (separated by spaces or
// semicolons); allocationPolicy (hashed, geoLatency or static: custom
// needs a webhook, which only JSON can give). Every row makes an
// Enrollment whose Attestation has the part for its type filled in
// (x509: X509.ClientCertificates.Primary.Certificate).
//
// A JSON field the Enrollment type does not model is an error naming it,
// since the upload would otherwise drop it silently.
//
// Every enrollment is checked (Enrollment.Validate, and the X.509
// certificate's CN against the registration ID), and a registration ID
// twice in the file (DPS compares them case-insensitively) is an error
// naming both places. ReadFile collects up to 20 errors, each a
// *FileError (which matches ErrFile), and returns them joined with
// errors.Join, so one pass finds what to fix; on any error it returns no
// enrollments. A file larger than MaxFileSize is refused. An error reading
// r is returned wrapped, with any file errors found before it.
func ReadFile(r io.Reader, name string) ([]Enrollment, error) {
	return readFile(r, name, MaxFileSize)
}

// readFile is ReadFile with a size limit of limit bytes.
func readFile(r io.Reader, name string, limit int64) ([]Enrollment, error) {
	if name == "" {
		name = "input"
	}
	lr := &limitedReader{r: r, n: limit}
	br := bufio.NewReaderSize(lr, 64<<10)
	if b, _ := br.Peek(len(utf8BOM)); bytes.Equal(b, utf8BOM) {
		br.Discard(len(utf8BOM))
	}
	first, err := firstNonSpace(br)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			return nil, &FileError{File: name, Err: err}
		}
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if first == 0 {
		return nil, &FileError{File: name, Err: errors.New("the file is empty: want a JSON array of enrollments or a CSV with a header row")}
	}
	fr := &fileReader{name: name, seen: make(map[string]int), src: lr}
	switch ext := strings.ToLower(filepath.Ext(name)); {
	case ext == ".json", ext != ".csv" && first == '[':
		fr.readJSON(br)
	default:
		fr.readCSV(br)
	}
	if fr.ioErr != nil {
		return nil, errors.Join(append(fr.errs, fmt.Errorf("read %s: %w", name, fr.ioErr))...)
	}
	if len(fr.errs) > 0 {
		return nil, errors.Join(fr.errs...)
	}
	if len(fr.out) == 0 {
		return nil, &FileError{File: name, Err: errors.New("the file holds no enrollments")}
	}
	return fr.out, nil
}

// firstNonSpace returns the first byte after white space without consuming
// it, or 0 if there is none.
func firstNonSpace(br *bufio.Reader) (byte, error) {
	for n := 1; ; n++ {
		b, err := br.Peek(n)
		if len(b) == n {
			switch c := b[n-1]; c {
			case ' ', '\t', '\r', '\n':
				if n == br.Size() {
					return c, nil // a buffer of blanks: let the parser judge
				}
				continue
			default:
				return c, nil
			}
		}
		if err == io.EOF {
			return 0, nil
		}
		return 0, err
	}
}

// errTooLarge is what limitedReader reads past its limit.
var errTooLarge = errors.New("the file is larger than 1 GiB; split it")

// limitedReader reads up to n bytes from r and fails with errTooLarge if
// r holds more. It keeps the error that ended reading, other than io.EOF,
// so that a parser's error can be told from the reader's, and returns it
// again on every later Read.
type limitedReader struct {
	r   io.Reader
	n   int64
	err error
}

func (l *limitedReader) Read(p []byte) (n int, err error) {
	if l.err != nil {
		return 0, l.err // sticky: a parser may have swallowed it once
	}
	defer func() {
		if err != nil && err != io.EOF && l.err == nil {
			l.err = err
		}
	}()
	if l.n <= 0 {
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err = l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// fileReader collects the enrollments and errors of one file.
type fileReader struct {
	name  string
	out   []Enrollment
	errs  []error
	ioErr error
	seen  map[string]int // lower-case registration ID -> line or item
	item  bool           // positions are JSON items
	src   *limitedReader
}

// full reports whether no more errors should be collected.
func (fr *fileReader) full() bool { return len(fr.errs) >= maxFileErrors || fr.ioErr != nil }

func (fr *fileReader) fail(line int, field string, err error) {
	if len(fr.errs) == maxFileErrors-1 {
		fr.errs = append(fr.errs, &FileError{File: fr.name, Line: line, Item: fr.item, Field: field, Err: err},
			&FileError{File: fr.name, Line: line, Item: fr.item, Err: fmt.Errorf("stopped after %d errors; fix these and read the file again", maxFileErrors)})
		return
	}
	if len(fr.errs) < maxFileErrors {
		fr.errs = append(fr.errs, &FileError{File: fr.name, Line: line, Item: fr.item, Field: field, Err: err})
	}
}

// where names a line or item for messages.
func (fr *fileReader) where(n int) string {
	if fr.item {
		return "item " + strconv.Itoa(n)
	}
	return "line " + strconv.Itoa(n)
}

// readErr tells an error of the reader from a parser's: it records the
// reader's and returns true if err was one. A file too large is a file
// error; any other is the reader's own.
func (fr *fileReader) readErr(line int, err error) bool {
	rerr := fr.src.err
	switch {
	case rerr == nil || !errors.Is(err, rerr):
		return false
	case errors.Is(rerr, errTooLarge):
		fr.errs = append(fr.errs, &FileError{File: fr.name, Line: line, Item: fr.item, Err: rerr})
	default:
		fr.ioErr = rerr
	}
	return true
}

// note records registration ID id at line or item n, and reports
// whether it is new to the file: DPS compares registration IDs without
// regard to case.
func (fr *fileReader) note(n int, id string) bool {
	if id == "" {
		return true
	}
	key := strings.ToLower(id)
	if prev, dup := fr.seen[key]; dup {
		fr.fail(n, ColRegistrationID, fmt.Errorf("registration ID %q is also on %s (DPS ignores case)", id, fr.where(prev)))
		return false
	}
	fr.seen[key] = n
	return true
}

// add checks e, found at line or item n, and keeps it if it is sound.
func (fr *fileReader) add(n int, e Enrollment) {
	ok := fr.note(n, e.RegistrationID)
	for _, fe := range checkEnrollment(&e) {
		fr.fail(n, fe.field, fe.err)
		ok = false
	}
	if ok {
		fr.out = append(fr.out, e)
	}
}

type fieldErr struct {
	field string
	err   error
}

// checkEnrollment runs Validate's checks one by one, to name the field at
// fault, then the checks Validate leaves out, then Validate itself so
// that nothing it refuses gets through.
func checkEnrollment(e *Enrollment) []fieldErr {
	var errs []fieldErr
	idErr := checkRegistrationID(e.RegistrationID, e.Attestation.Type)
	if idErr != nil {
		errs = append(errs, fieldErr{ColRegistrationID, idErr})
	}
	if err := e.Attestation.validate(false); err != nil {
		errs = append(errs, fieldErr{"", err})
	} else if e.Attestation.Type == AttestationX509 && idErr == nil {
		c, _ := ParseCertificate(e.Attestation.X509.ClientCertificates.Primary.Certificate)
		if cn := c.Subject.CommonName; !strings.EqualFold(cn, e.RegistrationID) {
			errs = append(errs, fieldErr{ColCertificate, fmt.Errorf("the certificate's CN is %q, not the registration ID %q: a device registers with its CN", cn, e.RegistrationID)})
		}
	}
	if err := validStatus(e.ProvisioningStatus); err != nil {
		errs = append(errs, fieldErr{ColProvisioningStatus, errors.New(strings.TrimPrefix(err.Error(), "provisioningStatus "))})
	}
	if err := validAllocation(e.AllocationPolicy, e.CustomAllocationDefinition); err != nil {
		errs = append(errs, fieldErr{ColAllocationPolicy, err})
	}
	if len(errs) == 0 {
		if err := e.Validate(); err != nil {
			errs = append(errs, fieldErr{"", err})
		}
	}
	return errs
}

// checkRegistrationID checks id as Validate does for an enrollment of
// attestation type typ.
func checkRegistrationID(id, typ string) error {
	max := regid.MaxLen
	if typ == AttestationX509 {
		max = regid.MaxLenX509
	}
	err := CheckID(id, max)
	if err != nil && typ == AttestationX509 && len(id) > max {
		err = fmt.Errorf("%w (an X.509 registration ID is the certificate's CN)", err)
	}
	return err
}

// readJSON reads a JSON array of enrollments, one item at a time.
func (fr *fileReader) readJSON(r io.Reader) {
	fr.item = true
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	tok, err := dec.Token()
	if err == io.EOF {
		fr.fail(0, "", errors.New("the file is empty: want a JSON array of enrollments"))
		return
	}
	if err != nil {
		if !fr.readErr(0, err) {
			fr.fail(0, "", fmt.Errorf("not JSON: %v", err))
		}
		return
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		fr.fail(0, "", fmt.Errorf("want a JSON array of enrollments [{...}, ...], found %s", jsonKind(tok)))
		return
	}
	n := 0
	for dec.More() && !fr.full() {
		n++
		var e Enrollment
		if err := dec.Decode(&e); err != nil {
			if fr.readErr(n, err) {
				return
			}
			var te *json.UnmarshalTypeError
			var se *json.SyntaxError
			switch {
			case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
				// The stream is lost: nothing after this can be read.
				fr.fail(n, "", fmt.Errorf("not JSON (at byte %d): %v", dec.InputOffset(), err))
				return
			case errors.As(err, &te):
				fr.fail(n, te.Field, fmt.Errorf("a JSON %s where %s belongs", te.Value, jsonType(te.Type.Kind().String())))
			case strings.HasPrefix(err.Error(), "json: unknown field "):
				f, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
				fr.fail(n, f, errors.New("unknown field: zerotouch does not model it and would drop it on upload; remove it"))
			default:
				fr.fail(n, "", err)
			}
			fr.note(n, e.RegistrationID)
			continue
		}
		fr.add(n, e)
	}
	if fr.full() {
		return
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		if !fr.readErr(n, err) {
			fr.fail(0, "", fmt.Errorf("the array is not closed: %v", err))
		}
		return
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil && fr.readErr(0, err) {
			return
		}
		fr.fail(0, "", fmt.Errorf("%s after the array: a file holds one JSON array", jsonKind(tok)))
	}
}

func jsonKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return fmt.Sprintf("%q", string(t))
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "more data"
	}
	return fmt.Sprintf("%T", tok)
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "struct", "map":
		return "an object"
	case "slice":
		return "an array"
	case "int", "int64", "float64":
		return "a number"
	}
	return "a " + kind
}

// readCSV reads a CSV with a header row.
func (fr *fileReader) readCSV(r io.Reader) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // counted per row, to report it per row
	header, err := cr.Read()
	if err == io.EOF {
		fr.fail(0, "", errors.New("the file is empty: want a header row, then a row per enrollment"))
		return
	}
	if err != nil {
		if !fr.readErr(1, err) {
			fr.csvParseError(err)
		}
		return
	}
	headerLine, _ := cr.FieldPos(0)
	cols, ok := fr.csvHeader(headerLine, header)
	if !ok {
		return
	}
	for !fr.full() {
		rec, err := cr.Read()
		if err == io.EOF {
			return
		}
		if err != nil {
			if fr.readErr(0, err) {
				return
			}
			if !fr.csvParseError(err) {
				return
			}
			continue
		}
		line, _ := cr.FieldPos(0)
		if blank(rec) {
			continue // spreadsheets end files with rows of empty cells
		}
		if len(rec) != len(cols) {
			fr.fail(line, "", fmt.Errorf("the row has %d cells, the header %d", len(rec), len(cols)))
			continue
		}
		cells := make(map[string]string, len(cols))
		for i, c := range cols {
			cells[c] = rec[i]
		}
		if e, ok := fr.csvRow(line, cells); ok {
			fr.add(line, e)
		} else {
			fr.note(line, e.RegistrationID)
		}
	}
}

// csvParseError records a CSV syntax error and reports whether reading
// can go on past it.
func (fr *fileReader) csvParseError(err error) bool {
	var pe *csv.ParseError
	if !errors.As(err, &pe) {
		fr.fail(0, "", err)
		return false
	}
	if errors.Is(pe.Err, csv.ErrBareQuote) {
		fr.fail(pe.Line, "", fmt.Errorf("column %d: %v; put a cell holding quotes in quotes and double them", pe.Column, pe.Err))
		return true
	}
	// An unclosed quote swallows the rest of the file.
	fr.fail(pe.StartLine, "", fmt.Errorf("%v (the error is on line %d, column %d)", pe.Err, pe.Line, pe.Column))
	return false
}

// csvHeader maps the header's cells to column names.
func (fr *fileReader) csvHeader(line int, header []string) ([]string, bool) {
	byLower := make(map[string]string, len(csvColumns))
	for _, c := range csvColumns {
		byLower[strings.ToLower(c)] = c
	}
	cols := make([]string, len(header))
	at := make(map[string]int)
	ok := true
	for i, h := range header {
		h = strings.TrimSpace(h)
		c, known := byLower[strings.ToLower(h)]
		switch {
		case h == "":
			fr.fail(line, "", fmt.Errorf("header: column %d has no name", i+1))
			ok = false
		case !known:
			fr.fail(line, h, fmt.Errorf("unknown column; the columns are %s", strings.Join(csvColumns, ", ")))
			ok = false
		case at[c] > 0:
			fr.fail(line, c, fmt.Errorf("the column is there twice (columns %d and %d)", at[c], i+1))
			ok = false
		default:
			at[c] = i + 1
			cols[i] = c
		}
	}
	for _, c := range []string{ColRegistrationID, ColAttestation} {
		if at[c] == 0 {
			fr.fail(line, c, errors.New("required column is missing from the header"))
			ok = false
		}
	}
	return cols, ok
}

func blank(rec []string) bool {
	for _, c := range rec {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}

// csvRow makes an enrollment of one row's cells, reporting each bad cell;
// it returns false if any was.
func (fr *fileReader) csvRow(line int, cells map[string]string) (Enrollment, bool) {
	ok := true
	bad := func(col string, format string, args ...any) {
		fr.fail(line, col, fmt.Errorf(format, args...))
		ok = false
	}
	get := func(col string) string { return strings.TrimSpace(cells[col]) }

	e := Enrollment{
		RegistrationID: get(ColRegistrationID),
		DeviceID:       get(ColDeviceID),
		IoTHubHostName: get(ColIoTHubHostName),
	}

	switch a := get(ColAttestation); strings.ToLower(a) {
	case "tpm":
		e.Attestation = Attestation{Type: AttestationTPM, TPM: &TPMAttestation{
			EndorsementKey: get(ColEndorsementKey),
			StorageRootKey: get(ColStorageRootKey),
		}}
		if e.Attestation.TPM.EndorsementKey == "" {
			bad(ColEndorsementKey, "missing; a tpm enrollment needs the EK (base64 TPM2B_PUBLIC)")
		}
	case "x509":
		cert := cells[ColCertificate]
		if strings.TrimSpace(cert) == "" {
			bad(ColCertificate, "missing; an x509 enrollment needs the device certificate (PEM or base64 DER)")
			cert = ""
		} else if _, err := ParseCertificate(cert); err != nil {
			bad(ColCertificate, "%v", err)
		}
		e.Attestation = Attestation{Type: AttestationX509, X509: &X509Attestation{
			ClientCertificates: &X509Certificates{Primary: &X509Certificate{Certificate: cert}},
		}}
	case "symmetrickey":
		e.Attestation = Attestation{Type: AttestationSymmetricKey, SymmetricKey: &SymmetricKeyAttestation{
			PrimaryKey:   get(ColPrimaryKey),
			SecondaryKey: get(ColSecondaryKey),
		}}
	case "":
		bad(ColAttestation, "missing; want tpm, x509 or symmetricKey")
	default:
		bad(ColAttestation, "%q: want tpm, x509 or symmetricKey", a)
	}
	// Cells of another attestation type would be dropped: refuse them.
	if t := e.Attestation.Type; t != "" {
		for _, c := range []struct{ col, typ string }{
			{ColEndorsementKey, AttestationTPM},
			{ColStorageRootKey, AttestationTPM},
			{ColCertificate, AttestationX509},
			{ColPrimaryKey, AttestationSymmetricKey},
			{ColSecondaryKey, AttestationSymmetricKey},
		} {
			if t != c.typ && get(c.col) != "" {
				bad(c.col, "set, but the attestation is %s: it is only for %s", t, c.typ)
			}
		}
	}
	if e.RegistrationID == "" {
		bad(ColRegistrationID, "missing")
	} else if err := checkRegistrationID(e.RegistrationID, e.Attestation.Type); err != nil {
		fr.fail(line, ColRegistrationID, err)
		ok = false
	}
	for _, col := range []string{ColEndorsementKey, ColStorageRootKey, ColPrimaryKey, ColSecondaryKey} {
		if v := get(col); v != "" && validBase64(v) != nil {
			bad(col, "not base64")
		}
	}

	switch s := get(ColProvisioningStatus); strings.ToLower(s) {
	case "":
	case "enabled", "disabled":
		e.ProvisioningStatus = strings.ToLower(s)
	default:
		bad(ColProvisioningStatus, "%q: want enabled or disabled", s)
	}
	switch s := get(ColIoTEdge); strings.ToLower(s) {
	case "":
	case "true":
		e.Capabilities = &Capabilities{IoTEdge: true}
	case "false":
		e.Capabilities = &Capabilities{IoTEdge: false}
	default:
		bad(ColIoTEdge, "%q: want true or false", s)
	}
	e.IoTHubs = strings.FieldsFunc(get(ColIoTHubs), func(r rune) bool {
		return r == ';' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
	if len(e.IoTHubs) == 0 {
		e.IoTHubs = nil
	}
	if p := get(ColAllocationPolicy); p != "" {
		e.AllocationPolicy = p
		for _, known := range allocationPolicies {
			if strings.EqualFold(p, known) {
				e.AllocationPolicy = known
			}
		}
		if e.AllocationPolicy == AllocationCustom {
			bad(ColAllocationPolicy, "custom allocation needs a webhook (customAllocationDefinition), which a CSV cannot hold; use a JSON file")
		}
	}
	return e, ok
}

// WriteCSV writes es as a CSV that ReadFile reads back to the same
// enrollments: a header with every column, then one row per enrollment,
// a PEM certificate in a quoted cell over several lines and IoT hubs
// separated by semicolons. A symmetric-key attestation without keys reads
// back with an empty SymmetricKey. Read-only fields the service sets
// (etag, registrationState, timestamps, certificate info) are not
// written; an enrollment with anything else a CSV has no column for
// (initialTwin, reprovisionPolicy, a custom allocation, device
// information, a secondary or signing certificate, CA references) is an
// error naming it, checked before anything is written. The caller closes
// w.
func WriteCSV(w io.Writer, es []Enrollment) error {
	for i := range es {
		if _, err := csvRecord(&es[i]); err != nil {
			return fmt.Errorf("write CSV: enrollment %d (%q): %w", i+1, es[i].RegistrationID, err)
		}
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(csvColumns); err != nil {
		return fmt.Errorf("write CSV header: %w", err)
	}
	for i := range es {
		e := &es[i]
		rec, _ := csvRecord(e)
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write CSV: enrollment %d (%q): %w", i+1, e.RegistrationID, err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write CSV: %w", err)
	}
	return nil
}

// csvRecord lays e out in csvColumns order.
func csvRecord(e *Enrollment) ([]string, error) {
	switch {
	case e.InitialTwin != nil:
		return nil, errors.New("initialTwin has no CSV column; write JSON")
	case e.ReprovisionPolicy != nil:
		return nil, errors.New("reprovisionPolicy has no CSV column; write JSON")
	case e.CustomAllocationDefinition != nil:
		return nil, errors.New("customAllocationDefinition has no CSV column; write JSON")
	case len(e.OptionalDeviceInformation) > 0:
		return nil, errors.New("optionalDeviceInformation has no CSV column; write JSON")
	}
	v := make(map[string]string, len(csvColumns))
	a := e.Attestation
	v[ColAttestation] = a.Type
	switch a.Type {
	case AttestationTPM:
		if a.TPM != nil {
			v[ColEndorsementKey] = a.TPM.EndorsementKey
			v[ColStorageRootKey] = a.TPM.StorageRootKey
		}
	case AttestationX509:
		if x := a.X509; x != nil {
			switch {
			case x.SigningCertificates != nil:
				return nil, errors.New("x509.signingCertificates has no CSV column")
			case x.CAReferences != nil:
				return nil, errors.New("x509.caReferences has no CSV column")
			case x.ClientCertificates != nil && x.ClientCertificates.Secondary != nil:
				return nil, errors.New("x509.clientCertificates.secondary has no CSV column")
			case x.ClientCertificates != nil && x.ClientCertificates.Primary != nil:
				v[ColCertificate] = x.ClientCertificates.Primary.Certificate
			}
		}
	case AttestationSymmetricKey:
		if a.SymmetricKey != nil {
			v[ColPrimaryKey] = a.SymmetricKey.PrimaryKey
			v[ColSecondaryKey] = a.SymmetricKey.SecondaryKey
		}
	default:
		return nil, fmt.Errorf("attestation type %q has no CSV form", a.Type)
	}
	if (a.TPM != nil && a.Type != AttestationTPM) || (a.X509 != nil && a.Type != AttestationX509) ||
		(a.SymmetricKey != nil && a.Type != AttestationSymmetricKey) {
		return nil, fmt.Errorf("attestation %s carries another type's part too", a.Type)
	}
	v[ColRegistrationID] = e.RegistrationID
	v[ColDeviceID] = e.DeviceID
	v[ColIoTHubHostName] = e.IoTHubHostName
	v[ColProvisioningStatus] = e.ProvisioningStatus
	if e.Capabilities != nil {
		v[ColIoTEdge] = strconv.FormatBool(e.Capabilities.IoTEdge)
	}
	v[ColIoTHubs] = strings.Join(e.IoTHubs, ";")
	v[ColAllocationPolicy] = e.AllocationPolicy
	rec := make([]string, len(csvColumns))
	for i, c := range csvColumns {
		rec[i] = v[c]
	}
	return rec, nil
}
