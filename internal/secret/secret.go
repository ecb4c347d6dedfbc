// Package secret reads a secret from a file or from an environment
// variable: never from a command-line flag's value, which any user of the
// machine can see in the process list.
package secret

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"zerotouch/internal/ownerfile"
)

// ErrMissing means neither the file nor the environment variable gave a
// secret.
var ErrMissing = errors.New("no secret given")

// ErrExposed means a secret's file may be read by users other than its
// owner.
var ErrExposed = ownerfile.ErrExposed

// Exposed returns an error wrapping ErrExposed, naming the file and its
// permissions, when users other than the file's owner may read it: on
// Unix by the permission bits for group or others, on Windows by an ACE
// for anyone but the current user, the owner, SYSTEM and the
// Administrators. Nil when only its owner may.
func Exposed(file string) error {
	return ownerfile.Exposed(file)
}

// Read returns the secret in file (given with the command-line flag
// named flag) when file is not empty, else the value of the environment
// variable env. One trailing newline (LF or CRLF) is
// dropped from a file, since editors add one. An empty secret is an
// error wrapping ErrMissing that names both places, so the operator knows
// where to put it. A file that other users of the machine may read is
// still read, with a warning to log (nil: no warning).
func Read(log *slog.Logger, flag, file, env string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read secret: %w", err)
		}
		if err := Exposed(file); errors.Is(err, ErrExposed) && log != nil {
			log.Warn("a secret's file is readable by other users of this machine: make it readable by the station's user alone",
				"setting", flag, "err", err, "fix", ownerfile.Remedy(file))
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		if len(b) == 0 {
			return nil, fmt.Errorf("%w: %s is empty", ErrMissing, file)
		}
		return b, nil
	}
	if v := os.Getenv(env); v != "" {
		return []byte(v), nil
	}
	return nil, fmt.Errorf("%w: name a file holding it with %s, or set %s", ErrMissing, flag, env)
}
