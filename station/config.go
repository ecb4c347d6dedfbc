package station

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"text/template"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"zerotouch/enroll"
	"zerotouch/flasher"
	"zerotouch/internal/regid"
	"zerotouch/labels"
)

// Attestation modes a line can be set up for.
const (
	ModeTPM          = "tpm"           // the TPM's endorsement key, individual enrollment
	ModeX509TPM      = "x509-tpm"      // a key made in the board's TPM, certificate from the CA
	ModeX509Keygen   = "x509-keygen"   // a key made by the board itself, certificate from the CA
	ModeSymmetricKey = "symmetric-key" // a device key derived from the enrollment group's key
	// ModeX509StationKey: the station makes the device key in memory,
	// has the CA sign it, writes key and chain to a stock board and keeps
	// no copy (board profile stock only). The key crosses the station and
	// the serial line: x509-keygen, where the board makes its own key, is
	// the stronger choice when the firmware can.
	ModeX509StationKey = "x509-station-key"
)

// Board profiles (Config.Board.Profile).
const (
	// ProfileZerotouch: the board's firmware has the provisioning group
	// (SMP group 64): identity, TPM passthrough, keygen, commit.
	ProfileZerotouch = "zerotouch"
	// ProfileStock: the board runs stock MCUmgr only (os, image, fs, and
	// the fs hash command when its firmware enables it): the station
	// supplies its serial number, writes its configuration by fs_mgmt,
	// checks it and resets the board.
	ProfileStock = "stock"
)

// Serial number sources of a stock line (Config.Board.Serial.Source).
const (
	// SerialSequence: a prefix and a counter the records store hands out,
	// never twice (records NextSerial).
	SerialSequence = "sequence"
	// SerialScan: the operator scans the board's label into its slot
	// (Station.Scan); headless, a file or standard input gives them.
	SerialScan = "scan"
	// SerialFile: a file on the board, written earlier in the line, read
	// through fs_mgmt.
	SerialFile = "file"
)

// DefaultSerialDigits is how many digits a sequence's number has, zero
// padded, unless the line says; DefaultStockModel the model recorded for
// a stock board.
const (
	DefaultSerialDigits = 6
	DefaultStockModel   = "stock"
)

// Default values of Config.
const (
	DefaultGlobalEndpoint = "global.azure-devices-provisioning.net"
	DefaultConfigPath     = "/lfs/zerotouch/config"
	DefaultRegistrationID = "{{.Serial}}"
	DefaultBaud           = 115200
	DefaultRecords        = "zerotouch.db" // the records' SQLite file, in the working folder
	DefaultBoardTimeout   = 10 * time.Minute
	DefaultProvisioner    = "zerotouch" // ca.provisioner: the step-ca JWK provisioner
)

// ErrConfig means the station's configuration cannot be used. A
// *ConfigError names the field.
var ErrConfig = errors.New("invalid station configuration")

// ConfigError is a problem with one field of the configuration.
type ConfigError struct {
	File  string
	Field string // the YAML path, as "slots[2].port"
	Msg   string
}

func (e *ConfigError) Error() string {
	if e.File != "" {
		return fmt.Sprintf("%s: %s: %s", e.File, e.Field, e.Msg)
	}
	return e.Field + ": " + e.Msg
}

// Is matches ErrConfig.
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

