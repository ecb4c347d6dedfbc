package device

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"zerotouch/enroll"
	"zerotouch/internal/pause"
	"zerotouch/internal/regid"
)

// APIVersion is the device API version Register and Lookup send by
// default: the newest stable one. It adds the csr and
// issuedCertificateChain of certificate issuance to 2021-10-01, and
// changes nothing else a registration sends or reads.
const APIVersion = "2026-04-01"

// APIVersionNoCSR is the newest device API version without certificate
// issuance: DPS refuses a csr under it (400).
const APIVersionNoCSR = "2021-10-01"

// DefaultGlobalEndpoint is DPS's global device endpoint.
const DefaultGlobalEndpoint = "https://global.azure-devices-provisioning.net"

// Defaults for Config.
const (
	DefaultMinWait       = time.Second     // the C SDK's PROV_GET_THROTTLE_TIME
	DefaultMaxWait       = 5 * time.Minute // the C SDK's MAX_PROV_GET_THROTTLE_TIME
	DefaultTimeout       = 30 * time.Second
	DefaultAttempts      = 10
	DefaultTokenLifetime = time.Hour
)

// TPM is a device's TPM as registration uses it. EndorsementKey and
// StorageRootKey return the marshalled TPM2B_PUBLIC of the EK
// (0x81010001) and the SRK (0x81000001), with their 2-byte size.
// ImportIdentityKey imports a DPS activation blob (the challenge, then
// the device key) so that IdentityHMAC then computes HMAC-SHA256 with
// the key inside it. package tpm's Device does the TPM side.
type TPM interface {
	EndorsementKey() []byte
	StorageRootKey() []byte
	ImportIdentityKey(ctx context.Context, blob []byte) error
	IdentityHMAC(ctx context.Context, data []byte) ([]byte, error)
}

// Config says which device registers where, and how. Exactly one of
// SymmetricKey, X509 and TPM is set.
type Config struct {
	// GlobalEndpoint is the https URL of the device API; default
	// DefaultGlobalEndpoint.
	GlobalEndpoint string
	IDScope        string // the DPS instance's ID scope, e.g. 0ne0001A2B3
	// RegistrationID is the device's; for X.509 it defaults to the
	// certificate's CN, for a TPM to the ID derived from its EK.
	RegistrationID string

	SymmetricKey []byte           // the device's key, base64-decoded (for a group: DeriveKey)
	X509         *tls.Certificate // the device's certificate chain (leaf first) and key
	TPM          TPM

	// TLS is the client's TLS configuration (root CAs to trust, ...);
	// it is cloned and X509 added to it. Nil means the system's roots.
	TLS *tls.Config
	// HTTPClient, when set, is used as it is instead of one built from
	// TLS: for X.509 it must present the device's certificate itself.
	// Register may then be called concurrently on it.
	HTTPClient *http.Client

	Payload    json.RawMessage // sent in the register request for custom allocation; optional
	APIVersion string          // default APIVersion

	// CSR, when set, is a certificate signing request (DER PKCS#10, CN =
	// the registration ID, signed with the key the device keeps) sent
	// in the register request: DPS issues the device's operational
	// certificate under the credential policy of its enrollment (or
	// group) and returns the chain, which Register checks
	// (VerifyIssuedChain) and returns in Result.IssuedCertificateChain.
	// It needs an api-version with certificate issuance
	// (enroll.SupportsCredentialPolicy: APIVersion, 2026-04-01, or
	// 2025-07-01-preview; Validate refuses it under an older one) and an
	// enrollment that names a credentialPolicyName (DPS refuses it
	// otherwise, 400). Lookup never sends it.
	CSR []byte
	// IssuerRoots, when set, are the roots an issued chain must verify
	// to (the credential policy's root, pinned); nil accepts the root
	// the chain ends in.
	IssuerRoots *x509.CertPool

	TokenLifetime time.Duration // of the SAS tokens; default one hour
	Timeout       time.Duration // of one request; default 30 s
	// Attempts is how many times in a row a request may fail with 5xx
	// or no answer before Register gives up; default 10. 429 answers are
	// waited out as long as ctx allows.
	Attempts int
	// MinWait and MaxWait clamp every wait the service asks for
	// (Retry-After of a 202 or a 429); default 1 s and 5 min as the C
	// SDK. Waits Register picks itself (backoff after a 5xx or a lost
	// answer) are at most MaxWait too.
	MinWait, MaxWait time.Duration

	Logger *slog.Logger // default: discard
}

