package enroll_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"zerotouch/enroll"
)

// testEK is a base64 TPM2B_PUBLIC of an RSA EK, as DPS takes it.
const testEK = "AToAAQALAAMAsgAgg3GXZ0SEs/gakMyNRqXXJP1S124GUgtk8qHaGzMUaaoABgCAAEMAEAgAAAAAAAEAxsj2gUScTk1UjuioeTlfGYZrrimExB+bScH75adUMRIi2UOMxG1kw4y+9RW/IVoMl4e620VxZad0ARX2gUqVjYO7KPVt3dyKhZS3dkcvfBisBhP1XH9B33VqHG9SHnbnQXdBUaCgKAfxome8UmBKfe+naTsE5fkvjb/do3/dD6l4sGBwFCnKRdln4XpM03zLpoHFao8zOwt8l/uP3qUIxmCYv9A7m69Ms+5/pCkTu/rK4mRDsfhZ0QLfbzVI6zQFOKF/rwsfBtFeWlWtcuJMKlXdD8TXWElTzgh7JS4qhFzreL0c1mI0GCj+Aws0usZh7dLIVPnlgZcBhgy1SSDQMQ=="

const (
	testKey1 = "c2VjcmV0LWtleS1vbmUtMzItYnl0ZXMtbG9uZy4uLi4="
	testKey2 = "c2VjcmV0LWtleS10d28tMzItYnl0ZXMtbG9uZy4uLi4="
)