// Config is a station's configuration: one YAML file, the same for the
// headless run and the operator's window. Secrets are never in it, only
// the files (or environment variables) that hold them.
type Config struct {
	Station string `yaml:"station"` // the station's name, on every record
	Line    string `yaml:"line"`    // the line's name, on every record

	// Attestation is one of ModeTPM, ModeX509TPM, ModeX509Keygen or
	// ModeSymmetricKey.
	Attestation    string `yaml:"attestation"`
	IDScope        string `yaml:"id_scope"`
	GlobalEndpoint string `yaml:"global_endpoint"`
	// RegistrationID is a template over the board's identity (.Serial,
	// .Model, .HW, .Firmware) for the modes whose ID is not the EK's;
	// default "{{.Serial}}". It is lower-cased, since DPS compares IDs
	// without case.
	RegistrationID string `yaml:"registration_id"`
	// DeviceID is a template like RegistrationID for the IoT Hub device
	// ID; empty leaves it to DPS (the registration ID).
	DeviceID string `yaml:"device_id"`

	Slots   []SlotConfig  `yaml:"slots"`
	Baud    int           `yaml:"baud"`    // default 115200
	Timeout time.Duration `yaml:"timeout"` // per board answer beyond wire time; default 2 s, at most 1 minute
	// BoardTimeout bounds one board's whole run on its slot, from
	// connect to record (and the registration check, when enabled): a
	// board still running then fails. Default DefaultBoardTimeout, plus
	// verify_registration.timeout when that is enabled.
	BoardTimeout time.Duration `yaml:"board_timeout"`
	// SerialPattern, when set, is a regular expression (Go syntax) that
	// every board's serial number must match whole, on top of the rule
	// every serial meets (flasher.CheckSerial: printable, no spaces or
	// path separators, at most 64 characters).
	SerialPattern string `yaml:"serial_pattern"`

	Template TemplateConfig     `yaml:"template"`
	CA       CAConfig           `yaml:"ca"`
	Key      KeyConfig          `yaml:"key"`
	TPM      TPMConfig          `yaml:"tpm"`
	Group    SymmetricKeyConfig `yaml:"symmetric_key"`
	DPS      DPSConfig          `yaml:"dps"`
	Firmware *FirmwareConfig    `yaml:"firmware"`
	Records  string             `yaml:"records"` // the SQLite file; default ./zerotouch.db
	GUI      GUIConfig          `yaml:"gui"`
	// Labels is where each passed board's label goes, for the window and
	// headless alike: a folder (PNG and ZPL files), a ZPL printer over raw
	// TCP, or a CUPS queue. Default: the folder gui.labels.
	Labels labels.PrinterConfig `yaml:"labels"`
	// VerifyRegistration has each board register with DPS at the end of
	// the line, as it will at its first boot, and records how it went.
	VerifyRegistration VerifyConfig `yaml:"verify_registration"`
	// Board is what the line's boards run: their profile and, for stock
	// boards, where their serial numbers come from.
	Board BoardConfig `yaml:"board"`
	// OperationalCertificate, when set, has each board get its
	// operational certificate from DPS at its first registration, under
	// a credential policy (api-version 2026-04-01); nil: none.
	OperationalCertificate *OperationalCertificateConfig `yaml:"operational_certificate"`
}

// BoardConfig says what firmware the line's boards run.
type BoardConfig struct {
	// Profile is ProfileZerotouch (the default) or ProfileStock.
	Profile string `yaml:"profile"`
	// Serial is where a stock board's serial number comes from.
	Serial SerialConfig `yaml:"serial"`
	// Model is the model recorded for a stock board, which cannot say
	// its own; default DefaultStockModel.
	Model string `yaml:"model"`
	// RegistrationPath is the file a stock board's firmware writes its
	// DPS registration's outcome to at boot (the JSON of a
	// flasher.Registration), read for verify_registration; default
	// flasher.StockRegistrationPath.
	RegistrationPath string `yaml:"registration_path"`
}

// SerialConfig is the source of a stock board's serial number.
type SerialConfig struct {
	// Source is SerialSequence, SerialScan or SerialFile.
	Source string `yaml:"source"`
	// Prefix and Digits make a sequence's serial numbers: the prefix and
	// the number, zero padded to Digits (default DefaultSerialDigits), as
	// ZT-000042.
	Prefix string `yaml:"prefix"`
	Digits int    `yaml:"digits"`
	// Sequence names the counter in the records store; default the
	// prefix. Lines that share a name share the counter.
	Sequence string `yaml:"sequence"`
	// Path is, for SerialFile, the file on the board that holds the
	// serial number. For SerialSequence it is optional: the station reads
	// a serial number there first (a board that has one keeps it) and
	// writes the one it hands out there.
	Path string `yaml:"path"`
}

// VerifyConfig is the end-of-line registration check.
type VerifyConfig struct {
	Enabled bool `yaml:"enabled"`
	// Timeout bounds the wait for the board's enrollment to reach DPS
	// and its registration together; default 2 minutes.
	Timeout time.Duration `yaml:"timeout"`
}

// GUIConfig is the operator window's part of the configuration.
type GUIConfig struct {
	// Labels is the folder where each passed board's label goes, as PNG
	// and ZPL, when the labels section names no destination; default
	// ./labels.
	Labels string `yaml:"labels"`
	// SupervisorPasswordHash is the bcrypt hash of the password that
	// unlocks the settings and the retry of a board flagged as a possible
	// clone (zerotouch gui --hash-password makes one). Empty: they stay
	// locked.
	SupervisorPasswordHash string `yaml:"supervisor_password_hash"`
}