// Validate checks the configuration. Errors wrap ErrConfig.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	n := 0
	for _, set := range []bool{len(c.SymmetricKey) > 0, c.X509 != nil, c.TPM != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return bad("set exactly one of SymmetricKey, X509 and TPM (%d are set)", n)
	}
	if c.IDScope == "" {
		return bad("IDScope is required")
	}
	if strings.ContainsAny(c.IDScope, "/?#% ") {
		return bad("IDScope %q is not an ID scope", c.IDScope)
	}
	if c.GlobalEndpoint != "" {
		u, err := url.Parse(c.GlobalEndpoint)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" {
			return bad("GlobalEndpoint %q is not an https URL", c.GlobalEndpoint)
		}
	}
	if c.X509 != nil && len(c.X509.Certificate) == 0 {
		return bad("X509 holds no certificate")
	}
	if c.RegistrationID != "" {
		limit := regid.MaxLen
		if c.X509 != nil {
			limit = regid.MaxLenX509
		}
		if err := regid.Check(c.RegistrationID, limit); err != nil {
			return bad("%v", err)
		}
	}
	switch {
	case c.TokenLifetime < 0 || c.Timeout < 0 || c.Attempts < 0 || c.MinWait < 0 || c.MaxWait < 0:
		return bad("negative TokenLifetime, Timeout, Attempts, MinWait or MaxWait")
	case c.TokenLifetime != 0 && c.TokenLifetime < time.Minute:
		return bad("TokenLifetime %v is under a minute", c.TokenLifetime)
	case c.MinWait != 0 && c.MaxWait != 0 && c.MinWait > c.MaxWait:
		return bad("MinWait %v is over MaxWait %v", c.MinWait, c.MaxWait)
	}
	if len(c.Payload) > 0 && !json.Valid(c.Payload) {
		return bad("Payload is not JSON")
	}
	if len(c.CSR) > 0 {
		if c.APIVersion != "" && !enroll.SupportsCredentialPolicy(c.APIVersion) {
			return bad("CSR needs an api-version with certificate issuance (%s or later); APIVersion is %s", APIVersion, c.APIVersion)
		}
		csr, err := x509.ParseCertificateRequest(c.CSR)
		if err != nil {
			return bad("CSR is not a DER PKCS#10 request: %v", err)
		}
		if err := csr.CheckSignature(); err != nil {
			return bad("CSR's signature does not verify: %v", err)
		}
		if c.RegistrationID != "" && !strings.EqualFold(csr.Subject.CommonName, c.RegistrationID) {
			return bad("CSR's CN %q is not the registration ID %q", csr.Subject.CommonName, c.RegistrationID)
		}
	}
	return nil
}

// Result is the outcome of a registration (DeviceRegistrationResult,
// device.json), whole.
type Result struct {
	RegistrationID string
	OperationID    string // empty from Lookup
	Status         string // assigned, or disabled, failed, unassigned (assigning from Lookup)
	Substatus      string // initialAssignment, reprovisionedToInitialAssignment, deviceDataMigrated, deviceDataReset
	AssignedHub    string // the IoT hub's host name
	DeviceID       string
	ErrorCode      int
	ErrorMessage   string
	ETag           string
	CreatedAt      time.Time
	LastUpdatedAt  time.Time
	Payload        json.RawMessage // from a custom allocation, if any

	// The attestation's part; at most one is set.
	TPM          *TPMResult
	X509         *X509Result
	SymmetricKey *SymmetricKeyResult

	// IssuedCertificateChain is the operational certificate DPS issued
	// for Config.CSR, checked by VerifyIssuedChain: the device
	// certificate, the intermediates, the root. DPS returns it in the
	// registration's outcome only, never from Lookup.
	IssuedCertificateChain []*x509.Certificate
}