// newTestCert makes a self-signed P-256 device certificate with common
// name cn and returns it as PEM and as base64 DER.
func newTestCert(tb testing.TB, cn string) (pemText, b64DER string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("create certificate: %v", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		base64.StdEncoding.EncodeToString(der)
}

// csvQuote quotes s as one CSV cell.
func csvQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func tpmEnrollment(id string) enroll.Enrollment {
	return enroll.Enrollment{
		RegistrationID: id,
		Attestation:    enroll.Attestation{Type: enroll.AttestationTPM, TPM: &enroll.TPMAttestation{EndorsementKey: testEK}},
	}
}

func x509Enrollment(id, cert string) enroll.Enrollment {
	return enroll.Enrollment{
		RegistrationID: id,
		Attestation: enroll.Attestation{Type: enroll.AttestationX509, X509: &enroll.X509Attestation{
			ClientCertificates: &enroll.X509Certificates{Primary: &enroll.X509Certificate{Certificate: cert}},
		}},
	}
}

func symEnrollment(id, primary, secondary string) enroll.Enrollment {
	return enroll.Enrollment{
		RegistrationID: id,
		Attestation: enroll.Attestation{Type: enroll.AttestationSymmetricKey, SymmetricKey: &enroll.SymmetricKeyAttestation{
			PrimaryKey: primary, SecondaryKey: secondary,
		}},
	}
}

func TestReadFile(t *testing.T) {
	certPEM, certDER := newTestCert(t, "cam-0001")
	full := tpmEnrollment("board-0001")
	full.Attestation.TPM.StorageRootKey = testEK
	full.DeviceID = "dev-1"
	full.IoTHubHostName = "hub1.azure-devices.net"
	full.ProvisioningStatus = "disabled"
	full.Capabilities = &enroll.Capabilities{IoTEdge: true}
	full.IoTHubs = []string{"hub1.azure-devices.net", "hub2.azure-devices.net", "hub3.azure-devices.net"}
	full.AllocationPolicy = "geoLatency"

	edgeOff := symEnrollment("gw-7", testKey1, "")
	edgeOff.Capabilities = &enroll.Capabilities{IoTEdge: false}

	jsonFull := full
	jsonFull.InitialTwin = &enroll.InitialTwin{Tags: map[string]any{"line": "A"}}
	jsonFull.ReprovisionPolicy = &enroll.ReprovisionPolicy{UpdateHubAssignment: true}

	tests := []struct {
		name  string
		file  string
		input string
		want  []enroll.Enrollment
	}{
		{
			name: "csv, one row per attestation",
			file: "boards.csv",
			input: "registrationId,attestation,endorsementKey,certificate,primaryKey,secondaryKey\n" +
				"board-0002,tpm," + testEK + ",,,\n" +
				"cam-0001,x509,," + csvQuote(certPEM) + ",,\n" +
				"sensor-3,symmetricKey,,," + testKey1 + "," + testKey2 + "\n",
			want: []enroll.Enrollment{
				tpmEnrollment("board-0002"),
				x509Enrollment("cam-0001", certPEM),
				symEnrollment("sensor-3", testKey1, testKey2),
			},
		},
		{
			name: "csv, every column, names in any case and order",
			file: "boards.CSV",
			input: "IOTHUBS,RegistrationID,Attestation,EndorsementKey,storagerootkey,deviceId,iotHubHostName,provisioningStatus,iotEdge,allocationPolicy\n" +
				"hub1.azure-devices.net;hub2.azure-devices.net hub3.azure-devices.net,board-0001,TPM," + testEK + "," + testEK + ",dev-1,hub1.azure-devices.net,Disabled,TRUE,geolatency\n",
			want: []enroll.Enrollment{full},
		},
		{
			name:  "csv, base64 DER certificate, iotEdge false, symmetric key without keys",
			file:  "x.csv",
			input: "registrationId,attestation,certificate,primaryKey,iotEdge\ncam-0001,x509," + certDER + ",,\ngw-7,symmetricKey,," + testKey1 + ",false\nsensor-9,symmetricKey,,,\n",
			want: []enroll.Enrollment{
				x509Enrollment("cam-0001", certDER),
				edgeOff,
				symEnrollment("sensor-9", "", ""),
			},
		},
		{
			name:  "csv from a spreadsheet: BOM, CRLF, blank rows, spaces around cells",
			file:  "export.csv",
			input: "\uFEFFregistrationId,attestation,endorsementKey\r\n board-0002 , tpm ," + testEK + "\r\n,,\r\n\r\n   \r\n",
			want:  []enroll.Enrollment{tpmEnrollment("board-0002")},
		},
		{
			name:  "csv sniffed: no extension",
			file:  "-",
			input: "registrationId,attestation,endorsementKey\nboard-0002,tpm," + testEK + "\n",
			want:  []enroll.Enrollment{tpmEnrollment("board-0002")},
		},
		{
			name: "json, DPS REST shape",
			file: "boards.json",
			input: `[
  {"registrationId": "board-0001", "deviceId": "dev-1",
   "attestation": {"type": "tpm", "tpm": {"endorsementKey": "` + testEK + `", "storageRootKey": "` + testEK + `"}},
   "capabilities": {"iotEdge": true}, "iotHubHostName": "hub1.azure-devices.net",
   "initialTwin": {"tags": {"line": "A"}},
   "provisioningStatus": "disabled",
   "reprovisionPolicy": {"updateHubAssignment": true, "migrateDeviceData": false},
   "allocationPolicy": "geoLatency",
   "iotHubs": ["hub1.azure-devices.net", "hub2.azure-devices.net", "hub3.azure-devices.net"]},
  {"registrationId": "cam-0001", "attestation": {"type": "x509", "x509": {"clientCertificates": {"primary": {"certificate": ` + string(mustJSON(t, certPEM)) + `}}}}}
]`,
			want: []enroll.Enrollment{jsonFull, x509Enrollment("cam-0001", certPEM)},
		},
		{
			name:  "json sniffed: leading space, no extension",
			file:  "stdin",
			input: "\n\t [" + string(mustJSON(t, tpmEnrollment("board-0002"))) + "]\n",
			want:  []enroll.Enrollment{tpmEnrollment("board-0002")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := enroll.ReadFile(strings.NewReader(tt.input), tt.file)
			if err != nil {
				t.Fatalf("ReadFile(%s) = %v, want no error", tt.file, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ReadFile(%s) mismatch (-want +got):\n%s", tt.file, diff)
			}
			for i := range got {
				if err := got[i].Validate(); err != nil {
					t.Errorf("ReadFile(%s)[%d].Validate() = %v, want nil", tt.file, i, err)
				}
			}
		})
	}
}

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("json.Marshal: %v", err)
	}
	return b
}

