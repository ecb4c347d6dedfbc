package emulator

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"zerotouch/enroll"
	"zerotouch/internal/dpstpm"
	"zerotouch/internal/sqlitedb"
)

// Defaults for Options.
const (
	DefaultKeyName   = "provisioningserviceowner"         // DPS's all-rights policy
	DefaultMaxBody   = 96 * 1024                          // DPS's maximum message size
	DefaultIDScope   = "0ne00DE0000"                      // the ID scope zerotouch demo configures its boards with
	DefaultIoTHub    = "zerotouch-demo.azure-devices.net" // the one IoT hub linked by default
	DefaultPollQuota = 5                                  // polls per device per 10 s ("Device polling operation: 5/10 sec/device")

	DefaultReadTimeout = 10 * time.Second // for a request's header, and then for its body
	DefaultMaxConns    = 512              // connections Start's server holds at once, unless the open-file limit is lower
)

// writeTimeout is how long Start's server gives an answer to be written,
// from the end of Faults.Latency.
const writeTimeout = 30 * time.Second

// codeRequestTimeout is the error code of a 408: the body did not arrive
// in time. DPS documents none; it follows their status*1000 pattern.
const codeRequestTimeout = 408000

// Query page sizes (x-ms-max-item-count): DefaultPageSize when the header
// is absent; larger requests are cut to MaxPageSize.
const (
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// maxDBConns is how many SQLite connections are kept open between
// requests, and how many there are at most: each holds files open
// (the database and its WAL), so that requests in numbers wait for one
// instead of running the process out of file descriptors.
const maxDBConns = 32

// ErrOptions means New or Start was given options it cannot run with.
var ErrOptions = errors.New("invalid DPS emulator options")

// SupportedAPIVersions lists the api-version values the emulator serves,
// on both APIs: those the service SDKs send (C 2018-04-01, C# and Java
// 2019-03-31, Node 2021-10-01), those the device SDKs send (Node, C#,
// Java 2019-03-31; C and iot-identity-service 2021-06-01) and the
// other published versions.
func SupportedAPIVersions() []string {
	return []string{"2018-04-01", "2019-03-31", "2021-06-01", "2021-10-01", "2025-07-01-preview", "2026-04-01"}
}

// Options configure an Emulator. Only DB and PrimaryKey are required.
// The device API's quota and the poll limit are apart from the service
// API's: DPS counts device registrations on their own ("Device
// registrations: 1,000/min/service") and does not bill polls.
type Options struct {
	DB           string           // SQLite file (required); created if absent; state survives restarts
	Synchronous  string           // passed to sqlitedb.Options ("" = FULL)
	KeyName      string           // policy name, default DefaultKeyName
	PrimaryKey   []byte           // required
	SecondaryKey []byte           // optional
	HostNames    []string         // names the service answers to: a SAS token's sr may carry one (with or without a port) or the address the connection came in on, never just the request's Host; Start adds its certificate's names
	Quota        int              // service operations per minute (token bucket); 0 = unlimited
	Burst        int              // bucket size; default max(1, Quota/60)
	MaxBody      int64            // request body limit, default DefaultMaxBody: a larger one is 413, refused before it is read whole
	ReadTimeout  time.Duration    // how long a request's body may take to arrive, from when it is handled (after Faults.Latency): 408 after; Start's server gives a TLS handshake and a header as long; default DefaultReadTimeout
	MaxConns     int              // Start's server only: connections held at once; default DefaultMaxConns, or fewer as the open-file limit requires (see Start)
	Faults       Faults           // faults to inject from the start, on the service and the device API
	Now          func() time.Time // default time.Now; drives SAS and certificate expiry, the quotas, assignment and timestamps
	Logger       *slog.Logger     // default: discard

	IDScope           string        // the device API's ID scope, default DefaultIDScope; requests for another are 404
	IoTHubs           []string      // host names of the linked IoT hubs that registrations are allocated over; default DefaultIoTHub
	AssignDelay       time.Duration // from an accepted registration to its assignment: polls before then are answered 202 assigning; default 0 (the first poll gets it)
	RegistrationQuota int           // device registrations (and status lookups) a minute (token bucket; DPS: 1,000); 0 = unlimited
	RegistrationBurst int           // that bucket's size; default max(1, RegistrationQuota/60)
	PollQuota         int           // polls per device per 10 s; 0 = DefaultPollQuota; negative = unlimited
	TPMChallenge      TPMChallenge  // seals TPM challenges and device keys; default dpstpm.Challenge
}

// Faults are injected per request, after authentication and the quota,
// as shares of requests in [0, 1]: a request draws one number and is
// answered with an error if it falls within ErrorRate, dropped if it falls
// within the next DropRate, and dropped after being carried out if within
// the next DropAfterRate (when the rates add up past 1, the later kinds get
// what is left). ItemErrorRate then applies to each item of a bulk request
// that is answered: the item fails alone, as an errors entry with a 5xx
// errorCode, and is not carried out.
type Faults struct {
	ErrorRate     float64       // share of requests answered 500 or 503 (DPS error body) without doing anything
	DropRate      float64       // share of requests whose connection is cut with no answer, nothing done
	DropAfterRate float64       // share of requests carried out (committed) and then cut with no answer
	ItemErrorRate float64       // share of the items of bulk requests answered 200 that fail on their own with a 5xx errorCode, not carried out
	Latency       time.Duration // added to every request before it is handled
	Seed          int64         // for the random choice; 0 = random seed
}

func (f Faults) validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"ErrorRate", f.ErrorRate}, {"DropRate", f.DropRate}, {"DropAfterRate", f.DropAfterRate}, {"ItemErrorRate", f.ItemErrorRate}} {
		if math.IsNaN(r.v) || r.v < 0 || r.v > 1 {
			return fmt.Errorf("%w: Faults.%s %v: want a share in [0, 1]", ErrOptions, r.name, r.v)
		}
	}
	if f.Latency < 0 {
		return fmt.Errorf("%w: Faults.Latency %v is negative", ErrOptions, f.Latency)
	}
	return nil
}