// TPMResult is a TPM registration's part of the result.
type TPMResult struct {
	// AuthenticationKey is the activation blob of the device's key,
	// which Register has imported into the TPM.
	AuthenticationKey []byte
}

// X509Result is an X.509 registration's part of the result: the
// device's certificate as DPS saw it, and for a group, the group and the
// signing certificate the chain verified to.
type X509Result struct {
	CertificateInfo        *enroll.X509Info
	EnrollmentGroupID      string
	SigningCertificateInfo *enroll.X509Info
}

// SymmetricKeyResult is a symmetric-key registration's part: the group
// whose key the device's is derived from, for a group.
type SymmetricKeyResult struct {
	EnrollmentGroupID string
}

// Log attribute keys.
const (
	keyRegistrationID = "registration_id"
	keyStep           = "step"
	keyAttempt        = "attempt"
	keyWait           = "wait"
	keyErr            = "err"
	keyHub            = "hub"
	keyDeviceID       = "device_id"
)

// Register registers the device cfg describes and waits for DPS to
// assign it (dps-notes 4.1, 4.4). It returns the Result when the device
// is assigned. When the registration ends otherwise, the Result comes
// with an error: ErrDisabled for a disabled enrollment, ErrFailed when
// DPS could not assign the device. Other errors: ErrConfig (nothing
// sent), an *Error matching ErrUnauthorized, ErrNotFound or ErrBadRequest
// (or ErrServer once Config.Attempts are spent), ErrUnavailable (no
// answer, Attempts times in a row), ErrProtocol, ErrTPM, or ctx's error,
// each wrapped with the step that failed; 429 answers are waited out for
// as long as ctx allows. Register may be called concurrently, for
// different devices or not.
func Register(ctx context.Context, cfg Config) (*Result, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.register(ctx)
}

// client is one registration under way.
type client struct {
	cfg    Config
	regID  string
	http   *http.Client
	ownTr  *http.Transport // closed at the end, when made here
	base   string          // https://host/{idScope}/registrations/{regID}
	log    *slog.Logger
	auth   string                   // the SAS token
	expiry time.Time                // its expiry
	csr    *x509.CertificateRequest // Config.CSR, parsed
}