// wantErr is one *FileError a bad file must give.
type wantErr struct {
	line  int
	field string
	text  string // a part of its message
}

// fileErrors splits what ReadFile returned into its *FileErrors.
func fileErrors(t *testing.T, err error) []*enroll.FileError {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	var out []*enroll.FileError
	for _, e := range errs {
		var fe *enroll.FileError
		if !errors.As(e, &fe) {
			t.Fatalf("error %v (%T) is not a *FileError", e, e)
		}
		out = append(out, fe)
	}
	return out
}

func TestReadFileErrors(t *testing.T) {
	certPEM, _ := newTestCert(t, "cam-0001")
	otherPEM, _ := newTestCert(t, "someone-else")
	long := strings.Repeat("a", 65)
	longCert, _ := newTestCert(t, long[:64])
	hdr := "registrationId,attestation,endorsementKey,certificate,primaryKey\n"

	tests := []struct {
		name  string
		file  string
		input string
		want  []wantErr
	}{
		{"empty file", "e.csv", "", []wantErr{{0, "", "empty"}}},
		{"blank file", "e.json", " \n\t\n", []wantErr{{0, "", "empty"}}},
		{"header only", "e.csv", hdr, []wantErr{{0, "", "no enrollments"}}},
		{"empty array", "e.json", "[ ]", []wantErr{{0, "", "no enrollments"}}},
		{"missing column", "m.csv", "registrationId,endorsementKey\nboard-1," + testEK + "\n",
			[]wantErr{{1, "attestation", "required column is missing"}}},
		{"unknown column", "u.csv", "registrationId,attestation,endorsmentKey\nboard-1,tpm,x\n",
			[]wantErr{{1, "endorsmentKey", "unknown column"}}},
		{"column twice", "d.csv", "registrationId,attestation,RegistrationId\nboard-1,tpm,board-1\n",
			[]wantErr{{1, "registrationId", "twice"}}},
		{"bad attestation", "a.csv", hdr + "board-1,tpm2," + testEK + ",,\n",
			[]wantErr{{2, "attestation", `"tpm2": want tpm, x509 or symmetricKey`}}},
		{"missing attestation", "a.csv", hdr + "board-1,,,,\n",
			[]wantErr{{2, "attestation", "missing"}}},
		{"missing registration id", "r.csv", hdr + "," + "tpm," + testEK + ",,\n",
			[]wantErr{{2, "registrationId", "missing"}}},
		{"bad base64", "b.csv", hdr + "board-1,tpm,not*base64,,\nboard-2,symmetricKey,,,%%%\n",
			[]wantErr{{2, "endorsementKey", "not base64"}, {3, "primaryKey", "not base64"}}},
		{"tpm without EK", "b.csv", hdr + "board-1,tpm,,,\n",
			[]wantErr{{2, "endorsementKey", "missing"}}},
		{"bad PEM", "p.csv", hdr + "cam-0001,x509,," + csvQuote("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n") + ",\n",
			[]wantErr{{2, "certificate", "certificate"}}},
		{"not a certificate", "p.csv", hdr + "cam-0001,x509,,hello,\n",
			[]wantErr{{2, "certificate", "neither PEM nor base64 DER"}}},
		{"x509 registration id of 65 characters", "l.csv", hdr + long + ",x509," + "," + csvQuote(longCert) + ",\n",
			[]wantErr{{2, "registrationId", "65 characters, at most 64"}}},
		{"invalid registration id characters", "l.csv", hdr + "board 1,tpm," + testEK + ",,\n",
			[]wantErr{{2, "registrationId", "character ' '"}}},
		{"certificate CN is not the registration id", "cn.csv", hdr + "cam-0001,x509,," + csvQuote(otherPEM) + ",\n",
			[]wantErr{{2, "certificate", `CN is "someone-else"`}}},
		{"cell of another attestation", "o.csv", hdr + "board-1,tpm," + testEK + ",," + testKey1 + "\n",
			[]wantErr{{2, "primaryKey", "only for symmetricKey"}}},
		{"duplicate ids, any case", "dup.csv", hdr + "board-1,tpm," + testEK + ",,\nboard-2,tpm," + testEK + ",,\nBOARD-1,symmetricKey,,,\n",
			[]wantErr{{4, "registrationId", `"BOARD-1" is also on line 2`}}},
		{"wrong number of cells", "n.csv", hdr + "board-1,tpm," + testEK + "\n",
			[]wantErr{{2, "", "3 cells, the header 5"}}},
		{"bad provisioning status and iotEdge", "s.csv", "registrationId,attestation,provisioningStatus,iotEdge\nsensor-1,symmetricKey,on,yes\n",
			[]wantErr{{2, "provisioningStatus", `"on"`}, {2, "iotEdge", `"yes"`}}},
		{"custom allocation in CSV", "c.csv", "registrationId,attestation,allocationPolicy\nsensor-1,symmetricKey,custom\n",
			[]wantErr{{2, "allocationPolicy", "use a JSON file"}}},
		{"unclosed quote", "q.csv", hdr + "cam-0001,x509,,\"-----BEGIN,\n",
			[]wantErr{{2, "", "quote"}}},
		{"errors on several rows are all reported", "many.csv", hdr + "board-1,tpm,,,\nboard-2,tpm," + testEK + ",,\nboard 3,tpm," + testEK + ",,\n",
			[]wantErr{{2, "endorsementKey", "missing"}, {4, "registrationId", "character"}}},

		{"unknown JSON field", "u.json", `[{"registrationId":"board-1","attestation":{"type":"tpm","tpm":{"endorsementKey":"` + testEK + `"}},"credentialPolicy":"p1"}]`,
			[]wantErr{{1, "credentialPolicy", "unknown field"}}},
		{"unknown nested JSON field", "u.json", `[{"registrationId":"board-1","attestation":{"type":"tpm","tpm":{"endorsementKey":"` + testEK + `","ekCert":"x"}}}]`,
			[]wantErr{{1, "ekCert", "unknown field"}}},
		{"JSON object, not an array", "o.json", `{"registrationId":"board-1"}`,
			[]wantErr{{0, "", "want a JSON array"}}},
		{"JSON syntax", "s.json", `[{"registrationId":"board-1",}]`,
			[]wantErr{{1, "", "not JSON"}}},
		{"JSON cut short", "s.json", `[{"registrationId":"board-1"`,
			[]wantErr{{1, "", "not JSON"}}},
		{"JSON wrong type", "t.json", `[{"registrationId":7,"attestation":{"type":"tpm","tpm":{"endorsementKey":"` + testEK + `"}}}]`,
			[]wantErr{{1, "registrationId", "a JSON number where a string belongs"}}},
		{"JSON after the array", "t.json", `[{"registrationId":"board-1","attestation":{"type":"tpm","tpm":{"endorsementKey":"` + testEK + `"}}}] []`,
			[]wantErr{{0, "", "after the array"}}},
		{"JSON invalid enrollments", "v.json", `[
  {"registrationId":"board-1","attestation":{"type":"tpm","tpm":{"endorsementKey":"` + testEK + `"}}},
  {"registrationId":"board-2","attestation":{"type":"tpm"}},
  {"registrationId":"` + long + `","attestation":{"type":"x509","x509":{"clientCertificates":{"primary":{"certificate":` + string(mustJSON(t, certPEM)) + `}}}}},
  {"registrationId":"Board-1","attestation":{"type":"symmetricKey"},"provisioningStatus":"paused"},
  {"registrationId":"board-5","attestation":{"type":"symmetricKey"},"allocationPolicy":"custom"},
  {"registrationId":"board-6","attestation":{"type":"symmetricKey"},"allocationPolicy":"custom","customAllocationDefinition":{"webhookUrl":"https://alloc.example/api"}},
  {"registrationId":"board-7","attestation":{"type":"symmetricKey"},"allocationPolicy":"Hashed"}
]`,
			[]wantErr{
				{2, "", "endorsementKey is missing"},
				{3, "registrationId", "at most 64"},
				{4, "registrationId", `"Board-1" is also on item 1`},
				{4, "provisioningStatus", `"paused"`},
				{5, "allocationPolicy", "webhookUrl"},
				// Validate's rule, on its column: a webhook needs its
				// apiVersion, and a policy is spelled as the
				// specification spells it.
				{6, "allocationPolicy", "apiVersion"},
				{7, "allocationPolicy", `"Hashed"`},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := enroll.ReadFile(strings.NewReader(tt.input), tt.file)
			if err == nil {
				t.Fatalf("ReadFile(%s) = %d enrollments, want an error", tt.file, len(got))
			}
			if got != nil {
				t.Errorf("ReadFile(%s) returned %d enrollments with its error, want none", tt.file, len(got))
			}
			if !errors.Is(err, enroll.ErrFile) {
				t.Errorf("ReadFile(%s) = %v, want it to match ErrFile", tt.file, err)
			}
			fes := fileErrors(t, err)
			for _, w := range tt.want {
				found := false
				for _, fe := range fes {
					if fe.Line == w.line && fe.Field == w.field && strings.Contains(fe.Error(), w.text) {
						found = true
					}
				}
				if !found {
					t.Errorf("ReadFile(%s) = %v\nwant an error at %d, field %q, containing %q", tt.file, err, w.line, w.field, w.text)
				}
			}
			if len(fes) != len(tt.want) {
				t.Errorf("ReadFile(%s) gave %d errors, want %d:\n%v", tt.file, len(fes), len(tt.want), err)
			}
			for _, fe := range fes {
				if fe.File != tt.file {
					t.Errorf("FileError.File = %q, want %q", fe.File, tt.file)
				}
			}
		})
	}
}

