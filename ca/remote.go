package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/smallstep/certificates/api"
	stepca "github.com/smallstep/certificates/ca"
	"github.com/smallstep/certificates/errs"
	"go.step.sm/crypto/jose"
	"go.step.sm/crypto/pemutil"
)

var (
	// ErrUntrusted means the step-ca's root is not the pinned one.
	ErrUntrusted = errors.New("step-ca root does not match the pinned fingerprint")
	// ErrUnavailable means the step-ca could not be reached.
	ErrUnavailable = errors.New("step-ca unreachable")
	// ErrNoProvisioner means the step-ca has no JWK provisioner by the
	// configured name.
	ErrNoProvisioner = errors.New("no JWK provisioner")
	// ErrRefused means the step-ca answered with an error.
	ErrRefused = errors.New("step-ca refused the request")
)

// RemoteConfig names a step-ca and the JWK provisioner to sign with.
type RemoteConfig struct {
	URL         string        // https://ca.example:9000
	Fingerprint string        // SHA-256 of the root certificate, hex
	Provisioner string        // name of a JWK provisioner
	Password    []byte        // decrypts the provisioner's key
	Validity    time.Duration // asked for; 0 leaves it to the provisioner
	Policy      Policy        // checked here before a CSR is sent
	Timeout     time.Duration // per request; default 30 s
	Logger      *slog.Logger
}

// Validate reports what is missing or malformed, naming the field.
func (c RemoteConfig) Validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("step-ca: url is empty")
	case err != nil || u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("step-ca: url %q: want https://host:port", c.URL)
	}
	fp := strings.ToLower(strings.ReplaceAll(c.Fingerprint, ":", ""))
	if b, err := hex.DecodeString(fp); err != nil || len(b) != 32 {
		return fmt.Errorf("step-ca: root fingerprint %q: want the 64 hex digits of a SHA-256", c.Fingerprint)
	}
	if c.Provisioner == "" {
		return errors.New("step-ca: provisioner name is empty")
	}
	if len(c.Password) == 0 {
		return fmt.Errorf("step-ca: %w: the provisioner's password is not given", ErrPassword)
	}
	return c.Policy.Validate()
}

// Remote issues through a step-ca's API.
type Remote struct {
	cfg    RemoteConfig
	root   *x509.Certificate
	prov   *stepca.Provisioner
	client *http.Client // trusts only the pinned root

	mu    sync.Mutex
	chain []*x509.Certificate // intermediates, learned from the server
}