// Stats count what the emulator did since New.
type Stats struct {
	Requests     int64 // requests received
	Operations   int64 // authenticated service API requests charged to its quota
	Throttled    int64 // answered 429
	Unauthorized int64 // answered 401, TPM challenges aside
	Errors       int64 // injected 500/503 answers
	Drops        int64 // connections cut before doing anything
	DropsAfter   int64 // connections cut after the work was committed
	ItemErrors   int64 // bulk items failed on their own (Faults.ItemErrorRate)

	Registrations int64 // device register requests carried out
	Polls         int64 // device polls of an operation answered (not throttled)
	Challenges    int64 // TPM challenges issued (401 with authenticationKey)

	Reclaimed int64 // connections Start's server closed to make room for new ones (Options.MaxConns)
}

// Emulator is the DPS service and device APIs as an http.Handler. It is safe for
// concurrent use; Close it when done. Failures of a request, the
// emulator's own included (a store that cannot be written: 500), are
// answered to the client as DPS error bodies and logged, never returned.
type Emulator struct {
	db        *sql.DB
	keyName   string
	keys      [][]byte
	hostNames []string
	maxBody   int64
	readTO    time.Duration
	now       func() time.Time
	log       *slog.Logger

	writeMu sync.Mutex // one write transaction at a time

	idScope      string
	hubs         []string
	assignDelay  time.Duration
	pollQuota    int
	tpmChallenge TPMChallenge

	policyCAs policyCache // credential policies' CAs, open from first use to Close

	mu          sync.Mutex // guards faults, rng, bucket, regBucket and pollBuckets
	faults      Faults
	rng         *rand.Rand
	bucket      bucket
	regBucket   bucket
	pollBuckets map[string]*bucket // by lower-cased registration ID

	requests, operations, throttled, unauthorized, errors, drops, dropsAfter, itemErrors atomic.Int64
	registrations, polls, challenges, reclaimed                                          atomic.Int64
}