func TestReadFileStopsAfter20Errors(t *testing.T) {
	var b strings.Builder
	b.WriteString("registrationId,attestation\n")
	for i := range 50 {
		fmt.Fprintf(&b, "board-%d,tpm\n", i)
	}
	_, err := enroll.ReadFile(strings.NewReader(b.String()), "many.csv")
	fes := fileErrors(t, err)
	if len(fes) != 21 {
		t.Fatalf("ReadFile of 50 bad rows gave %d errors, want 20 and a note:\n%v", len(fes), err)
	}
	if last := fes[20]; !strings.Contains(last.Error(), "stopped after 20 errors") || last.Line != 21 {
		t.Errorf("last error = %v (line %d), want the stop note at line 21", last, last.Line)
	}
}

func TestFileError(t *testing.T) {
	cause := errors.New("not base64")
	tests := []struct {
		err  *enroll.FileError
		want string
	}{
		{&enroll.FileError{File: "a.csv", Line: 3, Field: "endorsementKey", Err: cause}, "a.csv:3: endorsementKey: not base64"},
		{&enroll.FileError{File: "a.json", Line: 3, Item: true, Field: "registrationId", Err: cause}, "a.json: item 3: registrationId: not base64"},
		{&enroll.FileError{File: "a.csv", Line: 3, Err: cause}, "a.csv:3: not base64"},
		{&enroll.FileError{File: "a.csv", Err: cause}, "a.csv: not base64"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(tt.err, enroll.ErrFile) {
			t.Errorf("errors.Is(%v, ErrFile) = false, want true", tt.err)
		}
		if !errors.Is(tt.err, cause) {
			t.Errorf("errors.Is(%v, cause) = false, want true", tt.err)
		}
	}
}

// failingReader returns data, then err.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadFileReadError(t *testing.T) {
	boom := errors.New("disk on fire")
	for _, tt := range []struct{ name, data string }{
		{"f.csv", "registrationId,attestation,endorsementKey\nboard-1,tpm," + testEK + "\n"},
		{"f.json", `[{"registrationId":"board-1","attestation":{"type":"tpm","tpm":{"endorsementKey":"` + testEK + `"}}}`},
		{"f.json", `[{"registrationId":"board-1","attestation":{"type":"tpm","tpm":{"endorse`},
		{"f.csv", ""},
	} {
		got, err := enroll.ReadFile(&failingReader{data: []byte(tt.data), err: boom}, tt.name)
		if !errors.Is(err, boom) || got != nil {
			t.Errorf("ReadFile(%s %q, then a read error) = %d, %v; want nil, %v", tt.name, tt.data, len(got), err, boom)
		}
		if errors.Is(err, enroll.ErrFile) {
			t.Errorf("ReadFile(%s %q, then a read error) = %v: a read error is not an invalid file", tt.name, tt.data, err)
		}
	}
}

