package fwtemplates

import (
	_ "embed"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Attestation mechanisms, spelled as DPS spells them.
const (
	AttestationTPM          = "tpm"
	AttestationX509         = "x509"
	AttestationSymmetricKey = "symmetricKey"
)

// Attestations lists the attestation mechanisms Data.Attestation takes.
func Attestations() []string {
	return []string{AttestationTPM, AttestationX509, AttestationSymmetricKey}
}

// Data is what a template sees, one value per board. The package
// documentation describes each field.
type Data struct {
	IDScope          string            // DPS ID scope, e.g. 0ne0001A2B3
	GlobalEndpoint   string            // DPS global endpoint host name, no scheme or path
	RegistrationID   string            // the board's DPS registration ID
	DeviceID         string            // IoT Hub device ID if the station knows it; may be empty
	Attestation      string            // "tpm", "x509" or "symmetricKey"
	CertificateChain string            // x509: PEM, device certificate first
	CertificatePath  string            // x509: where the device keeps its certificate (optional)
	KeyURI           string            // x509: where the device's private key lives (optional)
	DerivedKey       string            // symmetricKey: base64 device key
	Serial           string            // board serial number, from the board
	Model            string            // board model, from the board
	Custom           map[string]string // line-specific extra fields
	// OperationalCertificatePath, when set, asks the board for an
	// operational certificate from DPS at its first registration: the
	// file on the board it writes the issued chain to (PEM). Only the
	// json template carries it; empty: no request.
	OperationalCertificatePath string
}

// Validate reports the first field that the attestation needs and that is
// empty or invalid, as an error naming the field. Render calls it before
// running a template.
//
// It restricts only GlobalEndpoint (a host name), Attestation (one of
// Attestations), CertificateChain (PEM certificate blocks; text before a
// block is let through, as pem.Decode skips it) and DerivedKey (base64). IDScope and RegistrationID need only be set; DeviceID,
// CertificatePath, KeyURI, Serial, Model and the Custom values may hold
// anything, quotes, newlines and NUL bytes included: Serial and Model are
// what the board says. Templates escape them (see the package
// documentation), and CheckSample tries hostile ones.
func (d Data) Validate() error {
	need := func(field, value, why string) error {
		if value == "" {
			return &fieldError{field: field, msg: "is empty (" + why + ")"}
		}
		return nil
	}
	for _, f := range []struct{ name, value string }{
		{"IDScope", d.IDScope},
		{"GlobalEndpoint", d.GlobalEndpoint},
		{"RegistrationID", d.RegistrationID},
		{"Attestation", d.Attestation},
	} {
		if err := need(f.name, f.value, "every attestation needs it"); err != nil {
			return err
		}
	}
	if err := checkHost(d.GlobalEndpoint); err != nil {
		return &fieldError{field: "GlobalEndpoint", msg: fmt.Sprintf("%q is not a host name: %v (give it without scheme or path, e.g. global.azure-devices-provisioning.net)", d.GlobalEndpoint, err)}
	}
	switch d.Attestation {
	case AttestationTPM:
	case AttestationX509:
		if err := need("CertificateChain", d.CertificateChain, "x509 attestation needs it"); err != nil {
			return err
		}
		if err := checkChain(d.CertificateChain); err != nil {
			return &fieldError{field: "CertificateChain", msg: err.Error()}
		}
	case AttestationSymmetricKey:
		if err := need("DerivedKey", d.DerivedKey, "symmetricKey attestation needs it"); err != nil {
			return err
		}
		if _, err := base64.StdEncoding.Strict().DecodeString(d.DerivedKey); err != nil {
			return &fieldError{field: "DerivedKey", msg: "is not standard base64: " + err.Error()}
		}
	default:
		return &fieldError{field: "Attestation", msg: fmt.Sprintf("%q is none of %s", d.Attestation, strings.Join(Attestations(), ", "))}
	}
	return nil
}

// checkChain reports whether s is one or more PEM CERTIFICATE blocks and
// nothing else but white space.
func checkChain(s string) error {
	rest := []byte(s)
	for n := 1; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if n == 1 {
				return fmt.Errorf("is not PEM")
			}
			if strings.TrimSpace(string(rest)) != "" {
				return fmt.Errorf("has text after PEM block %d", n-1)
			}
			return nil
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %d is %q, want CERTIFICATE", n, b.Type)
		}
		if len(b.Headers) > 0 {
			return fmt.Errorf("PEM block %d has headers", n)
		}
	}
}

// checkHost reports whether s is a DNS host name (or IPv4 address),
// optionally with a :port.
func checkHost(s string) error {
	host, port, hasPort := strings.Cut(s, ":")
	if hasPort {
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("port %q", port)
		}
	}
	if host == "" || len(host) > 253 {
		return errors.New("length")
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q", label)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("character %q", c)
			}
		}
	}
	return nil
}

//go:embed sample-chain.pem
var sampleChain string

// SampleData returns Data with made-up but realistic values for an
// attestation ("tpm", "x509" or "symmetricKey"): every field that
// attestation uses is set, the others are empty. Check renders it; golden
// tests and examples use it. For another attestation name it returns the
// common fields with that Attestation, which Validate refuses.
func SampleData(attestation string) Data {
	d := Data{
		IDScope:        "0ne0001A2B3",
		GlobalEndpoint: "global.azure-devices-provisioning.net",
		RegistrationID: "zt-sn-000123",
		DeviceID:       "zt-sn-000123",
		Attestation:    attestation,
		Serial:         "SN-000123",
		Model:          "ZT-EVK-1",
		Custom:         map[string]string{"line": "L1", "work_order": "WO-1001"},
	}
	switch attestation {
	case AttestationTPM:
		// Shaped like the registration ID the Azure device SDKs derive
		// from a TPM: lowercase base32 of a SHA-256, 52 characters.
		d.RegistrationID = "7kxmzkrmfhdxh4hyohru3wx76e7ujjjh6bcw5vwgzgxnvuwevn2a"
		d.DeviceID = ""
	case AttestationX509:
		d.CertificateChain = sampleChain
		d.CertificatePath = "/var/secrets/device-id.pem"
		d.KeyURI = "pkcs11:token=zerotouch;object=device-id"
	case AttestationSymmetricKey:
		// base64(HMAC-SHA256(base64decode(groupKey), "zt-sn-000123"))
		// for the made-up group key
		// emVyb3RvdWNoIHNhbXBsZSBlbnJvbGxtZW50IGtleSE=.
		d.DerivedKey = "CgwkmWn768m9wGC8v5NUNvQcygAQ8ewnlyLI5fhDi9I="
	}
	return d
}
