package ca_test

import (
	"context"
	"crypto/elliptic"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"zerotouch/ca"
)

func TestRemoteConnectErrors(t *testing.T) {
	s := newStepCA(t, "")
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "https://" + l.Addr().String()
	l.Close()
	for _, tt := range []struct {
		name   string
		modify func(*ca.RemoteConfig)
		want   error
	}{
		{"wrong fingerprint", func(c *ca.RemoteConfig) { c.Fingerprint = strings.Repeat("ab", 32) }, ca.ErrUntrusted},
		{"wrong password", func(c *ca.RemoteConfig) { c.Password = []byte("wrong") }, ca.ErrPassword},
		{"no password", func(c *ca.RemoteConfig) { c.Password = nil }, ca.ErrPassword},
		{"unknown provisioner", func(c *ca.RemoteConfig) { c.Provisioner = "nobody" }, ca.ErrNoProvisioner},
		{"nothing listening", func(c *ca.RemoteConfig) { c.URL = closed }, ca.ErrUnavailable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := remoteConfig(s)
			tt.modify(&cfg)
			r, err := ca.NewRemote(context.Background(), cfg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("NewRemote = %v, %v; want %v", r, err, tt.want)
			}
		})
	}
}

func TestRemoteConfigValidate(t *testing.T) {
	good := ca.RemoteConfig{URL: "https://ca.example:9000", Fingerprint: strings.Repeat("0f", 32), Provisioner: "line", Password: []byte("x")}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	for _, tt := range []struct {
		name   string
		modify func(*ca.RemoteConfig)
		want   string
	}{
		{"plain http", func(c *ca.RemoteConfig) { c.URL = "http://ca.example:9000" }, "https"},
		{"no url", func(c *ca.RemoteConfig) { c.URL = "" }, "url"},
		{"short fingerprint", func(c *ca.RemoteConfig) { c.Fingerprint = "abcd" }, "fingerprint"},
		{"no provisioner", func(c *ca.RemoteConfig) { c.Provisioner = "" }, "provisioner"},
		{"weak policy", func(c *ca.RemoteConfig) { c.Policy.MinRSABits = 1024 }, "minRSABits"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.modify(&cfg)
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error naming %q", err, tt.want)
			}
		})
	}
	// A fingerprint with colons, as some tools print it, is fine.
	colons := good
	colons.Fingerprint = strings.TrimSuffix(strings.Repeat("0F:", 32), ":")
	if err := colons.Validate(); err != nil {
		t.Fatalf("Validate(colon fingerprint) = %v", err)
	}
}

// A step-ca whose provisioner template makes server certificates: the
// issuer must not hand them to a board.
func TestRemoteRefusesWrongCertificate(t *testing.T) {
	s := newStepCA(t, `{"subject": {{ toJson .Subject }}, "keyUsage": ["digitalSignature"], "extKeyUsage": ["serverAuth"]}`)
	r := newRemote(t, s)
	_, err := r.Issue(context.Background(), csrFor(t, ecKey(t, elliptic.P256()), "device-1", nil), "device-1")
	if !errors.Is(err, ca.ErrIssued) {
		t.Fatalf("Issue = %v, want ErrIssued", err)
	}
}

// A validity beyond the provisioner's maximum: step-ca refuses, and the
// error says it was step-ca.
func TestRemoteRefusal(t *testing.T) {
	s := newStepCA(t, "")
	cfg := remoteConfig(s)
	cfg.Validity = 50 * 365 * 24 * time.Hour
	r, err := ca.NewRemote(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.Issue(context.Background(), csrFor(t, ecKey(t, elliptic.P256()), "device-1", nil), "device-1")
	if !errors.Is(err, ca.ErrRefused) || !strings.Contains(err.Error(), "HTTP 4") {
		t.Fatalf("Issue = %v, want ErrRefused with the HTTP status", err)
	}
}

// Chain before any issue fetches the intermediates; it must match what
// the step-ca signs with.
func TestRemoteChainBeforeIssue(t *testing.T) {
	s := newStepCA(t, "")
	r := newRemote(t, s)
	chain, err := r.Chain(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ca.Fingerprint(chain[len(chain)-1]) != s.Fingerprint {
		t.Fatal("Chain does not end at the pinned root")
	}
	c, err := r.Issue(context.Background(), csrFor(t, ecKey(t, elliptic.P256()), "device-1", nil), "device-1")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Chain[1].Equal(chain[0]) {
		t.Fatal("the issuing intermediate is not the one Chain returned")
	}
}