func TestWriteCSVRoundTrip(t *testing.T) {
	certPEM, _ := newTestCert(t, "cam-0001")
	certPEM2, _ := newTestCert(t, "Cam-0002") // CN differs from the ID in case only
	_, certDER := newTestCert(t, "cam-0003")
	full := tpmEnrollment("board-0001")
	full.Attestation.TPM.StorageRootKey = testEK
	full.DeviceID = "dev-1"
	full.IoTHubHostName = "hub1.azure-devices.net"
	full.ProvisioningStatus = "enabled"
	full.Capabilities = &enroll.Capabilities{IoTEdge: true}
	full.IoTHubs = []string{"hub1.azure-devices.net", "hub2.azure-devices.net"}
	full.AllocationPolicy = "static"
	gw := symEnrollment("gw-1", testKey1, testKey2)
	gw.Capabilities = &enroll.Capabilities{}
	gw.ProvisioningStatus = "disabled"
	x2 := x509Enrollment("cam-0002", certPEM2)
	x2.AllocationPolicy = "hashed"

	es := []enroll.Enrollment{
		full,
		tpmEnrollment("board-0002"),
		x509Enrollment("cam-0001", certPEM),
		x2,
		x509Enrollment("cam-0003", certDER),
		gw,
		symEnrollment("sensor-1", "", ""),
	}
	var buf bytes.Buffer
	if err := enroll.WriteCSV(&buf, es); err != nil {
		t.Fatalf("WriteCSV = %v", err)
	}
	if !strings.Contains(buf.String(), `"-----BEGIN CERTIFICATE-----`+"\n") {
		t.Errorf("WriteCSV wrote the PEM certificate as\n%s\nwant it in a quoted cell over several lines", buf.String())
	}
	got, err := enroll.ReadFile(bytes.NewReader(buf.Bytes()), "export.csv")
	if err != nil {
		t.Fatalf("ReadFile(WriteCSV output) = %v\n%s", err, buf.String())
	}
	if diff := cmp.Diff(es, got); diff != "" {
		t.Errorf("WriteCSV then ReadFile mismatch (-wrote +read):\n%s", diff)
	}
}

