package enroll

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseConnectionString(t *testing.T) {
	const key = "c2VjcmV0LWtleS1ieXRlcw==" // "secret-key-bytes"
	tests := []struct {
		in      string
		host    string
		keyName string
		wantErr string // substring; empty means success
	}{
		{"HostName=dps.azure-devices-provisioning.net;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=" + key,
			"dps.azure-devices-provisioning.net", "provisioningserviceowner", ""},
		{"hostname=127.0.0.1:8443;sharedaccesskeyname=owner;sharedaccesskey=" + key + ";", "127.0.0.1:8443", "owner", ""},
		{"  HostName=h;SharedAccessKeyName=p;SharedAccessKey=" + key + "\n", "h", "p", ""},
		{"", "", "", "empty"},
		{"HostName=h;SharedAccessKeyName=p", "", "", "SharedAccessKey is missing"},
		{"SharedAccessKeyName=p;SharedAccessKey=" + key, "", "", "HostName is missing"},
		{"HostName=h;SharedAccessKey=" + key, "", "", "SharedAccessKeyName is missing"},
		{"HostName=h;SharedAccessKeyName=p;SharedAccessKey=not*base64", "", "", "not base64"},
		{"HostName=https://h/;SharedAccessKeyName=p;SharedAccessKey=" + key, "", "", "not a URL"},
		{"HostName=h;SharedAccessKeyName=p;SharedAccessKey=" + key + ";DeviceId=x", "", "", "unknown field"},
		{"HostName=h;SharedAccessKeyName=p;garbage", "", "", "not name=value"},
	}
	for _, tt := range tests {
		c, err := ParseConnectionString(tt.in)
		if tt.wantErr != "" {
			if err == nil || !errors.Is(err, ErrConnectionString) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseConnectionString(%q) = %v, want ErrConnectionString with %q", tt.in, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), key) {
				t.Errorf("ParseConnectionString(%q) error repeats the key: %v", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseConnectionString(%q) = %v", tt.in, err)
			continue
		}
		if c.HostName != tt.host || c.KeyName != tt.keyName || !bytes.Equal(c.Key, []byte("secret-key-bytes")) {
			t.Errorf("ParseConnectionString(%q) = %+v", tt.in, c)
		}
		if strings.Contains(c.String(), key) {
			t.Errorf("String() shows the key: %s", c)
		}
		back, err := ParseConnectionString(c.Secret())
		if err != nil || back.HostName != c.HostName || !bytes.Equal(back.Key, c.Key) {
			t.Errorf("ParseConnectionString(Secret()) = %+v, %v", back, err)
		}
	}
}

func FuzzParseConnectionString(f *testing.F) {
	f.Add("HostName=h;SharedAccessKeyName=p;SharedAccessKey=c2VjcmV0")
	f.Add("HostName=;;;=")
	f.Add("a=b=c;SharedAccessKey=%%%")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseConnectionString(s)
		if err != nil {
			if !errors.Is(err, ErrConnectionString) {
				t.Fatalf("error %v is not ErrConnectionString", err)
			}
			return
		}
		if c.HostName == "" || c.KeyName == "" || len(c.Key) == 0 {
			t.Fatalf("accepted %q with empty fields: %+v", s, c)
		}
	})
}