// SlotConfig is one fixture port.
type SlotConfig struct {
	Name string `yaml:"name"` // default "slot-N"
	// Port selects the port as zerotouch link does: a device path (COM7
	// on Windows), a /dev/serial/by-id name, a USB "vid:pid", terms such
	// as "vid=2fe3,usb-serial=E6614103", or a board on the network:
	// "tcp://HOST:PORT" (raw) or "rfc2217://HOST:PORT".
	Port string `yaml:"port"`
}

// TemplateConfig says what configuration is written to each board.
type TemplateConfig struct {
	Name   string            `yaml:"name"`   // a built-in template (default "json")
	File   string            `yaml:"file"`   // a template file instead
	Path   string            `yaml:"path"`   // the file on the board; default DefaultConfigPath
	Custom map[string]string `yaml:"custom"` // extra fields the template sees as .Custom
	// CertificatePath and KeyURI tell templates where the device keeps
	// its certificate and key (X.509 modes).
	CertificatePath string `yaml:"certificate_path"`
	KeyURI          string `yaml:"key_uri"`
	// KeyPath is, in mode x509-station-key, the file on the board the
	// station writes the device key to (PEM, PKCS #8); default
	// flasher.StockKeyPath. key_uri then defaults to file://KEY_PATH.
	KeyPath string `yaml:"key_path"`
}

// CAConfig names the CA of the X.509 modes: a local CA folder, or a
// step-ca by URL. The password comes from PasswordFile or
// ZEROTOUCH_CA_PASSWORD.
type CAConfig struct {
	Dir          string `yaml:"dir"`
	URL          string `yaml:"url"`
	Fingerprint  string `yaml:"fingerprint"`
	Provisioner  string `yaml:"provisioner"`
	PasswordFile string `yaml:"password_file"`
	Validity     string `yaml:"validity"`
	// GroupID, when set, enrolls the line's boards through this DPS
	// enrollment group, whose signing certificate is the CA's
	// intermediate, instead of one individual enrollment per board.
	GroupID string `yaml:"group_id"`
	// CreateGroup has the station create the group at start when DPS
	// lacks it; default true. False: the station refuses to start.
	CreateGroup *bool `yaml:"create_group"`
}

// KeyConfig is the device key of the X.509 modes.
type KeyConfig struct {
	Alg    string `yaml:"alg"`    // ecdsa-p256 (default) or rsa-2048
	Handle uint32 `yaml:"handle"` // x509-tpm: the persistent handle; default 0x81000002
}

// TPMConfig tunes the TPM modes.
type TPMConfig struct {
	NoCreate bool     `yaml:"no_create"` // the EK must be there already
	EKRoots  []string `yaml:"ek_roots"`  // TPM vendor certificates
	// RequireEKCert fails a board whose EK certificate does not verify
	// against EKRoots.
	RequireEKCert bool `yaml:"require_ek_cert"`
}

// SymmetricKeyConfig is the enrollment group of the symmetric-key mode:
// its ID and the file holding its primary key (or
// ZEROTOUCH_GROUP_KEY).
type SymmetricKeyConfig struct {
	GroupID string `yaml:"group_id"`
	KeyFile string `yaml:"key_file"`
	// CreateGroup has the station create the group, with the line's
	// key, at start when DPS lacks it; default true. False: the station
	// refuses to start.
	CreateGroup *bool `yaml:"create_group"`
}

// DPSConfig is the DPS service the enrollments go to. The connection
// string comes from ConnectionStringFile or
// ZEROTOUCH_DPS_CONNECTION_STRING; with neither, the station records and
// queues but does not upload.
type DPSConfig struct {
	ConnectionStringFile string  `yaml:"connection_string_file"`
	CAFile               string  `yaml:"ca_file"`
	Quota                int     `yaml:"quota"` // operations a minute; default 1000
	Share                float64 `yaml:"share"` // of the quota; default 0.97
	Upload               *bool   `yaml:"upload"`
}

// FirmwareConfig is the production image, flashed when the board runs
// another version.
type FirmwareConfig struct {
	Image   string `yaml:"image"`
	Version string `yaml:"version"`
}