func newClient(cfg Config) (*client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.GlobalEndpoint == "" {
		cfg.GlobalEndpoint = DefaultGlobalEndpoint
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = APIVersion
	}
	if cfg.TokenLifetime == 0 {
		cfg.TokenLifetime = DefaultTokenLifetime
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Attempts == 0 {
		cfg.Attempts = DefaultAttempts
	}
	if cfg.MinWait == 0 {
		cfg.MinWait = DefaultMinWait
		if cfg.MaxWait != 0 {
			cfg.MinWait = min(cfg.MinWait, cfg.MaxWait)
		}
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = max(DefaultMaxWait, cfg.MinWait)
	}
	c := &client{cfg: cfg, regID: cfg.RegistrationID, http: cfg.HTTPClient, log: cfg.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.regID == "" {
		switch {
		case cfg.X509 != nil:
			leaf := cfg.X509.Leaf
			if leaf == nil {
				l, err := x509.ParseCertificate(cfg.X509.Certificate[0])
				if err != nil {
					return nil, fmt.Errorf("%w: X509's certificate: %v", ErrConfig, err)
				}
				leaf = l
			}
			c.regID = leaf.Subject.CommonName
		case cfg.TPM != nil:
			c.regID = regid.FromEK(cfg.TPM.EndorsementKey())
		}
		limit := regid.MaxLen
		if cfg.X509 != nil {
			limit = regid.MaxLenX509
		}
		if err := regid.Check(c.regID, limit); err != nil {
			return nil, fmt.Errorf("%w: registration ID: %v", ErrConfig, err)
		}
	}
	if len(cfg.CSR) > 0 {
		csr, _ := x509.ParseCertificateRequest(cfg.CSR) // Validate parsed it
		if !strings.EqualFold(csr.Subject.CommonName, c.regID) {
			return nil, fmt.Errorf("%w: CSR's CN %q is not the registration ID %q", ErrConfig, csr.Subject.CommonName, c.regID)
		}
		c.csr = csr
	}
	if c.http == nil {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.TLS != nil {
			tc = cfg.TLS.Clone()
		}
		if cfg.X509 != nil {
			tc.Certificates = []tls.Certificate{*cfg.X509}
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		c.ownTr = tr
		c.http = &http.Client{Transport: tr}
	}
	c.base = strings.TrimSuffix(cfg.GlobalEndpoint, "/") + "/" + url.PathEscape(cfg.IDScope) + "/registrations/" + url.PathEscape(c.regID)
	c.log = c.log.With(slog.String(keyRegistrationID, c.regID))
	return c, nil
}

func (c *client) close() {
	if c.ownTr != nil {
		c.ownTr.CloseIdleConnections()
	}
}

// deviceRegistration is the body of the register request and of the
// status lookup (DeviceRegistration).
type deviceRegistration struct {
	RegistrationID string          `json:"registrationId"`
	TPM            *tpmKeys        `json:"tpm,omitempty"`
	CSR            []byte          `json:"csr,omitempty"` // base64 DER, as JSON encodes []byte
	Payload        json.RawMessage `json:"payload,omitempty"`
}

type tpmKeys struct {
	EndorsementKey string `json:"endorsementKey"`
	StorageRootKey string `json:"storageRootKey"`
}

// operationStatus is RegistrationOperationStatus.
type operationStatus struct {
	OperationID       string              `json:"operationId"`
	Status            string              `json:"status"`
	RegistrationState *registrationResult `json:"registrationState"`
}

// registrationResult is DeviceRegistrationResult.
type registrationResult struct {
	RegistrationID         string          `json:"registrationId"`
	CreatedDateTimeUTC     time.Time       `json:"createdDateTimeUtc"`
	AssignedHub            string          `json:"assignedHub"`
	DeviceID               string          `json:"deviceId"`
	Status                 string          `json:"status"`
	Substatus              string          `json:"substatus"`
	ErrorCode              int             `json:"errorCode"`
	ErrorMessage           string          `json:"errorMessage"`
	LastUpdatedDateTimeUTC time.Time       `json:"lastUpdatedDateTimeUtc"`
	ETag                   string          `json:"etag"`
	Payload                json.RawMessage `json:"payload"`
	TPM                    *struct {
		AuthenticationKey string `json:"authenticationKey"`
	} `json:"tpm"`
	X509 *struct {
		CertificateInfo        *enroll.X509Info `json:"certificateInfo"`
		EnrollmentGroupID      string           `json:"enrollmentGroupId"`
		SigningCertificateInfo *enroll.X509Info `json:"signingCertificateInfo"`
	} `json:"x509"`
	SymmetricKey *struct {
		EnrollmentGroupID string `json:"enrollmentGroupId"`
	} `json:"symmetricKey"`
	IssuedCertificateChain [][]byte `json:"issuedCertificateChain"` // base64 DER
}

// fill copies the registration result into res.
func (rs *registrationResult) fill(res *Result) error {
	if rs.RegistrationID != "" {
		res.RegistrationID = rs.RegistrationID
	}
	if rs.Status != "" {
		res.Status = rs.Status
	}
	res.Substatus, res.AssignedHub, res.DeviceID = rs.Substatus, rs.AssignedHub, rs.DeviceID
	res.ErrorCode, res.ErrorMessage, res.ETag = rs.ErrorCode, rs.ErrorMessage, rs.ETag
	res.CreatedAt, res.LastUpdatedAt, res.Payload = rs.CreatedDateTimeUTC, rs.LastUpdatedDateTimeUTC, rs.Payload
	if t := rs.TPM; t != nil {
		blob, err := base64.StdEncoding.DecodeString(t.AuthenticationKey)
		if err != nil {
			return fmt.Errorf("%w: tpm.authenticationKey is not base64", ErrProtocol)
		}
		res.TPM = &TPMResult{AuthenticationKey: blob}
	}
	if x := rs.X509; x != nil {
		res.X509 = &X509Result{CertificateInfo: x.CertificateInfo, EnrollmentGroupID: x.EnrollmentGroupID, SigningCertificateInfo: x.SigningCertificateInfo}
	}
	if k := rs.SymmetricKey; k != nil {
		res.SymmetricKey = &SymmetricKeyResult{EnrollmentGroupID: k.EnrollmentGroupID}
	}
	for i, der := range rs.IssuedCertificateChain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("%w: issuedCertificateChain[%d] is not a certificate: %v", ErrProtocol, i, err)
		}
		res.IssuedCertificateChain = append(res.IssuedCertificateChain, c)
	}
	return nil
}

// challenge is the 401 of a TPM registration without Authorization.
type challenge struct {
	AuthenticationKey string `json:"authenticationKey"`
	KeyName           string `json:"keyName"`
	Message           string `json:"message"`
}

func (c *client) register(ctx context.Context) (*Result, error) {
	body := deviceRegistration{RegistrationID: c.regID, Payload: c.cfg.Payload, CSR: c.cfg.CSR}
	if t := c.cfg.TPM; t != nil {
		body.TPM = &tpmKeys{
			EndorsementKey: base64.StdEncoding.EncodeToString(t.EndorsementKey()),
			StorageRootKey: base64.StdEncoding.EncodeToString(t.StorageRootKey()),
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("register %s: encode: %w", c.regID, err)
	}
	registerURL := c.base + "/register?api-version=" + url.QueryEscape(c.cfg.APIVersion)

	if c.cfg.TPM != nil {
		if err := c.tpmChallenge(ctx, registerURL, b); err != nil {
			return nil, err
		}
	}
	op := "register " + c.regID
	resp, err := c.send(ctx, op, http.MethodPut, registerURL, b)
	if err != nil {
		return nil, err
	}
	st, err := decodeStatus(op, resp)
	if err != nil {
		return nil, err
	}
	op = "poll " + c.regID
	for pending(resp, st) {
		wait := c.clamp(resp.retryAfter, DefaultMinWait)
		c.log.LogAttrs(ctx, slog.LevelDebug, "dps: assigning", slog.String(keyStep, op), slog.Duration(keyWait, wait))
		if !pause.For(ctx, wait) {
			err := ctx.Err()
			return nil, fmt.Errorf("%s: operation %s: %w", op, st.OperationID, err)
		}
		u := c.base + "/operations/" + url.PathEscape(st.OperationID) + "?api-version=" + url.QueryEscape(c.cfg.APIVersion)
		if resp, err = c.send(ctx, op, http.MethodGet, u, nil); err != nil {
			return nil, err
		}
		next, err := decodeStatus(op, resp)
		if err != nil {
			return nil, err
		}
		if next.OperationID == "" {
			next.OperationID = st.OperationID
		}
		st = next
	}
	return c.outcome(ctx, st)
}

// tpmChallenge sends the register request without Authorization, as a
// TPM device does first, and imports the challenge DPS answers it with.
func (c *client) tpmChallenge(ctx context.Context, registerURL string, body []byte) error {
	op := "TPM challenge for " + c.regID
	resp, err := c.sendAs(ctx, op, http.MethodPut, registerURL, body, false)
	if err != nil {
		return err
	}
	switch {
	case resp.status >= 400 && resp.status != http.StatusUnauthorized:
		return decodeError(op, resp) // no enrollment (404), a bad request...
	case resp.status != http.StatusUnauthorized:
		return fmt.Errorf("%s: %w: answered %d, not 401 with the challenge", op, ErrProtocol, resp.status)
	}
	var ch challenge
	if json.Unmarshal(resp.body, &ch) != nil || ch.AuthenticationKey == "" {
		return decodeError(op, resp) // a refusal: another EK, no enrollment
	}
	blob, err := base64.StdEncoding.DecodeString(ch.AuthenticationKey)
	if err != nil {
		return fmt.Errorf("%s: %w: authenticationKey is not base64", op, ErrProtocol)
	}
	if err := c.cfg.TPM.ImportIdentityKey(ctx, blob); err != nil {
		return fmt.Errorf("%s: import: %w: %w", op, ErrTPM, err)
	}
	return nil
}

// outcome turns the final operation status into the Result, importing a
// TPM device's key.
func (c *client) outcome(ctx context.Context, st *operationStatus) (*Result, error) {
	res := &Result{RegistrationID: c.regID, OperationID: st.OperationID, Status: st.Status}
	op := "register " + c.regID
	if rs := st.RegistrationState; rs != nil {
		if err := rs.fill(res); err != nil {
			return res, fmt.Errorf("%s: %w", op, err)
		}
	}
	switch res.Status {
	case "assigned":
		if res.AssignedHub == "" || res.DeviceID == "" {
			return res, fmt.Errorf("%s: %w: assigned without assignedHub and deviceId", op, ErrProtocol)
		}
		if c.cfg.TPM != nil {
			if res.TPM == nil || len(res.TPM.AuthenticationKey) == 0 {
				return res, fmt.Errorf("%s: %w: a TPM registration assigned without tpm.authenticationKey", op, ErrProtocol)
			}
			if err := c.cfg.TPM.ImportIdentityKey(ctx, res.TPM.AuthenticationKey); err != nil {
				return res, fmt.Errorf("%s: import the device key: %w: %w", op, ErrTPM, err)
			}
		}
		if c.csr != nil {
			if len(res.IssuedCertificateChain) == 0 {
				return res, fmt.Errorf("%s: %w: assigned without issuedCertificateChain for the CSR sent (api-version %s)", op, ErrCertificate, c.cfg.APIVersion)
			}
			if err := VerifyIssuedChain(res.IssuedCertificateChain, c.csr.PublicKey, c.regID, c.cfg.IssuerRoots, time.Now()); err != nil {
				return res, fmt.Errorf("%s: %w", op, err)
			}
		}
		c.log.LogAttrs(ctx, slog.LevelInfo, "dps: assigned", slog.String(keyHub, res.AssignedHub), slog.String(keyDeviceID, res.DeviceID))
		return res, nil
	case "disabled":
		return res, fmt.Errorf("%s: %w (operation %s)", op, ErrDisabled, res.OperationID)
	case "failed", "unassigned":
		return res, fmt.Errorf("%s: %w: status %s, errorCode %d: %s", op, ErrFailed, res.Status, res.ErrorCode, res.ErrorMessage)
	}
	return res, fmt.Errorf("%s: %w: status %q", op, ErrProtocol, res.Status)
}

// pending reports whether the operation is still under way: a 202, or
// a status of assigning (or unassigned, which the service answers before
// it starts, with no registration state yet).
func pending(resp *response, st *operationStatus) bool {
	return resp.status == http.StatusAccepted || st.Status == "assigning" || st.Status == "unassigned" && st.RegistrationState == nil
}

// decodeStatus reads a 200 or 202 answer's RegistrationOperationStatus.
func decodeStatus(op string, resp *response) (*operationStatus, error) {
	if resp.status != http.StatusOK && resp.status != http.StatusAccepted {
		return nil, decodeError(op, resp)
	}
	var st operationStatus
	if err := json.Unmarshal(resp.body, &st); err != nil {
		return nil, fmt.Errorf("%s: %w: answer is not a RegistrationOperationStatus: %v", op, ErrProtocol, err)
	}
	if st.OperationID == "" && (resp.status == http.StatusAccepted || st.Status == "assigning") {
		return nil, fmt.Errorf("%s: %w: %d without an operationId", op, ErrProtocol, resp.status)
	}
	return &st, nil
}

// response is an answer read in full.
type response struct {
	status     int
	body       []byte
	retryAfter time.Duration // 0 when absent
}

// send makes a request with the device's credentials and returns the
// first answer that is not transient: 429 is waited out (Retry-After,
// clamped) as long as ctx allows; 5xx and no answer are tried up to
// Attempts times in a row, after Retry-After or a backoff.
func (c *client) send(ctx context.Context, op, method, u string, body []byte) (*response, error) {
	return c.sendAs(ctx, op, method, u, body, true)
}

func (c *client) sendAs(ctx context.Context, op, method, u string, body []byte, withAuth bool) (*response, error) {
	failures := 0
	for attempt := 1; ; attempt++ {
		resp, err := c.once(ctx, op, method, u, body, withAuth)
		var wait time.Duration
		switch {
		case err != nil && ctx.Err() != nil:
			return nil, err
		case err != nil && !errors.Is(err, ErrUnavailable):
			return nil, err
		case err != nil:
			failures++
			wait = min(enroll.Backoff(failures), c.cfg.MaxWait)
		case resp.status == http.StatusTooManyRequests:
			failures = 0
			wait = c.clamp(resp.retryAfter, DefaultMinWait)
			err = decodeError(op, resp)
		case resp.status >= 500:
			failures++
			wait = min(enroll.Backoff(failures), c.cfg.MaxWait)
			if resp.retryAfter > 0 {
				wait = c.clamp(resp.retryAfter, 0)
			}
			err = decodeError(op, resp)
		default:
			return resp, nil
		}
		if failures >= c.cfg.Attempts {
			return nil, fmt.Errorf("%s: giving up after %d failures in a row: %w", op, failures, err)
		}
		c.log.LogAttrs(ctx, slog.LevelDebug, "dps: retrying", slog.String(keyStep, op), slog.Int(keyAttempt, attempt),
			slog.Duration(keyWait, wait), slog.String(keyErr, err.Error()))
		if !pause.For(ctx, wait) {
			serr := ctx.Err()
			return nil, fmt.Errorf("%s: %w (after %v)", op, serr, err)
		}
	}
}

// once makes one request.
func (c *client) once(ctx context.Context, op, method, u string, body []byte, withAuth bool) (*response, error) {
	var auth string
	if withAuth && c.cfg.X509 == nil {
		a, err := c.token(ctx)
		if err != nil {
			return nil, err
		}
		auth = a
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "zerotouch-device/1")
	if body != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", op, ctx.Err())
		}
		if rctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w: no answer in %v", op, ErrUnavailable, c.cfg.Timeout)
		}
		return nil, fmt.Errorf("%s: %w: %v", op, ErrUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", op, ctx.Err())
		}
		return nil, fmt.Errorf("%s: %w: reading the answer: %v", op, ErrUnavailable, err)
	}
	return &response{status: resp.StatusCode, body: b, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"))}, nil
}