func TestWriteCSVDropsReadOnlyFields(t *testing.T) {
	now := time.Now()
	e := tpmEnrollment("board-1")
	e.ETag = `"abc"`
	e.CreatedDateTimeUTC = &now
	e.RegistrationState = &enroll.RegistrationState{Status: "assigned"}
	var buf bytes.Buffer
	if err := enroll.WriteCSV(&buf, []enroll.Enrollment{e}); err != nil {
		t.Fatalf("WriteCSV = %v", err)
	}
	got, err := enroll.ReadFile(&buf, "x.csv")
	if err != nil {
		t.Fatalf("ReadFile = %v", err)
	}
	if diff := cmp.Diff([]enroll.Enrollment{tpmEnrollment("board-1")}, got); diff != "" {
		t.Errorf("round trip mismatch (-want +got):\n%s", diff)
	}
}

func TestWriteCSVRefuses(t *testing.T) {
	certPEM, _ := newTestCert(t, "cam-0001")
	with := func(f func(*enroll.Enrollment)) enroll.Enrollment {
		e := tpmEnrollment("board-1")
		f(&e)
		return e
	}
	tests := []struct {
		name string
		e    enroll.Enrollment
		want string
	}{
		{"initial twin", with(func(e *enroll.Enrollment) { e.InitialTwin = &enroll.InitialTwin{} }), "initialTwin"},
		{"reprovision policy", with(func(e *enroll.Enrollment) { e.ReprovisionPolicy = &enroll.ReprovisionPolicy{} }), "reprovisionPolicy"},
		{"custom allocation", with(func(e *enroll.Enrollment) {
			e.CustomAllocationDefinition = &enroll.CustomAllocation{WebhookURL: "https://x"}
		}), "customAllocationDefinition"},
		{"device information", with(func(e *enroll.Enrollment) { e.OptionalDeviceInformation = map[string]any{"a": 1} }), "optionalDeviceInformation"},
		{"secondary certificate", func() enroll.Enrollment {
			e := x509Enrollment("board-1", certPEM)
			e.Attestation.X509.ClientCertificates.Secondary = &enroll.X509Certificate{Certificate: certPEM}
			return e
		}(), "secondary"},
		{"two attestation parts", with(func(e *enroll.Enrollment) { e.Attestation.SymmetricKey = &enroll.SymmetricKeyAttestation{} }), "another type"},
		{"no attestation type", enroll.Enrollment{RegistrationID: "board-1"}, "no CSV form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			es := []enroll.Enrollment{tpmEnrollment("board-0"), tt.e}
			err := enroll.WriteCSV(&buf, es)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"board-1"`) {
				t.Errorf("WriteCSV(%s) = %v, want an error naming board-1 and %q", tt.name, err, tt.want)
			}
			if buf.Len() != 0 {
				t.Errorf("WriteCSV(%s) wrote %q before failing, want nothing", tt.name, buf.String())
			}
		})
	}
}

func FuzzReadFile(f *testing.F) {
	certPEM, certDER := newTestCert(f, "cam-0001")
	hdr := "registrationId,attestation,endorsementKey,storageRootKey,certificate,primaryKey,secondaryKey,deviceId,iotHubHostName,provisioningStatus,iotEdge,iotHubs,allocationPolicy\n"
	var exported bytes.Buffer
	if err := enroll.WriteCSV(&exported, []enroll.Enrollment{tpmEnrollment("board-1"), x509Enrollment("cam-0001", certPEM), symEnrollment("s-1", testKey1, "")}); err != nil {
		f.Fatalf("WriteCSV = %v", err)
	}
	seeds := []struct{ name, data string }{
		{"a.csv", exported.String()},
		{"a.csv", hdr + "board-1,tpm," + testEK + ",,,,,dev,hub,enabled,true,h1;h2,hashed\n"},
		{"a.csv", "registrationId,attestation,certificate\ncam-0001,x509," + certDER + "\n"},
		{"a.csv", "registrationId,attestation\nb,tpm\nB,tpm\n"},
		{"a.csv", "registrationId,attestation\n\"b,\"tpm\n"},
		{"a.csv", ""},
		{"a", "[]"},
		{"a.json", string(mustJSON(f, []enroll.Enrollment{tpmEnrollment("board-1"), x509Enrollment("cam-0001", certPEM)}))},
		{"a.json", `[{"registrationId":"x","attestation":{"type":"symmetricKey"},"bogus":1}]`},
		{"a.json", `[{"registrationId":"x","attestation":{"type":"symmetricKey"}},{"registrationId":"X"}] 1`},
		{"a.json", `[null, 1, "s", {"registrationId":[]}]`},
		{"a.txt", "\uFEFF  [{]"},
	}
	for _, s := range seeds {
		f.Add(s.name, []byte(s.data))
	}
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		got, err := enroll.ReadFile(bytes.NewReader(data), name)
		if err != nil {
			if got != nil {
				t.Fatalf("ReadFile returned %d enrollments with error %v", len(got), err)
			}
			if !errors.Is(err, enroll.ErrFile) {
				t.Fatalf("ReadFile = %v, want an error matching ErrFile", err)
			}
			return
		}
		if len(got) == 0 {
			t.Fatal("ReadFile returned no enrollments and no error")
		}
		seen := map[string]bool{}
		for i := range got {
			if err := got[i].Validate(); err != nil {
				t.Fatalf("ReadFile returned enrollment %d that fails Validate: %v", i, err)
			}
			id := strings.ToLower(got[i].RegistrationID)
			if seen[id] {
				t.Fatalf("ReadFile returned registration ID %q twice", id)
			}
			seen[id] = true
		}
	})
}
