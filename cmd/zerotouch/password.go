package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"zerotouch/station"
)

// hashPassword prints the bcrypt hash of the first line read from in.
func hashPassword(g *globals, in io.Reader) error {
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		return fmt.Errorf("--hash-password: read stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return usageError{fmt.Errorf("--hash-password: no password on stdin")}
	}
	h, err := station.HashPassword(pw)
	if err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, h)
	return nil
}
