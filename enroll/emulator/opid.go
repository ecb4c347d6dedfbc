package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"zerotouch/enroll"
)

// errOperationID means an operation ID is not in the form the emulator
// issues.
var errOperationID = errors.New("not an operation ID this service issues")

// operationIDVersion is the first part of the operation IDs the emulator
// issues, in the form DPS's take: "5.316aac5bdc130deb.b1e02da8-c3a0-4ff2-
// a121-7ea7a6b7f550" (a number, 16 hex digits, a UUID).
const operationIDVersion = "5"

// newOperationID makes a fresh operation ID.
func newOperationID() string {
	var b [8]byte
	rand.Read(b[:])
	return operationIDVersion + "." + hex.EncodeToString(b[:]) + "." + newUUID()
}

// parseOperationID checks that id is in the form newOperationID makes:
// 1 to 4 decimal digits, a dot, 16 lower-case hex digits, a dot and a
// lower-case UUID. Errors wrap errOperationID.
func parseOperationID(id string) error {
	parts := strings.Split(id, ".")
	if len(parts) != 3 {
		return fmt.Errorf("%w: want three parts separated by dots", errOperationID)
	}
	num, mid, uuid := parts[0], parts[1], parts[2]
	if len(num) < 1 || len(num) > 4 || strings.Trim(num, "0123456789") != "" {
		return fmt.Errorf("%w: first part %q is not a short number", errOperationID, num)
	}
	if len(mid) != 16 || !lowerHex(mid) {
		return fmt.Errorf("%w: second part %q is not 16 hex digits", errOperationID, mid)
	}
	if len(uuid) != 36 {
		return fmt.Errorf("%w: third part %q is not a UUID", errOperationID, uuid)
	}
	for i, g := range strings.Split(uuid, "-") {
		if i > 4 || len(g) != []int{8, 4, 4, 4, 12}[i] || !lowerHex(g) {
			return fmt.Errorf("%w: third part %q is not a UUID", errOperationID, uuid)
		}
	}
	return nil
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// deviceKeyName is the policy name device SAS tokens carry, when they
// carry one ("For the Device API, this policy is always registration",
// DPS docs, "Control access to DPS with SAS tokens").
const deviceKeyName = "registration"

// errDeviceSAS means a device API token names another policy than
// registration.
var errDeviceSAS = errors.New("device SAS tokens name the policy registration, or none")

// parseDeviceSAS parses a device API Authorization header: a
// SharedAccessSignature (enroll.ParseSAS) whose skn, if any, is
// registration (in any case). Errors wrap enroll.ErrSASMalformed or
// errDeviceSAS.
func parseDeviceSAS(header string) (*enroll.SAS, error) {
	sas, err := enroll.ParseSAS(header)
	if err != nil {
		return nil, err
	}
	if sas.KeyName != "" && !strings.EqualFold(sas.KeyName, deviceKeyName) {
		return nil, fmt.Errorf("%w: this one names %q", errDeviceSAS, sas.KeyName)
	}
	return sas, nil
}

// deviceAudience is the resource a device's token is for:
// "{idScope}/registrations/{registrationId}".
func deviceAudience(idScope, regID string) string {
	return idScope + "/registrations/" + regID
}
