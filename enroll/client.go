package enroll

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"zerotouch/internal/regid"
)

// Config configures a Client.
type Config struct {
	ConnectionString ConnectionString
	// CAFile is a PEM bundle trusted for the endpoint besides the
	// system's roots (an emulator, a TLS-inspecting proxy).
	CAFile string
	// Endpoint overrides https://HostName (tests).
	Endpoint string
	// APIVersion overrides APIVersion, for a service that has moved on.
	APIVersion string
	// HTTPClient overrides the client built from CAFile.
	HTTPClient *http.Client
	// TokenLifetime of each SAS token; default one hour.
	TokenLifetime time.Duration
	// Timeout of one attempt; default 30 s.
	Timeout time.Duration
	// Attempts for calls that are safe to repeat (all but bulk) when the
	// answer is transient (429, 5xx, none); default 4. Bulk operations
	// are sent once: the Uploader reconciles them.
	Attempts int
	Logger   *slog.Logger
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.ConnectionString.HostName == "" || len(c.ConnectionString.Key) == 0:
		return fmt.Errorf("%w: no connection string", ErrConnectionString)
	case c.TokenLifetime < 0 || c.Timeout < 0 || c.Attempts < 0:
		return errors.New("enroll config: negative token lifetime, timeout or attempts")
	case c.TokenLifetime != 0 && c.TokenLifetime < time.Minute:
		return errors.New("enroll config: token lifetime under a minute")
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
			return fmt.Errorf("enroll config: endpoint %q is not an https URL", c.Endpoint)
		}
	}
	return nil
}

// Client calls the DPS service API. It is safe for concurrent use.
//
// Its methods' errors: a *ServiceError for an error answer (errors.Is
// with the sentinel of its status: ErrUnauthorized, ErrThrottled, ...);
// ErrUnavailable when no answer came; ErrUntrusted when the server's
// certificate did not verify and ErrNoHost when its name does not
// resolve (Permanent: these and 401, 403 are never sent again); ErrInvalid
// for a request refused before sending; or the context's error.
type Client struct {
	cfg      Config
	endpoint string
	http     *http.Client
	log      *slog.Logger

	mu     sync.Mutex
	token  string
	expiry time.Time

	pacer interface{ Wait(context.Context) error } // set by an Uploader
}

// NewClient returns a client for the service named by cfg's connection
// string. It reads cfg.CAFile now: a missing or empty bundle is an error.
func NewClient(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = time.Hour
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = 4
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = APIVersion
	}
	c := &Client{cfg: cfg, endpoint: strings.TrimSuffix(cfg.Endpoint, "/"), http: cfg.HTTPClient, log: cfg.Logger}
	if c.endpoint == "" {
		c.endpoint = "https://" + cfg.ConnectionString.HostName
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.http == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 32
		if cfg.CAFile != "" {
			pool, err := LoadCAFile(cfg.CAFile)
			if err != nil {
				return nil, err
			}
			t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		c.http = &http.Client{Transport: t}
	}
	return c, nil
}

// LoadCAFile returns the system's roots plus the certificates in the PEM
// file name.
func LoadCAFile(name string) (*x509.CertPool, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", name)
	}
	return pool, nil
}

// HostName is the service's host name.
func (c *Client) HostName() string { return c.cfg.ConnectionString.HostName }

// CreateOrUpdate puts e (PUT /enrollments/{id}) and returns the
// enrollment as the service holds it. ifMatch, when not empty, is the
// etag the enrollment must still have (ErrPrecondition otherwise); such a
// conditional call is sent once, since a second try after a lost answer
// would meet its own new etag.
func (c *Client) CreateOrUpdate(ctx context.Context, e *Enrollment, ifMatch string) (*Enrollment, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if err := c.checkPolicy(e.RegistrationID, e.CredentialPolicyName); err != nil {
		return nil, err
	}
	var out Enrollment
	err := c.do(ctx, &call{method: http.MethodPut, path: "/enrollments/" + url.PathEscape(e.RegistrationID), ifMatch: ifMatch, in: e, out: &out, repeat: ifMatch == ""})
	return &out, err
}

