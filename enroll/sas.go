package enroll

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// SAS token errors. A token that fails is one of these, wrapped.
var (
	ErrSASMalformed = errors.New("malformed SAS token")
	ErrSASExpired   = errors.New("SAS token expired")
	ErrSASSignature = errors.New("SAS token signature does not match")
	ErrSASAudience  = errors.New("SAS token is for another resource")
)

// MaxClockSkew is how far past its expiry a token is still taken, as DPS
// does.
const MaxClockSkew = 5 * time.Minute

// SASToken makes the Authorization header value
// "SharedAccessSignature sr=...&sig=...&se=...&skn=..." for resource (the
// DPS host name for the service API), signed with key:
// sig = base64(HMAC-SHA256(key, urlencode(resource) + "\n" + expiry)).
// keyName may be empty (device tokens need none).
func SASToken(resource, keyName string, key []byte, expiry time.Time) string {
	sr := url.QueryEscape(strings.ToLower(resource))
	se := strconv.FormatInt(expiry.Unix(), 10)
	s := "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(sign(key, sr, se)) + "&se=" + se
	if keyName != "" {
		s += "&skn=" + url.QueryEscape(keyName)
	}
	return s
}

func sign(key []byte, sr, se string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sr + "\n" + se))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// SAS is a parsed SharedAccessSignature token.
type SAS struct {
	RawResource string    // sr exactly as sent; the signature covers it
	Resource    string    // sr, URL-decoded
	Signature   string    // sig, URL-decoded base64
	Expiry      time.Time // se
	KeyName     string    // skn; optional
}

// ParseSAS parses an Authorization header value. Errors wrap
// ErrSASMalformed.
func ParseSAS(header string) (*SAS, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(header), "SharedAccessSignature ")
	if !ok {
		return nil, fmt.Errorf("%w: want \"SharedAccessSignature sr=...&sig=...&se=...\"", ErrSASMalformed)
	}
	var s SAS
	var se string
	for _, f := range strings.Split(strings.TrimSpace(rest), "&") {
		name, value, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("%w: field %q is not name=value", ErrSASMalformed, f)
		}
		switch name {
		case "sr":
			s.RawResource = value
		case "sig", "skn":
			v, err := url.QueryUnescape(value)
			if err != nil {
				return nil, fmt.Errorf("%w: %s is not URL-encoded: %v", ErrSASMalformed, name, err)
			}
			if name == "sig" {
				s.Signature = v
			} else {
				s.KeyName = v
			}
		case "se":
			se = value
		default:
			return nil, fmt.Errorf("%w: unknown field %q", ErrSASMalformed, name)
		}
	}
	if s.RawResource == "" || s.Signature == "" || se == "" {
		return nil, fmt.Errorf("%w: sr, sig and se are required", ErrSASMalformed)
	}
	r, err := url.QueryUnescape(s.RawResource)
	if err != nil {
		return nil, fmt.Errorf("%w: sr is not URL-encoded: %v", ErrSASMalformed, err)
	}
	s.Resource = r
	n, err := strconv.ParseInt(se, 10, 64)
	if err != nil || n <= 0 {
		return nil, fmt.Errorf("%w: se %q is not a time in seconds", ErrSASMalformed, se)
	}
	s.Expiry = time.Unix(n, 0)
	return &s, nil
}

// Verify checks s the way DPS does: the HMAC over sr exactly as sent (SDKs
// differ on URL-encoding it) with any of keys, expiry plus MaxClockSkew
// not past now, and the decoded sr a case-insensitive prefix (by path
// segment) of target, which is the host name for the service API.
func (s *SAS) Verify(keys [][]byte, target string, now time.Time) error {
	if now.After(s.Expiry.Add(MaxClockSkew)) {
		return fmt.Errorf("%w at %s", ErrSASExpired, s.Expiry.UTC().Format(time.RFC3339))
	}
	aud := strings.ToLower(strings.TrimSuffix(s.Resource, "/"))
	t := strings.ToLower(target)
	if !(t == aud || strings.HasPrefix(t, aud+"/")) {
		return fmt.Errorf("%w: signed for %q, used on %q", ErrSASAudience, s.Resource, target)
	}
	se := strconv.FormatInt(s.Expiry.Unix(), 10)
	for _, k := range keys {
		if len(k) > 0 && hmac.Equal([]byte(sign(k, s.RawResource, se)), []byte(s.Signature)) {
			return nil
		}
	}
	return ErrSASSignature
}
