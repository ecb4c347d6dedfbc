// Package stepca runs smallstep's step-ca (its authority and CA server)
// inside the process, on a loopback port, with one JWK provisioner: the
// factory CA that the ca package's remote issuer talks to, for tests and
// benchmarks.
package stepca

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/smallstep/certificates/authority/config"
	"github.com/smallstep/certificates/authority/provisioner"
	stepca "github.com/smallstep/certificates/ca"
	"go.step.sm/crypto/jose"

	"zerotouch/ca"
)

// Options configures the server. Zero values get defaults.
type Options struct {
	Dir         string        // where certificates and keys are written; required
	Provisioner string        // JWK provisioner name; default "zerotouch"
	Password    []byte        // provisioner password; default random
	Template    string        // x509util template of the provisioner; default step-ca's
	MaxValidity time.Duration // longest certificate; default 10 years + 1 day
}

// Server is a running step-ca.
type Server struct {
	URL         string // https://127.0.0.1:PORT
	Fingerprint string // root SHA-256, hex
	Provisioner string
	Password    []byte
	Root        *x509.Certificate

	ca   *stepca.CA
	done chan error
}

// Start writes a root, an intermediate (key encrypted) and a provisioner
// and starts step-ca on a free loopback port. It returns once the server
// answers /health.
func Start(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("stepca: Dir is required")
	}
	if opts.Provisioner == "" {
		opts.Provisioner = "zerotouch"
	}
	if opts.Password == nil {
		opts.Password = []byte(rand.Text())
	}
	if opts.MaxValidity == 0 {
		opts.MaxValidity = 10*365*24*time.Hour + 24*time.Hour
	}
	// The root and intermediate are a local CA's, made by the ca package;
	// step-ca reads its files, the intermediate key encrypted.
	keyPassword := []byte(rand.Text())
	caDir := filepath.Join(opts.Dir, "ca")
	l, err := ca.Init(context.Background(), caDir, ca.InitOptions{Name: "zerotouch test", Password: keyPassword})
	if err != nil {
		return nil, fmt.Errorf("stepca: %w", err)
	}
	chain, _ := l.Chain(context.Background())
	l.Close()
	root := chain[len(chain)-1]
	rootPath := filepath.Join(caDir, ca.RootFile)
	interPath := filepath.Join(caDir, ca.IntermediateFile)
	keyPath := filepath.Join(caDir, "intermediate.key")
	prov, err := jwkProvisioner(opts)
	if err != nil {
		return nil, err
	}
	s := &Server{Fingerprint: ca.Fingerprint(root), Provisioner: opts.Provisioner, Password: opts.Password, Root: root}

	// The server picks its own listener from the address, so find a free
	// port and try again if another process takes it first.
	for attempt := 0; ; attempt++ {
		addr, err := freePort()
		if err != nil {
			return nil, err
		}
		cfg := &config.Config{
			Root:             []string{rootPath},
			IntermediateCert: interPath,
			IntermediateKey:  keyPath,
			Address:          addr,
			DNSNames:         []string{"127.0.0.1", "localhost"},
			AuthorityConfig:  &config.AuthConfig{Provisioners: provisioner.List{prov}},
		}
		ca, err := stepca.New(cfg, stepca.WithPassword(keyPassword), stepca.WithQuiet(true))
		if err != nil {
			return nil, fmt.Errorf("stepca: %w", err)
		}
		s.ca, s.done, s.URL = ca, make(chan error, 1), "https://"+addr
		go func() { s.done <- ca.Run() }()
		err = s.waitHealthy(10 * time.Second)
		if err == nil {
			return s, nil
		}
		s.Close()
		if attempt == 2 {
			return nil, err
		}
	}
}

func (s *Server) waitHealthy(limit time.Duration) error {
	pool := x509.NewCertPool()
	pool.AddCert(s.Root)
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for {
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("stepca: server stopped: %w", err)
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/health", nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stepca: %s did not answer /health", s.URL)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Close stops the server.
func (s *Server) Close() error {
	err := s.ca.Stop()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
	return err
}

func jwkProvisioner(opts Options) (*provisioner.JWK, error) {
	jwk, err := jose.GenerateJWK("EC", "P-256", "ES256", "sig", "", 0)
	if err != nil {
		return nil, err
	}
	enc, err := jose.EncryptJWK(jwk, opts.Password)
	if err != nil {
		return nil, err
	}
	encrypted, err := enc.CompactSerialize()
	if err != nil {
		return nil, err
	}
	pub := jwk.Public()
	p := &provisioner.JWK{
		Type:         "JWK",
		Name:         opts.Provisioner,
		Key:          &pub,
		EncryptedKey: encrypted,
		Claims: &provisioner.Claims{
			MaxTLSDur:     &provisioner.Duration{Duration: opts.MaxValidity},
			DefaultTLSDur: &provisioner.Duration{Duration: 24 * time.Hour},
		},
	}
	if opts.Template != "" {
		p.Options = &provisioner.Options{X509: &provisioner.X509Options{Template: opts.Template}}
	}
	return p, nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