// Get returns an enrollment; ErrNotFound when there is none.
func (c *Client) Get(ctx context.Context, registrationID string) (*Enrollment, error) {
	if err := existingID(regid.Registration, registrationID); err != nil {
		return nil, err
	}
	var out Enrollment
	err := c.do(ctx, &call{method: http.MethodGet, path: "/enrollments/" + url.PathEscape(registrationID), out: &out, repeat: true})
	return &out, err
}

// Delete removes an enrollment; ifMatch as for CreateOrUpdate.
func (c *Client) Delete(ctx context.Context, registrationID, ifMatch string) error {
	if err := existingID(regid.Registration, registrationID); err != nil {
		return err
	}
	return c.do(ctx, &call{method: http.MethodDelete, path: "/enrollments/" + url.PathEscape(registrationID), ifMatch: ifMatch, repeat: ifMatch == ""})
}

// AttestationMechanism returns an enrollment's attestation, keys
// included.
func (c *Client) AttestationMechanism(ctx context.Context, registrationID string) (*Attestation, error) {
	if err := existingID(regid.Registration, registrationID); err != nil {
		return nil, err
	}
	var out Attestation
	err := c.do(ctx, &call{method: http.MethodPost, path: "/enrollments/" + url.PathEscape(registrationID) + "/attestationmechanism", out: &out, repeat: true})
	return &out, err
}

// Bulk runs one bulk operation of 1 to MaxBulk enrollments. Failures of
// single items come back in the result, not as an error. It is sent once:
// an ErrUnavailable answer leaves it unknown whether the service carried
// it out.
func (c *Client) Bulk(ctx context.Context, mode string, es []Enrollment) (*BulkResult, error) {
	switch mode {
	case ModeCreate, ModeUpdate, ModeUpdateIfMatchETag, ModeDelete:
	default:
		return nil, fmt.Errorf("%w: bulk mode %q: want create, update, updateIfMatchETag or delete", ErrInvalid, mode)
	}
	if len(es) == 0 || len(es) > MaxBulk {
		return nil, fmt.Errorf("%w: a bulk operation takes 1 to %d enrollments, not %d", ErrInvalid, MaxBulk, len(es))
	}
	for i := range es {
		if mode == ModeDelete {
			if err := existingID(regid.Registration, es[i].RegistrationID); err != nil {
				return nil, err
			}
		}
	}
	if mode != ModeDelete {
		for i := range es {
			if err := es[i].Validate(); err != nil {
				return nil, err
			}
			if err := c.checkPolicy(es[i].RegistrationID, es[i].CredentialPolicyName); err != nil {
				return nil, err
			}
		}
	}
	var out BulkResult
	err := c.do(ctx, &call{method: http.MethodPost, path: "/enrollments", in: BulkOperation{Mode: mode, Enrollments: es}, out: &out})
	return &out, err
}

// Page is one page of a query's answer. Continuation is empty on the
// last page.
type Page[T any] struct {
	Items        []T
	Continuation string
}

// Query runs one page of an enrollment query ("SELECT * FROM
// enrollments"), starting at continuation (empty for the first page).
// pageSize 0 leaves the size to the service. DPS does not interpret the
// query: it answers every enrollment whatever the query selects or
// filters (a WHERE clause is not applied), and so does the emulator.
func (c *Client) Query(ctx context.Context, query string, pageSize int, continuation string) (*Page[Enrollment], error) {
	return queryPage[Enrollment](ctx, c, "/enrollments/query", query, pageSize, continuation)
}

// Enrollments yields every enrollment, following continuations.
func (c *Client) Enrollments(ctx context.Context, pageSize int) iter.Seq2[*Enrollment, error] {
	return all(ctx, func(cont string) (*Page[Enrollment], error) {
		return c.Query(ctx, "SELECT * FROM enrollments", pageSize, cont)
	})
}

// CreateOrUpdateGroup puts an enrollment group.
func (c *Client) CreateOrUpdateGroup(ctx context.Context, g *EnrollmentGroup, ifMatch string) (*EnrollmentGroup, error) {
	if err := g.Validate(); err != nil {
		return nil, err
	}
	if err := c.checkPolicy(g.EnrollmentGroupID, g.CredentialPolicyName); err != nil {
		return nil, err
	}
	var out EnrollmentGroup
	err := c.do(ctx, &call{method: http.MethodPut, path: "/enrollmentGroups/" + url.PathEscape(g.EnrollmentGroupID), ifMatch: ifMatch, in: g, out: &out, repeat: ifMatch == ""})
	return &out, err
}

