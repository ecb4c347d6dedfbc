package enroll

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestSASRoundTrip(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	other := []byte("another key entirely............")
	now := time.Unix(1_800_000_000, 0)
	tok := SASToken("DPS.example.net:8443", "provisioningserviceowner", key, now.Add(time.Hour))
	s, err := ParseSAS(tok)
	if err != nil {
		t.Fatalf("ParseSAS(%q) = %v", tok, err)
	}
	if s.KeyName != "provisioningserviceowner" || s.Resource != "dps.example.net:8443" {
		t.Errorf("ParseSAS(%q) = %+v", tok, s)
	}
	tests := []struct {
		name   string
		keys   [][]byte
		target string
		now    time.Time
		want   error
	}{
		{"good", [][]byte{key}, "dps.example.net:8443", now, nil},
		{"secondary key", [][]byte{other, key}, "dps.example.net:8443", now, nil},
		{"case of host", [][]byte{key}, "DPS.Example.NET:8443", now, nil},
		{"path under host", [][]byte{key}, "dps.example.net:8443/enrollments", now, nil},
		{"within skew", [][]byte{key}, "dps.example.net:8443", now.Add(time.Hour + 4*time.Minute), nil},
		{"expired", [][]byte{key}, "dps.example.net:8443", now.Add(time.Hour + 6*time.Minute), ErrSASExpired},
		{"forged", [][]byte{other}, "dps.example.net:8443", now, ErrSASSignature},
		{"other host", [][]byte{key}, "evil.example.net", now, ErrSASAudience},
		{"host prefix", [][]byte{key}, "dps.example.net:84431", now, ErrSASAudience},
	}
	for _, tt := range tests {
		err := s.Verify(tt.keys, tt.target, tt.now)
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.want)
		}
	}
}

// SDKs differ on whether sr is URL-encoded: the signature covers it as
// sent.
func TestSASUnencodedResource(t *testing.T) {
	key := []byte("k")
	exp := time.Unix(1_800_000_000, 0)
	sr := "0ne0001A2B3/registrations/dev-1"
	tok := "SharedAccessSignature sr=" + sr + "&sig=" + url.QueryEscape(sign(key, sr, "1800000000")) + "&se=1800000000"
	s, err := ParseSAS(tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify([][]byte{key}, "0ne0001a2b3/registrations/dev-1", exp); err != nil {
		t.Errorf("Verify(unencoded sr) = %v", err)
	}
	// Changing the encoding after signing breaks the signature.
	s.RawResource = url.QueryEscape(sr)
	if err := s.Verify([][]byte{key}, "0ne0001a2b3/registrations/dev-1", exp); !errors.Is(err, ErrSASSignature) {
		t.Errorf("Verify(re-encoded sr) = %v, want ErrSASSignature", err)
	}
}

func TestParseSASMalformed(t *testing.T) {
	for _, h := range []string{
		"",
		"Bearer abc",
		"SharedAccessSignature ",
		"SharedAccessSignature sr=h&sig=abc",
		"SharedAccessSignature sr=h&sig=abc&se=soon",
		"SharedAccessSignature sr=h&sig=abc&se=-5",
		"SharedAccessSignature sr=h&sig=%zz&se=5",
		"SharedAccessSignature sr=h&sig=a&se=5&foo=bar",
		"SharedAccessSignature sr&sig=a&se=5",
	} {
		if _, err := ParseSAS(h); !errors.Is(err, ErrSASMalformed) {
			t.Errorf("ParseSAS(%q) = %v, want ErrSASMalformed", h, err)
		}
	}
}

func FuzzParseSAS(f *testing.F) {
	f.Add(SASToken("h", "p", []byte("k"), time.Unix(1_800_000_000, 0)))
	f.Add("SharedAccessSignature sr=a%2Fb&sig=x&se=1&skn=")
	f.Fuzz(func(t *testing.T, h string) {
		s, err := ParseSAS(h)
		if err != nil {
			if !errors.Is(err, ErrSASMalformed) {
				t.Fatalf("ParseSAS error %v is not ErrSASMalformed", err)
			}
			return
		}
		if s.RawResource == "" || s.Signature == "" {
			t.Fatalf("ParseSAS(%q) accepted empty fields", h)
		}
		_ = s.Verify([][]byte{[]byte("k")}, strings.ToLower(s.Resource), s.Expiry)
	})
}