// LoadConfig reads and checks a YAML configuration file. Unknown fields
// are errors (a misspelt field would otherwise be ignored).
func LoadConfig(file string) (*Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("station configuration: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.File = file
			return nil, ce
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return c, nil
}

// ParseConfig parses YAML and applies defaults, then Validate.
func ParseConfig(b []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, &ConfigError{Field: "yaml", Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	c.defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) defaults() {
	if c.GlobalEndpoint == "" {
		c.GlobalEndpoint = DefaultGlobalEndpoint
	}
	if c.RegistrationID == "" {
		c.RegistrationID = DefaultRegistrationID
	}
	if c.Baud == 0 {
		c.Baud = DefaultBaud
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.VerifyRegistration.Timeout == 0 {
		c.VerifyRegistration.Timeout = 2 * time.Minute
	}
	if c.BoardTimeout == 0 {
		c.BoardTimeout = DefaultBoardTimeout
		if c.VerifyRegistration.Enabled {
			c.BoardTimeout += c.VerifyRegistration.Timeout
		}
	}
	if c.Template.Name == "" && c.Template.File == "" {
		c.Template.Name = "json"
	}
	if c.Board.Profile == "" {
		c.Board.Profile = ProfileZerotouch
	}
	if c.Board.Model == "" {
		c.Board.Model = DefaultStockModel
	}
	if c.Board.RegistrationPath == "" {
		c.Board.RegistrationPath = flasher.StockRegistrationPath
	}
	if c.Board.Serial.Digits == 0 {
		c.Board.Serial.Digits = DefaultSerialDigits
	}
	if oc := c.OperationalCertificate; oc != nil && oc.Path == "" {
		oc.Path = DefaultOperationalCertificatePath
		if c.Board.Profile == ProfileStock {
			oc.Path = flasher.StockMount + "/operational.pem"
		}
	}
	if c.Board.Profile == ProfileStock {
		if c.Template.Path == "" {
			c.Template.Path = flasher.StockConfigPath
		}
		if c.Board.Serial.Sequence == "" {
			c.Board.Serial.Sequence = c.Board.Serial.Prefix
		}
		if c.Attestation == ModeX509StationKey {
			if c.Template.KeyPath == "" {
				c.Template.KeyPath = flasher.StockKeyPath
			}
			if c.Template.KeyURI == "" {
				c.Template.KeyURI = "file://" + c.Template.KeyPath
			}
		}
	}
	if c.Template.Path == "" {
		c.Template.Path = DefaultConfigPath
	}
	if c.Group.CreateGroup == nil {
		c.Group.CreateGroup = ptrTo(true)
	}
	if c.CA.CreateGroup == nil {
		c.CA.CreateGroup = ptrTo(true)
	}
	if c.Key.Alg == "" {
		c.Key.Alg = "ecdsa-p256"
	}
	if c.Key.Handle == 0 {
		c.Key.Handle = 0x81000002
	}
	if c.DPS.Quota == 0 {
		c.DPS.Quota = 1000
	}
	if c.DPS.Share == 0 {
		c.DPS.Share = 0.97
	}
	if c.Records == "" {
		c.Records = DefaultRecords
	}
	if c.GUI.Labels == "" {
		c.GUI.Labels = "labels"
	}
	if c.Labels.Dir == "" && c.Labels.ZPL == "" && c.Labels.LP == "" {
		c.Labels.Dir = c.GUI.Labels
	}
	if c.Labels.Timeout == 0 {
		c.Labels.Timeout = labels.DefaultPrintTimeout
	}
	if c.CA.Provisioner == "" {
		c.CA.Provisioner = DefaultProvisioner
	}
	for i := range c.Slots {
		if c.Slots[i].Name == "" {
			c.Slots[i].Name = fmt.Sprintf("slot-%d", i+1)
		}
	}
}

// Validate checks the configuration once, at start; each error names
// its field.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	switch c.Attestation {
	case ModeTPM, ModeX509TPM, ModeX509Keygen, ModeSymmetricKey, ModeX509StationKey:
	case "":
		return bad("attestation", "missing: want tpm, x509-tpm, x509-keygen, symmetric-key or x509-station-key")
	default:
		return bad("attestation", "%q: want tpm, x509-tpm, x509-keygen, symmetric-key or x509-station-key", c.Attestation)
	}
	if err := c.validateBoard(); err != nil {
		return err
	}
	if !validIDScope(c.IDScope) {
		return bad("id_scope", "%q: want the DPS ID scope, as 0ne0001A2B3 (the DPS overview page shows it)", c.IDScope)
	}
	if strings.Contains(c.GlobalEndpoint, "/") || strings.ContainsAny(c.GlobalEndpoint, " \t") {
		return bad("global_endpoint", "%q: want a host name, as %s, without https://", c.GlobalEndpoint, DefaultGlobalEndpoint)
	}
	for _, f := range []struct{ name, text string }{{"registration_id", c.RegistrationID}, {"device_id", c.DeviceID}} {
		if _, err := identityTemplate(f.text); err != nil {
			return bad(f.name, "%v", err)
		}
	}
	if c.DeviceID != "" {
		t, _ := identityTemplate(c.DeviceID)
		if _, err := renderDeviceID(t, sampleBoard); err != nil {
			return bad("device_id", "for a board %+v: %v", sampleBoard, err)
		}
	}
	if len(c.Slots) == 0 {
		return bad("slots", "none: list the fixture ports, as - port: /dev/ttyACM0")
	}
	if err := c.Labels.Validate(); err != nil {
		var le *labels.ConfigError
		if errors.As(err, &le) {
			return bad(le.Field, "%s", le.Msg)
		}
		return bad("labels", "%v", err)
	}
	names := map[string]int{}
	for i, s := range c.Slots {
		field := fmt.Sprintf("slots[%d]", i)
		if s.Port == "" {
			return bad(field+".port", "missing")
		}
		if _, err := flasher.ParseMatch(s.Port); err != nil {
			return bad(field+".port", "%v", err)
		}
		if j, dup := names[s.Name]; dup {
			return bad(field+".name", "%q is also slots[%d]", s.Name, j)
		}
		names[s.Name] = i
	}
	if c.Baud < 1200 || c.Baud > 4_000_000 {
		return bad("baud", "%d: want a serial rate such as 115200", c.Baud)
	}
	if c.Timeout < 0 || c.Timeout > flasher.MaxTimeout {
		return bad("timeout", "%v: want a wait for one answer of at most %v, as 2s", c.Timeout, flasher.MaxTimeout)
	}
	if c.BoardTimeout < 0 {
		return bad("board_timeout", "negative")
	}
	if c.VerifyRegistration.Enabled && c.BoardTimeout > 0 && c.BoardTimeout <= c.VerifyRegistration.Timeout {
		return bad("board_timeout", "%v leaves no time for the board before verify_registration.timeout (%v)", c.BoardTimeout, c.VerifyRegistration.Timeout)
	}
	if c.SerialPattern != "" {
		if _, err := serialPattern(c.SerialPattern); err != nil {
			return bad("serial_pattern", "%v", err)
		}
	}
	if c.VerifyRegistration.Timeout < 0 {
		return bad("verify_registration.timeout", "negative")
	}
	if c.Template.Name != "" && c.Template.File != "" {
		return bad("template", "give name (a built-in template) or file, not both")
	}
	if !strings.HasPrefix(c.Template.Path, "/") {
		return bad("template.path", "%q: want an absolute path on the board, as %s", c.Template.Path, DefaultConfigPath)
	}
	switch c.Attestation {
	case ModeX509TPM, ModeX509Keygen, ModeX509StationKey:
		if c.CA.Dir == "" && c.CA.URL == "" {
			return bad("ca", "x509 modes need a CA: dir (a local CA) or url and fingerprint (a step-ca)")
		}
		if c.CA.URL != "" && c.CA.Fingerprint == "" {
			return bad("ca.fingerprint", "missing: a step-ca's root is pinned by its SHA-256")
		}
		if c.Key.Alg != "ecdsa-p256" && c.Key.Alg != "rsa-2048" {
			return bad("key.alg", "%q: want ecdsa-p256 or rsa-2048", c.Key.Alg)
		}
		if c.Attestation == ModeX509TPM && (c.Key.Handle < 0x81000000 || c.Key.Handle > 0x817FFFFF ||
			c.Key.Handle == 0x81000001 || c.Key.Handle == 0x81010001) {
			return bad("key.handle", "%#x: want a persistent handle in 0x81000000-0x817fffff other than the SRK's and the EK's", c.Key.Handle)
		}
		if c.CA.GroupID != "" {
			if err := regid.Check(c.CA.GroupID, regid.MaxLen); err != nil {
				return bad("ca.group_id", "%v", err)
			}
		}
	case ModeSymmetricKey:
		if c.Group.GroupID == "" {
			return bad("symmetric_key.group_id", "missing: the enrollment group's ID")
		}
		if err := regid.Check(c.Group.GroupID, regid.MaxLen); err != nil {
			return bad("symmetric_key.group_id", "%v", err)
		}
	}
	if c.TPM.RequireEKCert && len(c.TPM.EKRoots) == 0 {
		return bad("tpm.require_ek_cert", "needs tpm.ek_roots, the TPM vendors' certificates")
	}
	if c.DPS.Quota < 0 || c.DPS.Share <= 0 || c.DPS.Share > 1 {
		return bad("dps", "quota %d a minute at share %v: want a quota above 0 and a share in (0, 1]", c.DPS.Quota, c.DPS.Share)
	}
	if f := c.Firmware; f != nil {
		if f.Image == "" || f.Version == "" {
			return bad("firmware", "give both image and version")
		}
		if _, err := flasher.ParseImageVersion(f.Version); err != nil {
			return bad("firmware.version", "%v", err)
		}
	}
	if h := c.GUI.SupervisorPasswordHash; h != "" {
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			return bad("gui.supervisor_password_hash", "not a bcrypt hash (%v): make one with zerotouch gui --hash-password", err)
		}
	}
	return c.validateOperationalCertificate()
}