// GetGroup returns an enrollment group; ErrNotFound when there is none.
func (c *Client) GetGroup(ctx context.Context, id string) (*EnrollmentGroup, error) {
	if err := existingID(regid.Group, id); err != nil {
		return nil, err
	}
	var out EnrollmentGroup
	err := c.do(ctx, &call{method: http.MethodGet, path: "/enrollmentGroups/" + url.PathEscape(id), out: &out, repeat: true})
	return &out, err
}

// DeleteGroup removes an enrollment group.
func (c *Client) DeleteGroup(ctx context.Context, id, ifMatch string) error {
	if err := existingID(regid.Group, id); err != nil {
		return err
	}
	return c.do(ctx, &call{method: http.MethodDelete, path: "/enrollmentGroups/" + url.PathEscape(id), ifMatch: ifMatch, repeat: ifMatch == ""})
}

// GroupAttestationMechanism returns an enrollment group's attestation,
// keys included (POST /enrollmentGroups/{id}/attestationmechanism): the
// service may leave symmetric keys out of what GetGroup returns.
// ErrNotFound when there is no such group.
func (c *Client) GroupAttestationMechanism(ctx context.Context, id string) (*Attestation, error) {
	if err := existingID(regid.Group, id); err != nil {
		return nil, err
	}
	var out Attestation
	err := c.do(ctx, &call{method: http.MethodPost, path: "/enrollmentGroups/" + url.PathEscape(id) + "/attestationmechanism", out: &out, repeat: true})
	return &out, err
}

// QueryGroups runs one page of an enrollment group query.
func (c *Client) QueryGroups(ctx context.Context, query string, pageSize int, continuation string) (*Page[EnrollmentGroup], error) {
	return queryPage[EnrollmentGroup](ctx, c, "/enrollmentGroups/query", query, pageSize, continuation)
}

// Groups yields every enrollment group, following continuations.
func (c *Client) Groups(ctx context.Context, pageSize int) iter.Seq2[*EnrollmentGroup, error] {
	return all(ctx, func(cont string) (*Page[EnrollmentGroup], error) {
		return c.QueryGroups(ctx, "SELECT * FROM enrollmentGroups", pageSize, cont)
	})
}

// BulkGroups runs one bulk operation of 1 to MaxBulk enrollment groups
// (POST /enrollmentGroups, EnrollmentGroup_RunBulkOperation). Failures of
// single groups come back in the result, not as an error. Like Bulk, it
// is sent once.
func (c *Client) BulkGroups(ctx context.Context, mode string, gs []EnrollmentGroup) (*BulkGroupResult, error) {
	switch mode {
	case ModeCreate, ModeUpdate, ModeUpdateIfMatchETag, ModeDelete:
	default:
		return nil, fmt.Errorf("%w: bulk mode %q: want create, update, updateIfMatchETag or delete", ErrInvalid, mode)
	}
	if len(gs) == 0 || len(gs) > MaxBulk {
		return nil, fmt.Errorf("%w: a bulk operation takes 1 to %d enrollment groups, not %d", ErrInvalid, MaxBulk, len(gs))
	}
	for i := range gs {
		if mode == ModeDelete {
			if err := existingID(regid.Group, gs[i].EnrollmentGroupID); err != nil {
				return nil, err
			}
		}
	}
	if mode != ModeDelete {
		for i := range gs {
			if err := gs[i].Validate(); err != nil {
				return nil, err
			}
			if err := c.checkPolicy(gs[i].EnrollmentGroupID, gs[i].CredentialPolicyName); err != nil {
				return nil, err
			}
		}
	}
	var out BulkGroupResult
	err := c.do(ctx, &call{method: http.MethodPost, path: "/enrollmentGroups", in: BulkGroupOperation{Mode: mode, EnrollmentGroups: gs}, out: &out})
	return &out, err
}

