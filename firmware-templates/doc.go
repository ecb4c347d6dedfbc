// Package fwtemplates renders a board's firmware configuration file (the
// file the station writes to the board before it commits) from a template:
// one of the built-in templates, embedded in the binary, or a custom one
// from a file. Templates are Go text/template templates run with
// missingkey=error.
//
// # Built-in templates
//
//   - json: one JSON document: provisioning.{globalEndpoint, idScope,
//     registrationId, deviceId, attestation.{type, certificateChain,
//     certificatePath, keyUri, symmetricKey}, operationalCertificate},
//     device.{serial, model} and custom (an object of the Custom fields).
//     operationalCertificate, {"issuer": "dps", "path": ...}, appears when
//     OperationalCertificatePath is set: the board sends a CSR at its
//     registration and writes the chain DPS issues to path.
//   - aziot-toml: the [provisioning] section of the Azure IoT Identity
//     Service's /etc/aziot/config.toml for DPS (source = "dps",
//     global_endpoint as an https URL, id_scope, and
//     [provisioning.attestation] with method "tpm", "x509" or
//     "symmetric_key" and registration_id; for x509, identity_cert and
//     identity_pk, which aziot takes as locations on the device: a file URI
//     for the certificate (built from CertificatePath), a file or PKCS#11
//     URI for the key (KeyURI); for symmetric_key, symmetric_key = { value
//     = "..." }). The format is the one in Azure/iot-identity-service's
//     aziotctl/config/unix/template.toml and its config types in
//     aziotctl/aziotctl-common/src/config/super_config.rs.
//   - c-header: a C header with include guard ZEROTOUCH_DPS_CONFIG_H and
//     string macros DPS_GLOBAL_ENDPOINT, DPS_ID_SCOPE, DPS_REGISTRATION_ID,
//     DPS_DEVICE_ID (when set), DPS_ATTESTATION and one of
//     DPS_ATTESTATION_TPM, DPS_ATTESTATION_X509,
//     DPS_ATTESTATION_SYMMETRIC_KEY (defined as 1); for x509
//     DPS_CERTIFICATE_CHAIN (the PEM chain, one literal per line),
//     DPS_CERTIFICATE_PATH and DPS_KEY_URI (when set); for symmetricKey
//     DPS_SYMMETRIC_KEY; DEVICE_SERIAL, DEVICE_MODEL and
//     DEVICE_CUSTOM_<NAME> for each Custom field (NAME upper-cased).
//   - esp-idf-nvs-csv: a CSV for ESP-IDF's NVS partition generator
//     (nvs_partition_gen.py): namespace azure_dps with string entries
//     global_endpoint, id_scope, registration_id, device_id (when set),
//     attestation, cert_chain, cert_path, key_uri (x509; the last two when
//     set), symmetric_key (symmetricKey), serial, model; namespace custom
//     with one string entry per Custom field.
//
// Names lists them, Builtin returns one. The golden files in
// testdata/golden show each rendered for SampleData.
//
// # Template data
//
// A template runs on a Data value; its fields are:
//
//   - .IDScope: the DPS ID scope, e.g. 0ne0001A2B3. Required.
//   - .GlobalEndpoint: the DPS global device endpoint as a host name,
//     without scheme or path: global.azure-devices-provisioning.net.
//     Required.
//   - .RegistrationID: the board's DPS registration ID (for TPM, derived
//     from the EK; for X.509, the certificate's CN). Required.
//   - .DeviceID: the IoT Hub device ID when the station knows it; may be
//     empty (DPS assigns it).
//   - .Attestation: "tpm", "x509" or "symmetricKey" (the DPS names).
//     Required.
//   - .CertificateChain: x509 only, and then required: the PEM
//     certificate chain, the device certificate first, then its issuers.
//   - .CertificatePath: x509, optional: where the device keeps its
//     certificate, for templates that refer to files (aziot-toml needs it).
//   - .KeyURI: x509, optional: where the device's private key lives, e.g.
//     a PKCS#11 URI or a TPM handle (aziot-toml needs it, as a URI or an
//     absolute path).
//   - .DerivedKey: symmetricKey only, and then required: the device key,
//     base64 (HMAC-SHA256 of the registration ID under the group key).
//   - .Serial, .Model: the board's serial number and model, as the board
//     reports them.
//   - .Custom: the line's extra fields, a map from name to value. Read
//     one as .Custom.NAME (the render fails if the line lacks it, as
//     missingkey=error has it) or index .Custom "NAME" (empty if absent);
//     range over them in name order with range $name, $value := .Custom.
//   - .OperationalCertificatePath: optional: when set, the board asks DPS
//     for its operational certificate at its first registration
//     (api-version 2026-04-01) and writes the issued chain (PEM) to this
//     file. The json template carries it; the others leave it out.
//
// Render refuses a Data whose required fields are empty or invalid (a
// GlobalEndpoint with a scheme or path, a CertificateChain that is not PEM
// certificates, a DerivedKey that is not base64): see Data.Validate.
//
// # Template functions
//
// Besides text/template's own (printf, index, eq, ...), templates may call:
//
//   - required NAME VALUE: VALUE, or a render error naming NAME when VALUE
//     is empty: {{required "KeyURI" .KeyURI | toml}}.
//   - json VALUE: VALUE as JSON: a string as a string literal, a
//     map[string]string (such as .Custom) as an object with sorted keys.
//   - toml STRING: a TOML basic string, "..." with escapes.
//   - cstring STRING: a C string literal holding exactly the bytes of
//     STRING (octal escapes for control and non-ASCII bytes, no trigraph
//     can form); a NUL byte is refused.
//   - cstringlines STRING: adjacent C string literals, one per line of
//     STRING, joined by backslash-newline and a tab, for a multi-line
//     value inside a #define.
//   - cmacro NAME: NAME upper-cased for use in a C macro name; letters,
//     digits and _ only.
//   - csv STRING: a CSV field, quoted when it needs to be (RFC 4180).
//   - nvs STRING: the CSV value of an ESP-IDF NVS string entry; refuses
//     what nvs_partition_gen cannot store unchanged (over 3999 bytes, NUL,
//     carriage return, non-ASCII, a line starting with #).
//   - nvskey NAME: NAME as an NVS key or namespace name; refuses names
//     over 15 characters or with characters other than printable ASCII
//     without space, comma and quote.
//   - fileuri STRING: an absolute path as a file:// URI; a URI (file:,
//     pkcs11:, ...) as is.
//   - raw VALUE: VALUE as it is, not escaped (see below). For a value the
//     template's author knows is safe and wants verbatim, such as a
//     number from the line's settings ("port": {{raw .Custom.port}}) or a
//     pre-formatted block. The output is still validated for its format,
//     and CheckSample refuses the template if a hostile value in a field
//     the board can influence (Serial, Model, RegistrationID, DeviceID)
//     breaks what raw writes; a Custom field that raw writes by name is
//     the line's own setting, checked with its real value only.
//
// # Escaping
//
// Every action that writes a value is escaped for the template's format
// and for the place in the file where the value lands, unless its last
// command is one of the escaping functions above (json, toml, cstring,
// cstringlines, cmacro, csv, nvs, nvskey), whose output is written as it
// is (never escaped twice), or raw. So "serial": "{{.Serial}}" in a JSON
// template is as safe as "serial": {{json .Serial}}: a serial that holds
// a quote cannot add a key. Actions that write nothing are left alone:
// if, range, with, define, template, and {{$x := ...}}; required, fileuri
// or printf inside a pipeline are arguments, and the pipeline's value is
// escaped. An escaping function of another format is trusted too, so
// {{toml .Serial}} in a JSON template writes TOML: the output check and
// CheckSample catch what that breaks. Where a value lands, by format:
//
//   - json: inside a string literal, as the string's contents (JSON
//     escapes); elsewhere, as a JSON value: a string as a string literal,
//     .Custom as an object, a number as a number. Invalid UTF-8 is
//     refused.
//   - toml: inside a basic string "..." or """...""", as its contents
//     (TOML escapes); inside a literal string ('...', single or
//     multi-line), which has no escapes, as it is, and a value that holds
//     a single quote or a control character is refused; in a # comment, as a quoted basic
//     string; elsewhere, as a TOML value: a basic string, an integer, or
//     .Custom as an inline table. A value where it touches a bare key or
//     value (id_{{.Serial}} = 1) is refused.
//   - c-header: inside a string literal, as its contents (C escapes, NUL
//     refused, no trigraph can form with the text around, an unfinished
//     octal or hex escape before it cannot take its first character);
//     inside a character literal likewise, with ' escaped; in a comment,
//     as a string literal that cannot end the comment; elsewhere, as a
//     string literal (as cstring writes it), or an integer as itself. A
//     value that touches an identifier (#define SERIAL_{{.Serial}}) is
//     refused: build macro names with cmacro.
//   - nvs-csv: as a whole field, as nvs writes it (quoted when it needs to
//     be); inside a quoted field, with quotes doubled; as part of an
//     unquoted field, as it is, and a value that would need quotes is
//     refused; in each case a value nvs_partition_gen cannot store
//     unchanged is refused as nvs refuses it. In a # comment line, as a
//     JSON string literal.
//   - text: as it is; text output is not validated either.
//
// A value that cannot go where the template puts it (just after a
// backslash in a string, after the closing quote of a CSV field) fails the
// render with an error that names the action and its line.
//
// The escaping works on the real output: after parsing, each such action
// gets an internal last command that records its value and writes a
// placeholder holding a random nonce; after the template has run (if,
// range, with and template included), one pass reads the output as the
// format's parser would, finds where each placeholder is, and writes the
// value escaped for that place.
//
// # Formats and checks
//
// A template has a format: json, toml, c-header, nvs-csv or text. A
// built-in has its own; a custom template's comes from its file extension
// (.json, .toml, .h, .csv; anything else is text). Render validates its
// output for the format (a JSON object may not hold a key twice either),
// so it returns a file the board can use or an error wrapping ErrRender,
// never a broken file. Check renders SampleData for each attestation
// through the same validation, calling CheckSample, which renders the
// sample again with hostile values (quotes, backslashes, newlines, NUL and
// other control characters, ANSI escapes, a second "registrationId", TOML,
// C and CSV metacharacters, long values) in Serial, Model, RegistrationID,
// DeviceID and each Custom field (but one raw writes), and refuses a template whose output such
// a value makes invalid or changes in structure (a key, a definition or a
// row more). Their errors wrap ErrTemplate and name the field; the station
// runs CheckSample before the first board.
package fwtemplates