// New checks opts and opens (creating or migrating) the SQLite file
// opts.DB. Errors wrap ErrOptions for bad options, or say which file could
// not be opened.
func New(ctx context.Context, opts Options) (*Emulator, error) {
	switch {
	case opts.DB == "":
		return nil, fmt.Errorf("%w: DB (the SQLite file) is required", ErrOptions)
	case len(opts.PrimaryKey) == 0:
		return nil, fmt.Errorf("%w: PrimaryKey is required", ErrOptions)
	case opts.Quota < 0:
		return nil, fmt.Errorf("%w: Quota %d is negative", ErrOptions, opts.Quota)
	case opts.Burst < 0:
		return nil, fmt.Errorf("%w: Burst %d is negative", ErrOptions, opts.Burst)
	case opts.MaxBody < 0:
		return nil, fmt.Errorf("%w: MaxBody %d is negative", ErrOptions, opts.MaxBody)
	case opts.RegistrationQuota < 0:
		return nil, fmt.Errorf("%w: RegistrationQuota %d is negative", ErrOptions, opts.RegistrationQuota)
	case opts.RegistrationBurst < 0:
		return nil, fmt.Errorf("%w: RegistrationBurst %d is negative", ErrOptions, opts.RegistrationBurst)
	case opts.AssignDelay < 0:
		return nil, fmt.Errorf("%w: AssignDelay %v is negative", ErrOptions, opts.AssignDelay)
	case opts.ReadTimeout < 0:
		return nil, fmt.Errorf("%w: ReadTimeout %v is negative", ErrOptions, opts.ReadTimeout)
	case opts.MaxConns < 0:
		return nil, fmt.Errorf("%w: MaxConns %d is negative", ErrOptions, opts.MaxConns)
	}
	if opts.IDScope == "" {
		opts.IDScope = DefaultIDScope
	}
	if err := CheckIDScope(opts.IDScope); err != nil {
		return nil, fmt.Errorf("%w: IDScope: %v", ErrOptions, err)
	}
	var hubs []string
	for _, h := range opts.IoTHubs {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if strings.ContainsAny(h, "/: ") {
			return nil, fmt.Errorf("%w: IoTHubs: %q is not a host name", ErrOptions, h)
		}
		if !slices.ContainsFunc(hubs, func(s string) bool { return strings.EqualFold(s, h) }) {
			hubs = append(hubs, h)
		}
	}
	if len(hubs) == 0 {
		hubs = []string{DefaultIoTHub}
	}
	if err := opts.Faults.validate(); err != nil {
		return nil, err
	}
	e := &Emulator{
		keyName:      opts.KeyName,
		keys:         [][]byte{slices.Clone(opts.PrimaryKey)},
		maxBody:      opts.MaxBody,
		readTO:       opts.ReadTimeout,
		now:          opts.Now,
		log:          opts.Logger,
		idScope:      opts.IDScope,
		hubs:         hubs,
		assignDelay:  opts.AssignDelay,
		pollQuota:    opts.PollQuota,
		tpmChallenge: opts.TPMChallenge,
		pollBuckets:  map[string]*bucket{},
	}
	if e.pollQuota == 0 {
		e.pollQuota = DefaultPollQuota
	}
	if e.tpmChallenge == nil {
		e.tpmChallenge = dpstpm.Challenge
	}
	if e.keyName == "" {
		e.keyName = DefaultKeyName
	}
	if len(opts.SecondaryKey) > 0 {
		e.keys = append(e.keys, slices.Clone(opts.SecondaryKey))
	}
	for _, h := range opts.HostNames {
		if h = strings.TrimSpace(h); h != "" {
			e.hostNames = append(e.hostNames, h)
		}
	}
	if e.maxBody == 0 {
		e.maxBody = DefaultMaxBody
	}
	if e.readTO == 0 {
		e.readTO = DefaultReadTimeout
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e.setFaults(opts.Faults)
	e.bucket = newBucket(opts.Quota, opts.Burst)
	e.regBucket = newBucket(opts.RegistrationQuota, opts.RegistrationBurst)
	db, err := sqlitedb.Open(ctx, opts.DB, migrations(), sqlitedb.Options{Synchronous: opts.Synchronous})
	if err != nil {
		return nil, fmt.Errorf("DPS emulator store: %w", err)
	}
	// Concurrent devices would otherwise open and close a connection
	// (and re-prepare every statement) for most requests; and open files
	// without end.
	db.SetMaxIdleConns(maxDBConns)
	db.SetMaxOpenConns(maxDBConns)
	e.db = db
	return e, nil
}

// Close closes the database and the credential policies' CAs. Requests
// still being served fail.
func (e *Emulator) Close() error {
	var errs []error
	if err := e.db.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close DPS emulator store: %w", err))
	}
	if err := e.policyCAs.close(); err != nil {
		errs = append(errs, fmt.Errorf("close DPS emulator: %w", err))
	}
	return errors.Join(errs...)
}

// SetFaults replaces the faults injected from the next request on, and
// reseeds the random choice with f.Seed. Rates outside [0, 1] are clamped
// into it and a negative latency counts as none. Safe while serving.
func (e *Emulator) SetFaults(f Faults) {
	clamp := func(v float64) float64 {
		if math.IsNaN(v) {
			return 0
		}
		return min(max(v, 0), 1)
	}
	f.ErrorRate, f.DropRate, f.DropAfterRate = clamp(f.ErrorRate), clamp(f.DropRate), clamp(f.DropAfterRate)
	f.ItemErrorRate = clamp(f.ItemErrorRate)
	f.Latency = max(f.Latency, 0)
	e.setFaults(f)
}

