package device

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strconv"
	"time"
)

// KeyName is the policy a device's SAS token names ("For the Device API,
// this policy is always registration", DPS docs, "Control access to DPS
// with SAS tokens").
const KeyName = "registration"

// DeriveKey is the key of device regID in a symmetric-key enrollment
// group whose key is groupKey (base64-decoded):
// HMAC-SHA256(groupKey, regID), the device's key as Register takes it.
// The Azure docs and SDKs carry it base64-encoded:
// base64(HMAC-SHA256(base64decode(groupKey), regID)).
func DeriveKey(groupKey []byte, regID string) []byte {
	m := hmac.New(sha256.New, groupKey)
	m.Write([]byte(regID))
	return m.Sum(nil)
}

// Resource is what a device's SAS token is for, URL-encoded as the C, C#
// and Python SDKs send it: urlencode("{idScope}/registrations/{regID}").
func Resource(idScope, regID string) string {
	return url.QueryEscape(idScope + "/registrations/" + regID)
}

// StringToSign is what a device's SAS token signs: the resource as sent
// in sr, a newline, and the expiry in Unix seconds.
func StringToSign(sr string, expiry time.Time) string {
	return sr + "\n" + strconv.FormatInt(expiry.Unix(), 10)
}

// SASToken is the Authorization header for a device token over the
// resource sr (as it will be sent), expiring at expiry, whose signature
// (the HMAC-SHA256 of StringToSign) is sig:
// "SharedAccessSignature sr=...&sig=...&se=...&skn=registration".
func SASToken(sr string, sig []byte, expiry time.Time) string {
	return "SharedAccessSignature sr=" + sr +
		"&sig=" + url.QueryEscape(base64.StdEncoding.EncodeToString(sig)) +
		"&se=" + strconv.FormatInt(expiry.Unix(), 10) +
		"&skn=" + KeyName
}

// SymmetricKeyToken is the device token for registration regID of
// idScope signed with key, as the C SDK makes it.
func SymmetricKeyToken(idScope, regID string, key []byte, expiry time.Time) string {
	sr := Resource(idScope, regID)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(StringToSign(sr, expiry)))
	return SASToken(sr, m.Sum(nil), expiry)
}
