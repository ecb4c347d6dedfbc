// Package secret reads a secret from a file or from an environment
// variable: never from a command-line flag's value, which any user of the
// machine can see in the process list.
package secret

import (
	"bytes"
	"errors"
	"fmt"
	"os"
)

// ErrMissing means neither the file nor the environment variable gave a
// secret.
var ErrMissing = errors.New("no secret given")

// Read returns the secret in file (given with the command-line flag
// named flag) when file is not empty, else the value of the environment
// variable env. One trailing newline (LF or CRLF) is
// dropped from a file, since editors add one. An empty secret is an
// error wrapping ErrMissing that names both places, so the operator knows
// where to put it.
func Read(flag, file, env string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read secret: %w", err)
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