func (e *Emulator) setFaults(f Faults) {
	seed := uint64(f.Seed)
	if seed == 0 {
		seed = rand.Uint64()
	}
	e.mu.Lock()
	e.faults = f
	e.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	e.mu.Unlock()
}

// SetQuota replaces the quota with perMinute operations a minute and a
// bucket of burst (0 means max(1, perMinute/60)); perMinute 0 lifts the
// quota. The new bucket starts full. Safe while serving.
func (e *Emulator) SetQuota(perMinute, burst int) {
	b := newBucket(max(perMinute, 0), max(burst, 0))
	e.mu.Lock()
	e.bucket = b
	e.mu.Unlock()
}

// SetRegistrationQuota replaces the device registrations quota as
// SetQuota does the service operations quota. Safe while serving.
func (e *Emulator) SetRegistrationQuota(perMinute, burst int) {
	b := newBucket(max(perMinute, 0), max(burst, 0))
	e.mu.Lock()
	e.regBucket = b
	e.mu.Unlock()
}

// IDScope is the device API's ID scope.
func (e *Emulator) IDScope() string { return e.idScope }

// IoTHubs are the linked IoT hubs registrations are allocated over.
func (e *Emulator) IoTHubs() []string { return slices.Clone(e.hubs) }

// Stats returns the counters so far. Safe while serving.
func (e *Emulator) Stats() Stats {
	return Stats{
		Requests:     e.requests.Load(),
		Operations:   e.operations.Load(),
		Throttled:    e.throttled.Load(),
		Unauthorized: e.unauthorized.Load(),
		Errors:       e.errors.Load(),
		Drops:        e.drops.Load(),
		DropsAfter:   e.dropsAfter.Load(),
		ItemErrors:   e.itemErrors.Load(),

		Registrations: e.registrations.Load(),
		Polls:         e.polls.Load(),
		Challenges:    e.challenges.Load(),

		Reclaimed: e.reclaimed.Load(),
	}
}

// Registrations reports how many register requests of registrationID
// (compared case-insensitively) were carried out since its registration
// record was made: 0 if it has none. Tests use it to prove that a device
// registered exactly once.
func (e *Emulator) Registrations(ctx context.Context, registrationID string) (int, error) {
	r, err := getRegistration(ctx, e.db, registrationID)
	if err != nil {
		return 0, fmt.Errorf("registrations of %s: %w", registrationID, err)
	}
	if r == nil {
		return 0, nil
	}
	return r.count, nil
}

// Writes reports how many times the individual enrollment registrationID
// (compared case-insensitively) was written since it was last created: 1
// after a create, one more for each update; 0 if it does not exist.
// Tests use it to prove that an enrollment was made exactly once.
func (e *Emulator) Writes(ctx context.Context, registrationID string) (int, error) {
	n, err := writeCount(ctx, e.db, enrollmentKind.table, registrationID)
	if err != nil {
		return 0, fmt.Errorf("writes of enrollment %s: %w", registrationID, err)
	}
	return n, nil
}

// bucket is a token bucket refilling continuously at rate tokens a second
// up to burst; rate 0 means no limit. Guarded by Emulator.mu.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

func newBucket(perMinute, burst int) bucket {
	if perMinute == 0 {
		return bucket{}
	}
	if burst == 0 {
		burst = max(1, perMinute/60)
	}
	return bucket{rate: float64(perMinute) / 60, burst: float64(burst), tokens: float64(burst)}
}

// take takes a token at now, or reports how long until one is there.
func (b *bucket) take(now time.Time) (bool, time.Duration) {
	if b.rate == 0 {
		return true, 0
	}
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if b.last.IsZero() || now.After(b.last) {
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

type fault int

const (
	faultNone fault = iota
	faultError
	faultDrop
	faultDropAfter
)

// decide draws this request's fault and, for faultError, its status.
func (e *Emulator) decide() (fault, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f := e.faults
	if f.ErrorRate == 0 && f.DropRate == 0 && f.DropAfterRate == 0 {
		return faultNone, 0
	}
	u := e.rng.Float64()
	switch {
	case u < f.ErrorRate:
		if e.rng.IntN(2) == 0 {
			return faultError, http.StatusInternalServerError
		}
		return faultError, http.StatusServiceUnavailable
	case u < f.ErrorRate+f.DropRate:
		return faultDrop, 0
	case u < f.ErrorRate+f.DropRate+f.DropAfterRate:
		return faultDropAfter, 0
	}
	return faultNone, 0
}

// itemFault reports whether one item of a bulk request fails on its own.
func (e *Emulator) itemFault() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.faults.ItemErrorRate > 0 && e.rng.Float64() < e.faults.ItemErrorRate
}

func (e *Emulator) latency() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.faults.Latency
}

