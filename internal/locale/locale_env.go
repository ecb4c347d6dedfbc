//go:build !windows

package locale

import "os"

func system() ([]string, error) {
	return fromEnv(os.Getenv), nil
}