// needsGroup names, for each mode a stock board cannot be provisioned in,
// the provisioning group's commands it needs.
var needsGroup = map[string]string{
	ModeTPM:        "tpm (TPM passthrough)",
	ModeX509TPM:    "tpm (TPM passthrough)",
	ModeX509Keygen: "keygen (a key made on the board)",
}

// validateBoard checks the board section against the attestation.
func (c *Config) validateBoard() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	b := c.Board
	switch b.Profile {
	case "", ProfileZerotouch: // "": a Config built without ParseConfig's defaults
		if c.Attestation == ModeX509StationKey {
			return bad("attestation", "x509-station-key is for board.profile: stock; a board with the provisioning group makes its own key: use x509-keygen")
		}
		if b.Serial.Source != "" || b.Serial.Prefix != "" || b.Serial.Sequence != "" || b.Serial.Path != "" {
			return bad("board.serial", "only for board.profile: stock (a zerotouch board says its own serial number)")
		}
		return nil
	case ProfileStock:
	default:
		return bad("board.profile", "%q: want %s or %s", b.Profile, ProfileZerotouch, ProfileStock)
	}
	if cmds, ok := needsGroup[c.Attestation]; ok {
		return bad("attestation", "%s needs the provisioning group (SMP group %d: %s), which a stock board (board.profile: stock) lacks: use symmetric-key or x509-station-key, or the zerotouch firmware module",
			c.Attestation, flasher.GroupProvisioning, cmds)
	}
	s := b.Serial
	switch s.Source {
	case SerialSequence:
		if s.Digits < 1 || s.Digits > 18 {
			return bad("board.serial.digits", "%d: want 1 to 18", s.Digits)
		}
		if s.Sequence == "" {
			return bad("board.serial.prefix", "missing: a sequence's serial numbers are a prefix and a number, as ZT- and 000042 (or name the counter: board.serial.sequence)")
		}
		sample := sequenceSerial(s.Prefix, s.Digits, 1)
		if err := flasher.CheckSerial(sample); err != nil {
			return bad("board.serial.prefix", "%q makes serial numbers such as %q: %v", s.Prefix, sample, err)
		}
	case SerialScan:
	case SerialFile:
		if s.Path == "" {
			return bad("board.serial.path", "missing: the file on the board that holds its serial number, as %s/serial", flasher.StockMount)
		}
	case "":
		return bad("board.serial.source", "missing: a stock board cannot say its serial number: want sequence, scan or file")
	default:
		return bad("board.serial.source", "%q: want sequence, scan or file", s.Source)
	}
	if s.Path != "" && !strings.HasPrefix(s.Path, "/") {
		return bad("board.serial.path", "%q: want an absolute path on the board, as %s/serial", s.Path, flasher.StockMount)
	}
	for _, f := range []struct{ field, path string }{{"template.key_path", c.Template.KeyPath}, {"board.registration_path", b.RegistrationPath}} {
		if f.path != "" && !strings.HasPrefix(f.path, "/") {
			return bad(f.field, "%q: want an absolute path on the board, as %s", f.path, flasher.StockKeyPath)
		}
	}
	if c.Attestation == ModeX509StationKey && (c.Template.KeyPath == c.Template.Path || c.Template.KeyPath == c.Template.CertificatePath) {
		return bad("template.key_path", "%q is also the configuration's or the certificate's file", c.Template.KeyPath)
	}
	return nil
}