// ServeHTTP answers one DPS service or device API request. Checks run in
// this order: latency, route (404, 405), api-version (400),
// authentication (401; for the device API, after its ID scope (404) and
// the enrollment (404)), quota (429), injected faults, then the
// operation itself; the body is read after authentication (for the
// device API, before the quota), except a TPM device's first register
// request, whose body carries the keys of its challenge. A body must
// arrive within Options.ReadTimeout from the end of the latency (408
// after) and be at most Options.MaxBody bytes (413); an HTTP/1 request
// answered with an error before its body was read whole has its
// connection closed, so that nothing waits for the rest.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.requests.Add(1)
	start := time.Now()
	lc := servedConn(r.Context())
	lc.begin()
	defer lc.end()
	rc := http.NewResponseController(w)
	d := e.latency()
	if lc != nil {
		// Start's server sets a write deadline for each request (its
		// WriteTimeout), so this one does not outlive the request.
		rc.SetWriteDeadline(time.Now().Add(d + writeTimeout))
	}
	if d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	body := &requestBody{rc: rc, conn: lc}
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		// An error means the server cannot set deadlines (a test's
		// recorder): the body is then read without one.
		rc.SetReadDeadline(time.Now().Add(e.readTO))
		body.ReadCloser = r.Body
		r.Body = body
	} else {
		body.eof = true
	}
	sw := &statusWriter{ResponseWriter: w}
	done := func(a *apiError) {
		if a != nil {
			if r.ProtoMajor == 1 && !body.eof {
				sw.Header().Set("Connection", "close")
			}
			e.writeError(sw, a)
		}
		e.logRequest(r, sw.status, a, time.Since(start))
	}
	var serve func(http.ResponseWriter) *apiError
	if dr, ok, aerr := matchDevice(r.Method, r.URL.EscapedPath()); ok {
		if aerr == nil {
			serve, aerr = e.prepareDevice(sw, r, dr)
		}
		if aerr != nil {
			done(aerr)
			return
		}
	} else {
		if serve, aerr = e.prepareService(r); aerr != nil {
			done(aerr)
			return
		}
	}
	switch f, status := e.decide(); f {
	case faultError:
		e.errors.Add(1)
		code := enroll.CodeInternal
		if status == http.StatusServiceUnavailable {
			code = enroll.CodeServerUnavailable
		}
		done(&apiError{status: status, code: code, msg: "injected fault: " + http.StatusText(status), fault: true})
		return
	case faultDrop:
		e.drops.Add(1)
		e.log.LogAttrs(r.Context(), slog.LevelInfo, "injected fault: connection cut, nothing done",
			slog.String(keyMethod, r.Method), slog.String(keyPath, r.URL.Path))
		panic(http.ErrAbortHandler)
	case faultDropAfter:
		d := &discardWriter{}
		aerr := serve(d)
		e.dropsAfter.Add(1)
		attrs := []slog.Attr{slog.String(keyMethod, r.Method), slog.String(keyPath, r.URL.Path)}
		if aerr != nil {
			attrs = append(attrs, slog.Int(keyStatus, aerr.status), slog.Int(keyCode, aerr.code))
		} else {
			attrs = append(attrs, slog.Int(keyStatus, d.status))
		}
		e.log.LogAttrs(r.Context(), slog.LevelInfo, "injected fault: request carried out, then connection cut", attrs...)
		panic(http.ErrAbortHandler)
	}
	done(serve(sw))
}