// token returns the device's SAS token, valid for at least five more
// minutes: signed with the symmetric key, or inside the TPM.
func (c *client) token(ctx context.Context) (string, error) {
	now := time.Now()
	if c.auth != "" && now.Add(5*time.Minute).Before(c.expiry) {
		return c.auth, nil
	}
	expiry := now.Add(c.cfg.TokenLifetime).Truncate(time.Second)
	if c.cfg.TPM == nil {
		c.auth, c.expiry = SymmetricKeyToken(c.cfg.IDScope, c.regID, c.cfg.SymmetricKey, expiry), expiry
		return c.auth, nil
	}
	sr := Resource(c.cfg.IDScope, c.regID)
	sig, err := c.cfg.TPM.IdentityHMAC(ctx, []byte(StringToSign(sr, expiry)))
	if err != nil {
		return "", fmt.Errorf("sign the SAS token of %s: %w: %w", c.regID, ErrTPM, err)
	}
	c.auth, c.expiry = SASToken(sr, sig, expiry), expiry
	return c.auth, nil
}

// clamp bounds a wait the service asked for into [MinWait, MaxWait];
// none (0) means def.
func (c *client) clamp(d, def time.Duration) time.Duration {
	if d <= 0 {
		d = def
	}
	return min(max(d, c.cfg.MinWait), c.cfg.MaxWait)
}

// parseRetryAfter reads a Retry-After header as the C SDK does: whole
// seconds only; anything else is 0 (none).
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 9 {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Second
}

// decodeError makes an *Error of an answer.
func decodeError(op string, resp *response) error {
	e := &Error{Op: op, Status: resp.status, RetryAfter: resp.retryAfter}
	var body enroll.ErrorBody
	if json.Unmarshal(resp.body, &body) == nil && (body.ErrorCode != 0 || body.Message != "") {
		e.Code, e.TrackingID, e.Message = body.ErrorCode, body.TrackingID, body.Message
	} else {
		e.Message = strings.TrimSpace(string(resp.body))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200] + "..."
		}
	}
	return e
}