// sequenceSerial is the serial number n of a sequence.
func sequenceSerial(prefix string, digits int, n int64) string {
	return fmt.Sprintf("%s%0*d", prefix, digits, n)
}

// LineGroup is the DPS enrollment group a line's boards enroll through.
type LineGroup struct {
	ID string
	// Attestation is the group's DPS attestation type:
	// enroll.AttestationSymmetricKey or enroll.AttestationX509.
	Attestation string
	// Create: the station creates the group at start when DPS lacks it.
	Create bool
	// CredentialPolicy is the credential policy the group names
	// (operational_certificate.credential_policy); "" for none.
	CredentialPolicy string
	// Setting is the configuration key that names the group
	// ("symmetric_key.group_id" or "ca.group_id"), and CreateSetting the
	// one that says whether to create it, for messages.
	Setting, CreateSetting string
}

// EnrollmentGroup returns the enrollment group the line's boards enroll
// through: a symmetric-key line's, or an X.509 line's with ca.group_id.
// ok is false for a line of individual enrollments.
func (c *Config) EnrollmentGroup() (g LineGroup, ok bool) {
	switch c.Attestation {
	case ModeSymmetricKey:
		g = LineGroup{ID: c.Group.GroupID, Attestation: enroll.AttestationSymmetricKey, Create: boolOr(c.Group.CreateGroup, true),
			Setting: "symmetric_key.group_id", CreateSetting: "symmetric_key.create_group"}
	case ModeX509TPM, ModeX509Keygen, ModeX509StationKey:
		if c.CA.GroupID == "" {
			return LineGroup{}, false
		}
		g = LineGroup{ID: c.CA.GroupID, Attestation: enroll.AttestationX509, Create: boolOr(c.CA.CreateGroup, true),
			Setting: "ca.group_id", CreateSetting: "ca.create_group"}
	default:
		return LineGroup{}, false
	}
	g.CredentialPolicy = c.CredentialPolicy()
	return g, true
}