// prepareService checks a service API request up to the point where it
// is carried out: route (404, 405), api-version (400), authentication
// (401) and quota (429). It returns what carries the request out.
func (e *Emulator) prepareService(r *http.Request) (func(http.ResponseWriter) *apiError, *apiError) {
	rt, aerr := route(r.Method, r.URL.EscapedPath())
	if aerr != nil {
		return nil, aerr
	}
	if aerr := checkAPIVersion(r); aerr != nil {
		return nil, aerr
	}
	if aerr := e.authorize(r); aerr != nil {
		e.unauthorized.Add(1)
		return nil, aerr
	}
	e.mu.Lock()
	ok, wait := e.bucket.take(e.now())
	e.mu.Unlock()
	if !ok {
		e.throttled.Add(1)
		secs := max(1, int(math.Ceil(wait.Seconds())))
		return nil, &apiError{status: http.StatusTooManyRequests, code: enroll.CodeThrottled,
			msg:        fmt.Sprintf("throttled: the service operations quota is used up; retry after %d s", secs),
			retryAfter: secs}
	}
	e.operations.Add(1)
	return func(w http.ResponseWriter) *apiError { return rt.serve(e, w, r) }, nil
}

// CheckIDScope reports whether s can be an ID scope: 1 to 64 letters and
// digits (DPS makes them like 0ne0001A2B3).
func CheckIDScope(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("ID scope %q: want 1 to 64 letters and digits", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return fmt.Errorf("ID scope %q: character %q at %d; want letters and digits", s, c, i+1)
		}
	}
	return nil
}

// Log attribute keys.
const (
	keyMethod     = "method"
	keyPath       = "path"
	keyStatus     = "status"
	keyCode       = "error_code"
	keyMessage    = "message"
	keyTrackingID = "tracking_id"
	keyDuration   = "duration"
	keyErr        = "err"
)

func (e *Emulator) logRequest(r *http.Request, status int, a *apiError, d time.Duration) {
	attrs := []slog.Attr{slog.String(keyMethod, r.Method), slog.String(keyPath, r.URL.Path), slog.Int(keyStatus, status), slog.Duration(keyDuration, d)}
	level := slog.LevelDebug
	if a != nil {
		attrs = append(attrs, slog.Int(keyCode, a.code), slog.String(keyTrackingID, a.trackingID), slog.String(keyMessage, a.logMessage()))
		if a.status >= 500 {
			level = slog.LevelInfo
		}
		if a.cause != nil {
			level = slog.LevelError
			attrs = append(attrs, slog.String(keyErr, a.cause.Error()))
		}
	}
	e.log.LogAttrs(r.Context(), level, "DPS emulator request", attrs...)
}

// requestBody is a request's body, read under a deadline that is
// cleared once it has been read whole (the server's own rules then bound
// the wait for the client's next request). It tells its connection,
// when Start's server holds one, while a read waits for the client.
type requestBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	conn *limitedConn // nil unless served by Start
	eof  bool         // read to its end (or there was none)
}

func (b *requestBody) Read(p []byte) (int, error) {
	b.conn.reading(true)
	n, err := b.ReadCloser.Read(p)
	b.conn.reading(false)
	if err == io.EOF && !b.eof {
		b.eof = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// discardWriter takes the answer to a request whose connection is cut.
type discardWriter struct {
	h      http.Header
	status int
}

func (d *discardWriter) Header() http.Header {
	if d.h == nil {
		d.h = http.Header{}
	}
	return d.h
}

func (d *discardWriter) WriteHeader(code int) {
	if d.status == 0 {
		d.status = code
	}
}

func (d *discardWriter) Write(p []byte) (int, error) {
	d.WriteHeader(http.StatusOK)
	return len(p), nil
}

func checkAPIVersion(r *http.Request) *apiError {
	vs := r.URL.Query()["api-version"]
	supported := SupportedAPIVersions()
	list := strings.Join(supported, ", ")
	switch {
	case len(vs) == 0 || vs[0] == "":
		return &apiError{status: http.StatusBadRequest, code: enroll.CodeAPIVersion,
			msg:  "the api-version query parameter is required; supported versions: " + list,
			info: map[string]string{"supportedVersions": list}}
	case len(vs) > 1:
		return &apiError{status: http.StatusBadRequest, code: enroll.CodeAPIVersion,
			msg:  "api-version is given " + strconv.Itoa(len(vs)) + " times; give it once, one of: " + list,
			info: map[string]string{"supportedVersions": list}}
	case !slices.Contains(supported, vs[0]):
		return &apiError{status: http.StatusBadRequest, code: enroll.CodeAPIVersion,
			msg:  fmt.Sprintf("api-version %q is not supported; supported versions: %s", vs[0], list),
			info: map[string]string{"supportedVersions": list}}
	}
	return nil
}