// NewRemote connects to the step-ca: it fetches the root and checks it
// against the pinned fingerprint, then loads and decrypts the JWK
// provisioner's key.
func NewRemote(ctx context.Context, cfg RemoteConfig) (*Remote, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	cfg.URL = strings.TrimSuffix(cfg.URL, "/")
	cfg.Fingerprint = strings.ToLower(strings.ReplaceAll(cfg.Fingerprint, ":", ""))
	root, err := fetchRoot(ctx, cfg.URL, cfg.Fingerprint, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	bundle := EncodePEM(root)
	opts := []stepca.ClientOption{stepca.WithCABundle(bundle), stepca.WithTimeout(cfg.Timeout)}
	if err := checkProvisioner(ctx, cfg, opts); err != nil {
		return nil, err
	}
	prov, err := stepca.NewProvisioner(cfg.Provisioner, "", cfg.URL, cfg.Password, opts...)
	if err != nil {
		return nil, fmt.Errorf("step-ca %s: provisioner %q: %w", cfg.URL, cfg.Provisioner, remoteErr(err))
	}
	return &Remote{cfg: cfg, root: root, prov: prov, client: pinnedClient(root, cfg.Timeout)}, nil
}

// checkProvisioner finds the JWK provisioner by name and tries the
// password on its key, to tell a wrong name from a wrong password.
func checkProvisioner(ctx context.Context, cfg RemoteConfig, opts []stepca.ClientOption) error {
	client, err := stepca.NewClient(cfg.URL, opts...)
	if err != nil {
		return fmt.Errorf("step-ca %s: %w", cfg.URL, err)
	}
	found := false
	for cursor := ""; ; {
		resp, err := client.ProvisionersWithContext(ctx, stepca.WithProvisionerCursor(cursor), stepca.WithProvisionerLimit(100))
		if err != nil {
			return fmt.Errorf("step-ca %s: list provisioners: %w", cfg.URL, remoteErr(err))
		}
		for _, p := range resp.Provisioners {
			_, enc, ok := p.GetEncryptedKey()
			if p.GetName() != cfg.Provisioner || !ok {
				continue
			}
			found = true
			jwe, err := jose.ParseEncrypted(enc)
			if err != nil {
				continue
			}
			if _, err := jwe.Decrypt(cfg.Password); err == nil {
				return nil
			}
		}
		if cursor = resp.NextCursor; cursor == "" {
			break
		}
	}
	if found {
		return fmt.Errorf("step-ca %s: provisioner %q: %w: it does not decrypt the provisioner's key", cfg.URL, cfg.Provisioner, ErrPassword)
	}
	return fmt.Errorf("step-ca %s: %w named %q", cfg.URL, ErrNoProvisioner, cfg.Provisioner)
}

// fetchRoot gets the root whose SHA-256 is fingerprint. The connection
// cannot be trusted yet, so the certificate is trusted only if its hash is
// the pinned one.
func fetchRoot(ctx context.Context, base, fingerprint string, timeout time.Duration) (*x509.Certificate, error) {
	insecure := &http.Client{Timeout: timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12},
	}}
	defer insecure.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/root/"+fingerprint, nil)
	if err != nil {
		return nil, err
	}
	resp, err := insecure.Do(req)
	if err != nil {
		return nil, fmt.Errorf("step-ca %s: %w: %w", base, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("step-ca %s: %w: it has no root %s", base, ErrUntrusted, fingerprint)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("step-ca %s: get root: %w: HTTP %d", base, ErrRefused, resp.StatusCode)
	}
	var body struct {
		CA string `json:"ca"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return nil, fmt.Errorf("step-ca %s: get root: %w", base, err)
	}
	root, err := pemutil.ParseCertificate([]byte(body.CA))
	if err != nil {
		return nil, fmt.Errorf("step-ca %s: get root: %w", base, err)
	}
	if got := Fingerprint(root); got != fingerprint {
		return nil, fmt.Errorf("step-ca %s: %w: it sent %s, pinned %s", base, ErrUntrusted, got, fingerprint)
	}
	return root, nil
}

// Issue implements Issuer: policy, a one-time token for the registration
// ID, a sign request, and the checks on what comes back.
func (r *Remote) Issue(ctx context.Context, csr *x509.CertificateRequest, registrationID string) (*Certificate, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.cfg.Policy.Check(csr, registrationID); err != nil {
		return nil, err
	}
	tok, err := r.prov.Token(registrationID)
	if err != nil {
		return nil, fmt.Errorf("step-ca token for %q: %w", registrationID, err)
	}
	req := &api.SignRequest{CsrPEM: api.NewCertificateRequest(csr), OTT: tok}
	if r.cfg.Validity != 0 {
		req.NotAfter = api.NewTimeDuration(time.Now().Add(r.cfg.Validity))
	}
	resp, err := r.prov.SignWithContext(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("step-ca sign for %q: %w", registrationID, remoteErr(err))
	}
	var chain []*x509.Certificate
	for _, c := range resp.CertChainPEM {
		if c.Certificate != nil {
			chain = append(chain, c.Certificate)
		}
	}
	if len(chain) == 0 && resp.ServerPEM.Certificate != nil {
		chain = append(chain, resp.ServerPEM.Certificate)
		if resp.CaPEM.Certificate != nil {
			chain = append(chain, resp.CaPEM.Certificate)
		}
	}
	c, err := accept(chain, r.root, csr, registrationID, false)
	if err != nil {
		return nil, fmt.Errorf("step-ca %s: %w", r.cfg.URL, err)
	}
	r.mu.Lock()
	r.chain = chain[1:]
	r.mu.Unlock()
	return c, nil
}

// Chain implements Issuer. The intermediates come from the step-ca's
// /intermediates.pem over a connection that trusts only the pinned root.
func (r *Remote) Chain(ctx context.Context) ([]*x509.Certificate, error) {
	r.mu.Lock()
	chain := r.chain
	r.mu.Unlock()
	if chain == nil {
		var err error
		if chain, err = fetchIntermediates(ctx, r.client, r.cfg.URL, r.root); err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.chain = chain
		r.mu.Unlock()
	}
	return append(append([]*x509.Certificate{}, chain...), r.root), nil
}

// FetchChain returns a step-ca's intermediates and its root, the root
// checked against the pinned fingerprint: what `ca show` prints, with no
// provisioner needed.
func FetchChain(ctx context.Context, url, fingerprint string) ([]*x509.Certificate, error) {
	cfg := RemoteConfig{URL: url, Fingerprint: fingerprint, Provisioner: "-", Password: []byte("-")}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	url = strings.TrimSuffix(url, "/")
	root, err := fetchRoot(ctx, url, strings.ToLower(strings.ReplaceAll(fingerprint, ":", "")), 30*time.Second)
	if err != nil {
		return nil, err
	}
	client := pinnedClient(root, 30*time.Second)
	defer client.CloseIdleConnections()
	chain, err := fetchIntermediates(ctx, client, url, root)
	if err != nil {
		return nil, err
	}
	return append(chain, root), nil
}

func pinnedClient(root *x509.Certificate, timeout time.Duration) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
}

func fetchIntermediates(ctx context.Context, client *http.Client, base string, root *x509.Certificate) ([]*x509.Certificate, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/intermediates.pem", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("step-ca %s: %w: %w", base, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("step-ca %s: intermediates: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("step-ca %s: intermediates: %w: HTTP %d", base, ErrRefused, resp.StatusCode)
	}
	chain, err := pemutil.ParseCertificateBundle(b)
	if err != nil {
		return nil, fmt.Errorf("step-ca %s: intermediates: %w", base, err)
	}
	if err := checkCAChain(chain, root); err != nil {
		return nil, fmt.Errorf("step-ca %s: %w", base, err)
	}
	return chain, nil
}

// Close drops idle connections.
func (r *Remote) Close() error {
	r.client.CloseIdleConnections()
	return nil
}

// remoteErr translates the step-ca client's errors into ErrRefused (the
// server answered) or ErrUnavailable (it did not).
func remoteErr(err error) error {
	var e *errs.Error
	if errors.As(err, &e) {
		msg := e.Msg
		if msg == "" && e.Err != nil {
			msg = e.Err.Error()
		}
		if e.RequestID != "" {
			msg += " (request " + e.RequestID + ")"
		}
		return fmt.Errorf("%w: HTTP %d: %s", ErrRefused, e.StatusCode(), msg)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