func ptrTo[T any](v T) *T { return &v }

// boolOr is *p, or def when p is nil.
func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// validIDScope checks the shape of a DPS ID scope: "0ne" and 8 hex
// digits, as DPS issues them.
func validIDScope(s string) bool {
	if len(s) != 11 || !strings.EqualFold(s[:3], "0ne") {
		return false
	}
	for _, c := range s[3:] {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// serialPattern compiles a serial_pattern, anchored to match whole.
func serialPattern(p string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + p + `)$`)
}

// BoardInfo is what registration_id and device_id templates see.
type BoardInfo struct {
	Serial, Model, HW, Firmware string
}

// sampleBoard is what identity templates are tried on at start.
var sampleBoard = BoardInfo{Serial: "ZT000001", Model: "m", HW: "1", Firmware: "1.0.0"}

func identityTemplate(text string) (*template.Template, error) {
	t, err := template.New("id").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	if err := t.Execute(&b, sampleBoard); err != nil {
		return nil, err
	}
	return t, nil
}

// renderDeviceID renders a device_id template for a board, as renderID
// does, and checks the result against IoT Hub's rule.
func renderDeviceID(t *template.Template, b BoardInfo) (string, error) {
	id, err := renderID(t, b)
	if err != nil {
		return "", err
	}
	if err := regid.CheckDeviceID(id); err != nil {
		return "", err
	}
	return id, nil
}

func renderID(t *template.Template, b BoardInfo) (string, error) {
	var s strings.Builder
	if err := t.Execute(&s, b); err != nil {
		return "", err
	}
	return strings.ToLower(s.String()), nil
}

// DPSAttestation is the DPS attestation type of a station mode.
func DPSAttestation(mode string) string {
	switch mode {
	case ModeTPM:
		return "tpm"
	case ModeX509TPM, ModeX509Keygen, ModeX509StationKey:
		return "x509"
	}
	return "symmetricKey"
}
