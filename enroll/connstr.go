package enroll

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrConnectionString means a DPS connection string could not be used.
var ErrConnectionString = errors.New("invalid DPS connection string")

// ConnectionString is a parsed DPS service connection string:
// HostName=<dps>.azure-devices-provisioning.net;SharedAccessKeyName=<policy>;SharedAccessKey=<base64>.
// HostName may carry a port (an emulator on 127.0.0.1:8443).
type ConnectionString struct {
	HostName string
	KeyName  string
	Key      []byte // the decoded shared access key
}

// ParseConnectionString parses s. Field names are matched
// case-insensitively, as the SDKs do; HostName, SharedAccessKeyName and a
// base64 SharedAccessKey are required. Errors wrap ErrConnectionString and
// never repeat the key.
func ParseConnectionString(s string) (ConnectionString, error) {
	var c ConnectionString
	s = strings.TrimSpace(s)
	if s == "" {
		return c, fmt.Errorf("%w: it is empty", ErrConnectionString)
	}
	var key string
	var haveKey bool
	for _, part := range strings.Split(s, ";") {
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return c, fmt.Errorf("%w: %q is not name=value", ErrConnectionString, redactPart(part))
		}
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "hostname":
			c.HostName = strings.TrimSpace(value)
		case "sharedaccesskeyname":
			c.KeyName = strings.TrimSpace(value)
		case "sharedaccesskey":
			key, haveKey = strings.TrimSpace(value), true
		default:
			return c, fmt.Errorf("%w: unknown field %q (want HostName, SharedAccessKeyName, SharedAccessKey)", ErrConnectionString, name)
		}
	}
	switch {
	case c.HostName == "":
		return c, fmt.Errorf("%w: HostName is missing", ErrConnectionString)
	case strings.ContainsAny(c.HostName, "/ ?#@"):
		return c, fmt.Errorf("%w: HostName %q must be a host name (and port), not a URL", ErrConnectionString, c.HostName)
	case c.KeyName == "":
		return c, fmt.Errorf("%w: SharedAccessKeyName is missing", ErrConnectionString)
	case !haveKey || key == "":
		return c, fmt.Errorf("%w: SharedAccessKey is missing", ErrConnectionString)
	}
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(k) == 0 {
		return c, fmt.Errorf("%w: SharedAccessKey is not base64", ErrConnectionString)
	}
	c.Key = k
	return c, nil
}

// String returns the connection string with its key hidden, for logs.
func (c ConnectionString) String() string {
	return "HostName=" + c.HostName + ";SharedAccessKeyName=" + c.KeyName + ";SharedAccessKey=<hidden>"
}

// Secret returns the full connection string, key included.
func (c ConnectionString) Secret() string {
	return "HostName=" + c.HostName + ";SharedAccessKeyName=" + c.KeyName +
		";SharedAccessKey=" + base64.StdEncoding.EncodeToString(c.Key)
}

func redactPart(p string) string {
	if strings.HasPrefix(strings.ToLower(p), "sharedaccesskey") {
		return "SharedAccessKey..."
	}
	return p
}
