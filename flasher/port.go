package flasher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.bug.st/serial"
)

var _ Link = (*Port)(nil)

// portErr turns go.bug.st/serial's error codes and a closed file's error
// into ours.
func portErr(err error) error {
	if errors.Is(err, os.ErrClosed) {
		return ErrClosed
	}
	var pe *serial.PortError
	if errors.As(err, &pe) {
		switch pe.Code() {
		case serial.PortNotFound:
			return fmt.Errorf("%w: %v", ErrNoPort, err)
		case serial.PortClosed:
			return ErrClosed
		}
	}
	return err
}

// Path returns the port's path.
func (p *Port) Path() string { return p.path }

// Open opens the port at path, a serial port or a network port's URL
// (tcp:// or rfc2217://, see OpenNetPort), and starts a client on it,
// reading the board's parameters. opts.Baud is the port's rate (zero:
// 115200) and opts.Name defaults to path.
func Open(ctx context.Context, path string, opts Options) (*Client, error) {
	if opts.Baud <= 0 {
		opts.Baud = 115200
	}
	if opts.Name == "" {
		opts.Name = path
	}
	var p Link
	var err error
	if IsNetPort(path) {
		p, err = OpenNetPort(ctx, path, opts.Baud)
	} else {
		p, err = OpenPort(path, opts.Baud)
	}
	if err != nil {
		return nil, err
	}
	c, err := NewClient(ctx, p, opts)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// PortInfo describes a serial port found on the station.
type PortInfo struct {
	Path         string   `json:"path"`
	ByID         []string `json:"byId,omitempty"` // /dev/serial/by-id names that point at it
	USB          bool     `json:"usb"`
	VID          string   `json:"vid,omitempty"` // lowercase hex, 4 digits
	PID          string   `json:"pid,omitempty"`
	SerialNumber string   `json:"serialNumber,omitempty"`
	Product      string   `json:"product,omitempty"`
}

// ByIDDir is where udev lists serial ports by stable name.
const ByIDDir = "/dev/serial/by-id"

// ListPorts lists the station's serial ports with their USB details and
// by-id names.
func ListPorts() ([]PortInfo, error) {
	out, err := listPorts()
	if err != nil {
		return nil, fmt.Errorf("list serial ports: %w", err)
	}
	byID := byIDNames(ByIDDir)
	for i := range out {
		out[i].ByID = byID[out[i].Path]
	}
	return out, nil
}

// byIDNames maps device paths to the names in dir that link to them.
func byIDNames(dir string) map[string][]string {
	out := map[string][]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, e := range entries {
		link := filepath.Join(dir, e.Name())
		target, err := filepath.EvalSymlinks(link)
		if err != nil {
			continue
		}
		out[target] = append(out[target], link)
	}
	return out
}

// Match selects serial ports. Every field that is set must match; URL
// stands alone.
type Match struct {
	Path   string // exact device path, or a by-id name or path
	VID    string // USB vendor ID, hex
	PID    string // USB product ID, hex
	Serial string // USB serial number
	// URL is a port on the network, tcp://HOST:PORT or
	// rfc2217://HOST:PORT, in canonical form (see ParseNetPort).
	URL string
}

// ParseMatch parses a port rule: comma-separated terms among
//
//	/dev/ttyACM0           a device path (or path=/dev/ttyACM0); COM7 on Windows
//	usb-ZEPHYR_...         a /dev/serial/by-id name (or by-id=...)
//	2fe3:0100              a USB VID:PID (or vid=2fe3, pid=0100)
//	usb-serial=E6614103    a USB serial number
//
// or a port on the network, alone: tcp://HOST:PORT (raw TCP, as ser2net's
// raw mode and serial device servers carry a line) or rfc2217://HOST:PORT
// (RFC 2217, which also sets the line's rate).
func ParseMatch(rule string) (Match, error) {
	var m Match
	if strings.TrimSpace(rule) == "" {
		return m, fmt.Errorf("port rule is empty")
	}
	if strings.Contains(rule, "://") {
		u, _, _, err := ParseNetPort(strings.TrimSpace(rule))
		if err != nil {
			return m, fmt.Errorf("port rule: %w", err)
		}
		m.URL = u
		return m, nil
	}
	for term := range strings.SplitSeq(rule, ",") {
		term = strings.TrimSpace(term)
		key, val, hasKey := strings.Cut(term, "=")
		if !hasKey {
			val = term
			switch {
			case strings.HasPrefix(term, "/") || isWindowsPort(term):
				key = "path"
			case isVIDPID(term):
				key = "vidpid"
			default:
				key = "by-id"
			}
		}
		if val == "" {
			return m, fmt.Errorf("port rule %q: %s has no value", rule, key)
		}
		switch key {
		case "path":
			m.Path = val
		case "by-id":
			if !strings.HasPrefix(val, "/") {
				val = filepath.Join(ByIDDir, val)
			}
			m.Path = val
		case "vidpid":
			m.VID, m.PID, _ = strings.Cut(strings.ToLower(val), ":")
		case "vid":
			if !isHex4(val) {
				return m, fmt.Errorf("port rule %q: vid %q is not 4 hex digits", rule, val)
			}
			m.VID = strings.ToLower(val)
		case "pid":
			if !isHex4(val) {
				return m, fmt.Errorf("port rule %q: pid %q is not 4 hex digits", rule, val)
			}
			m.PID = strings.ToLower(val)
		case "usb-serial", "serial":
			m.Serial = val
		default:
			return m, fmt.Errorf("port rule %q: unknown term %q (use a path, a by-id name, vid:pid, or usb-serial=)", rule, key)
		}
	}
	return m, nil
}

// isWindowsPort reports whether s names a Windows serial port: COM7, or
// \\.\COM12 as the device namespace spells it.
func isWindowsPort(s string) bool {
	if strings.HasPrefix(s, `\\.\`) {
		return len(s) > 4
	}
	if len(s) < 4 || !strings.EqualFold(s[:3], "COM") {
		return false
	}
	for _, r := range s[3:] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func isVIDPID(s string) bool {
	v, p, ok := strings.Cut(s, ":")
	return ok && isHex4(v) && isHex4(p)
}

func isHex4(s string) bool {
	if len(s) != 4 {
		return false
	}
	for _, r := range strings.ToLower(s) {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// Matches reports whether p satisfies m. No serial port satisfies a
// network port's rule.
func (m Match) Matches(p PortInfo) bool {
	if m.URL != "" {
		return false
	}
	if m.Path != "" {
		target, err := filepath.EvalSymlinks(m.Path)
		if err != nil {
			target = m.Path
		}
		if p.Path != m.Path && p.Path != target && !slices.Contains(p.ByID, m.Path) {
			return false
		}
	}
	if m.VID != "" && m.VID != p.VID || m.PID != "" && m.PID != p.PID {
		return false
	}
	return m.Serial == "" || m.Serial == p.SerialNumber
}

// Find returns the ports among ports that match m.
func (m Match) Find(ports []PortInfo) []PortInfo {
	var out []PortInfo
	for _, p := range ports {
		if m.Matches(p) {
			out = append(out, p)
		}
	}
	return out
}

// Resolve returns the one device path that m names. A rule that is only a
// path (a pseudo-terminal, a port the enumerator does not list) is taken
// as it is if the file exists; a network port's URL is taken as it is,
// without connecting (Open connects). No match is an error wrapping
// ErrNoPort; several matches are an error too.
func (m Match) Resolve() (string, error) {
	if m.URL != "" {
		return m.URL, nil
	}
	if m.VID == "" && m.PID == "" && m.Serial == "" && m.Path != "" {
		if err := portPresent(m.Path); err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrNoPort, m.Path, err)
		}
		return m.Path, nil
	}
	ports, err := ListPorts()
	if err != nil {
		return "", err
	}
	found := m.Find(ports)
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: nothing matches %s", ErrNoPort, m)
	case 1:
		return found[0].Path, nil
	}
	paths := make([]string, len(found))
	for i, p := range found {
		paths[i] = p.Path
	}
	return "", fmt.Errorf("%d ports match %s (%s): make the rule narrower", len(found), m, strings.Join(paths, ", "))
}

func (m Match) String() string {
	if m.URL != "" {
		return m.URL
	}
	var parts []string
	if m.Path != "" {
		parts = append(parts, "path="+m.Path)
	}
	if m.VID != "" {
		parts = append(parts, "vid="+m.VID)
	}
	if m.PID != "" {
		parts = append(parts, "pid="+m.PID)
	}
	if m.Serial != "" {
		parts = append(parts, "usb-serial="+m.Serial)
	}
	return strings.Join(parts, ",")
}
