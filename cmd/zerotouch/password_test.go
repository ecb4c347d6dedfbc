package main

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// gui --hash-password prints a bcrypt hash of the password on stdin, in
// the build without the window too; no password is a usage error.
func TestHashPassword(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("correct horse\n")
	w.Close()
	stdin := os.Stdin
	os.Stdin = r
	code, out, errOut := run(t, "gui", "--hash-password")
	os.Stdin = stdin
	if code != exitOK {
		t.Fatalf("gui --hash-password: exit %d: %s", code, errOut)
	}
	hash := strings.TrimSpace(out)
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte("correct horse")) != nil || strings.Contains(out, "correct horse") {
		t.Errorf("gui --hash-password printed %q: not a bcrypt hash of the password", out)
	}
}