// GetRegistrationState returns the registration state of the device
// registrationID (GET /registrations/{id}, DeviceRegistrationState_Get);
// ErrNotFound when no device registered with that ID.
func (c *Client) GetRegistrationState(ctx context.Context, registrationID string) (*RegistrationState, error) {
	if err := existingID(regid.Registration, registrationID); err != nil {
		return nil, err
	}
	var out RegistrationState
	err := c.do(ctx, &call{method: http.MethodGet, path: "/registrations/" + url.PathEscape(registrationID), out: &out, repeat: true})
	return &out, err
}

// DeleteRegistrationState deletes a device's registration state
// (DELETE /registrations/{id}, DeviceRegistrationState_Delete): the device
// registers from the start next time. ifMatch, when not empty, is the
// etag the state must still have (ErrPrecondition otherwise), as
// GetRegistrationState gave it; ErrNotFound when there is none.
func (c *Client) DeleteRegistrationState(ctx context.Context, registrationID, ifMatch string) error {
	if err := existingID(regid.Registration, registrationID); err != nil {
		return err
	}
	return c.do(ctx, &call{method: http.MethodDelete, path: "/registrations/" + url.PathEscape(registrationID), ifMatch: ifMatch, repeat: ifMatch == ""})
}

// QueryRegistrationStates runs one page of the registration states of
// the devices that registered through enrollment group groupID
// (POST /registrations/{id}/query, DeviceRegistrationState_Query),
// starting at continuation (empty for the first page).
func (c *Client) QueryRegistrationStates(ctx context.Context, groupID string, pageSize int, continuation string) (*Page[RegistrationState], error) {
	if err := existingID(regid.Group, groupID); err != nil {
		return nil, err
	}
	return queryPage[RegistrationState](ctx, c, "/registrations/"+url.PathEscape(groupID)+"/query", "*", pageSize, continuation)
}

// RegistrationStates yields the registration state of every device that
// registered through enrollment group groupID, following continuations.
func (c *Client) RegistrationStates(ctx context.Context, groupID string, pageSize int) iter.Seq2[*RegistrationState, error] {
	return all(ctx, func(cont string) (*Page[RegistrationState], error) {
		return c.QueryRegistrationStates(ctx, groupID, pageSize, cont)
	})
}

// APIVersion is the service API version the client sends.
func (c *Client) APIVersion() string { return c.cfg.APIVersion }

// checkPolicy refuses a credential policy the client's API version
// cannot carry: the service would drop it without a word.
func (c *Client) checkPolicy(id, policy string) error {
	if policy != "" && !SupportsCredentialPolicy(c.cfg.APIVersion) {
		return fmt.Errorf("%w: %s: credentialPolicyName needs api-version %s or later; the client sends %s", ErrInvalid, id, APIVersion2026, c.cfg.APIVersion)
	}
	return nil
}

func queryPage[T any](ctx context.Context, c *Client, path, query string, pageSize int, continuation string) (*Page[T], error) {
	if pageSize < 0 {
		return nil, fmt.Errorf("%w: page size %d", ErrInvalid, pageSize)
	}
	h := http.Header{}
	if pageSize > 0 {
		h.Set("x-ms-max-item-count", strconv.Itoa(pageSize))
	}
	if continuation != "" {
		h.Set("x-ms-continuation", continuation)
	}
	p := &Page[T]{}
	cl := &call{method: http.MethodPost, path: path, header: h, in: QuerySpecification{Query: query}, out: &p.Items, repeat: true}
	if err := c.do(ctx, cl); err != nil {
		return nil, err
	}
	p.Continuation = cl.respHeader.Get("x-ms-continuation")
	return p, nil
}

func all[T any](ctx context.Context, page func(cont string) (*Page[T], error)) iter.Seq2[*T, error] {
	return func(yield func(*T, error) bool) {
		cont := ""
		for {
			p, err := page(cont)
			if err != nil {
				yield(nil, err)
				return
			}
			for i := range p.Items {
				if !yield(&p.Items[i], nil) {
					return
				}
			}
			if p.Continuation == "" {
				return
			}
			if p.Continuation == cont {
				yield(nil, fmt.Errorf("query: the service repeated continuation %q", cont))
				return
			}
			cont = p.Continuation
		}
	}
}

