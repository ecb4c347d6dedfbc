// Package regid checks DPS registration IDs before anything is written to
// a board: a board given an ID that DPS refuses never provisions.
package regid

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// Length limits: DPS takes up to 128 characters; for X.509 attestation the
// registration ID is the certificate's CN, which holds 64.
const (
	MaxLen     = 128
	MaxLenX509 = 64
)

// ErrInvalid is what the checks of this package return, wrapped with the
// reason: every error of Check, CheckExisting and Group's methods is
// ErrInvalid (errors.Is).
var ErrInvalid = errors.New("invalid registration ID")

// ErrInvalidGroup is what Group's checks return, wrapped: an invalid
// enrollment group ID, said so in its message. errors.Is(err,
// ErrInvalid) holds for it too.
var ErrInvalidGroup error = groupSentinel{}

type groupSentinel struct{}

func (groupSentinel) Error() string        { return "invalid group ID" }
func (groupSentinel) Is(target error) bool { return target == ErrInvalid }

// Kind is what an ID names, for the messages of its checks:
// Registration (the package-level functions) or Group.
type Kind struct{ sentinel error }

var (
	Registration = Kind{ErrInvalid}
	Group        = Kind{ErrInvalidGroup}
)

// Check reports whether id is a registration ID or an enrollment group
// ID DPS accepts, at most max characters long: Registration.Check.
func Check(id string, max int) error { return Registration.Check(id, max) }

// CheckExisting reports whether id can name a registration ID already in
// DPS: Registration.CheckExisting.
func CheckExisting(id string) error { return Registration.CheckExisting(id) }

// Check reports whether id is an ID DPS accepts for a new record, at most
// max characters long: what the station, the client and the emulator
// create. The specification (service.json,
// IndividualEnrollment.registrationId): "A case-insensitive string (up to
// 128 characters long) of alphanumeric characters plus certain special
// characters : . _ -. No special characters allowed at start or end."
// Errors wrap k's sentinel (ErrInvalid or ErrInvalidGroup) and say which
// character is at fault.
//
// The sources disagree on the ends: Azure's DPS concept documentation
// (concepts-service, "Registration ID") says instead that the last
// character may be a dash, and records created before this rule, or by
// other tools, may have a special character at an end. What is created is
// held to the stricter rule; what is looked at or deleted is checked by
// CheckExisting, which leaves the ends alone.
func (k Kind) Check(id string, max int) error {
	if err := k.check(id, max); err != nil {
		return err
	}
	if c := id[0]; special(c) {
		return fmt.Errorf("%w %q: it starts with %q: it must start with a letter or a digit", k.sentinel, id, c)
	}
	if c := id[len(id)-1]; special(c) {
		return fmt.Errorf("%w %q: it ends with %q: it must end with a letter or a digit", k.sentinel, id, c)
	}
	return nil
}

// CheckExisting reports whether id can name a record already in DPS, to
// be read or deleted: 1 to MaxLen characters, letters, digits and - . _ :
// anywhere (see Check for why the ends are not checked). Errors wrap k's
// sentinel.
func (k Kind) CheckExisting(id string) error { return k.check(id, MaxLen) }

// check is the part of the rule both checks share: length and characters.
func (k Kind) check(id string, max int) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", k.sentinel)
	case len(id) > max:
		return fmt.Errorf("%w %q: %d characters, at most %d", k.sentinel, id, len(id), max)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !alnum(c) && !special(c) {
			return fmt.Errorf("%w %q: character %q at %d; use letters, digits and - . _ :", k.sentinel, id, c, i+1)
		}
	}
	return nil
}

// special reports whether c is one of the special characters an ID may
// hold (inside only, for Check): - . _ :
func special(c byte) bool { return c == '-' || c == '.' || c == '_' || c == ':' }

// MaxDeviceIDLen is the longest IoT Hub device ID.
const MaxDeviceIDLen = 128

// ErrInvalidDeviceID is what CheckDeviceID returns, wrapped with the
// reason.
var ErrInvalidDeviceID = errors.New("invalid device ID")

// CheckDeviceID reports whether id is a device ID IoT Hub accepts: 1 to
// 128 ASCII letters, digits and the characters - . % _ * ? ! ( ) , : = @
// $ ' (IoT Hub's identity registry; + and # are no longer taken). DPS
// puts a board into its hub under this ID, and refuses the board's
// registration when the hub refuses the ID.
func CheckDeviceID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty", ErrInvalidDeviceID)
	case len(id) > MaxDeviceIDLen:
		return fmt.Errorf("%w %q: %d characters, at most %d", ErrInvalidDeviceID, id, len(id), MaxDeviceIDLen)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !alnum(c) && !strings.ContainsRune("-.%_*?!(),:=@$'", rune(c)) {
			return fmt.Errorf("%w %q: character %q at %d; use letters, digits and - . %% _ * ? ! ( ) , : = @ $ '", ErrInvalidDeviceID, id, c, i+1)
		}
	}
	return nil
}

func alnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// FromEK is a TPM device's registration ID, derived from its EK's
// TPM2B_PUBLIC bytes as every Azure device SDK does (prov_auth_client.c
// load_registration_id): SHA-256 over the bytes, RFC 4648 base32 in lower
// case, the padding stripped: 52 characters of [a-z2-7].
func FromEK(ekTPM2B []byte) string {
	sum := sha256.Sum256(ekTPM2B)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))
}