// call is one service API request.
type call struct {
	method, path, ifMatch string
	header                http.Header // extra request headers
	in, out               any         // JSON bodies; nil for none
	repeat                bool        // safe to send again on a transient answer
	respHeader            http.Header // set from the answer
}

// do sends cl, repeating it on transient answers when it is safe to,
// after the service's Retry-After or a jittered exponential backoff.
func (c *Client) do(ctx context.Context, cl *call) error {
	op := cl.method + " " + cl.path
	var body []byte
	if cl.in != nil {
		b, err := json.Marshal(cl.in)
		if err != nil {
			return fmt.Errorf("%s: encode: %w", op, err)
		}
		body = b
		if len(body) > MaxMessage {
			return fmt.Errorf("%s: %w: the request is %d bytes; DPS takes at most %d", op, ErrInvalid, len(body), MaxMessage)
		}
	}
	attempts := 1
	if cl.repeat {
		attempts = c.cfg.Attempts
	}
	for n := 1; ; n++ {
		err := c.once(ctx, op, cl, body)
		if err == nil || n >= attempts || !Transient(err) || ctx.Err() != nil {
			return err
		}
		wait := Backoff(n)
		var se *ServiceError
		if errors.As(err, &se) && se.RetryAfter > 0 {
			wait = se.RetryAfter
		}
		c.log.Debug("dps: retrying", "op", op, "attempt", n, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (after %v)", op, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Backoff is the wait before attempt n+1 when the service gave no
// Retry-After: 250 ms doubling to at most 30 s, with full jitter over the
// upper half.
func Backoff(n int) time.Duration {
	d := 250 * time.Millisecond << min(n-1, 7)
	d = min(d, 30*time.Second)
	return d/2 + rand.N(d/2+1)
}

func (c *Client) once(parent context.Context, op string, cl *call, body []byte) error {
	if c.pacer != nil {
		if err := c.pacer.Wait(parent); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	ctx, cancel := context.WithTimeout(parent, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, c.endpoint+cl.path+"?api-version="+url.QueryEscape(c.cfg.APIVersion), rd)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	for k, v := range cl.header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", c.sasToken())
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	if cl.ifMatch != "" {
		req.Header.Set("If-Match", cl.ifMatch)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if parent.Err() != nil {
			return fmt.Errorf("%s: %w", op, parent.Err())
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w: no answer in %v", op, ErrUnavailable, c.cfg.Timeout)
		}
		if why := transportError(err); why != ErrUnavailable {
			return fmt.Errorf("%s: %w: %w", op, why, err)
		}
		return fmt.Errorf("%s: %w: %v", op, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	cl.respHeader = resp.Header
	if resp.StatusCode >= 300 {
		return decodeError(op, resp)
	}
	if cl.out == nil || resp.StatusCode == http.StatusNoContent {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(cl.out); err != nil {
		if parent.Err() != nil {
			return fmt.Errorf("%s: %w", op, parent.Err())
		}
		return fmt.Errorf("%s: %w: answer is not the JSON expected: %v", op, ErrUnavailable, err)
	}
	return nil
}

// sasToken returns a token valid for at least five more minutes.
func (c *Client) sasToken() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.token == "" || now.Add(5*time.Minute).After(c.expiry) {
		c.expiry = now.Add(c.cfg.TokenLifetime)
		cs := c.cfg.ConnectionString
		c.token = SASToken(cs.HostName, cs.KeyName, cs.Key, c.expiry)
	}
	return c.token
}

func decodeError(op string, resp *http.Response) error {
	e := &ServiceError{Op: op, Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var body ErrorBody
	if json.Unmarshal(b, &body) == nil && (body.ErrorCode != 0 || body.Message != "") {
		e.Code, e.TrackingID, e.Message = body.ErrorCode, body.TrackingID, body.Message
	} else {
		e.Message = strings.TrimSpace(string(b))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "..."
		}
	}
	if e.Code == 0 {
		e.Code, _ = strconv.Atoi(resp.Header.Get("x-ms-error-code"))
	}
	return e
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}
