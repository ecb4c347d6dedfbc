package emulator

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"zerotouch/enroll"
	"zerotouch/internal/atomicfile"
)

// Files Start keeps in its folder.
const (
	FileCA               = "ca.pem"            // the CA that signs the server certificate; clients trust it
	FileCAKey            = "ca.key"            // its key, 0600
	FileConnectionString = "connection-string" // the full connection string, key included, 0600
	FileDB               = "emulator.db"       // the store, unless Options.DB says otherwise
	FileIDScope          = "id-scope"          // the device API's ID scope
)

// Server is an Emulator behind an HTTPS server, made by Start. Its fields
// do not change once Start returns and may be read from any goroutine;
// the Emulator's methods (SetFaults, SetQuota, Stats, Writes) are safe
// while it serves. Close it once.
type Server struct {
	URL              string // https://127.0.0.1:8443
	HostName         string // host[:port] for the connection string, e.g. "127.0.0.1:8443" (no port when 443)
	ConnectionString string // HostName=...;SharedAccessKeyName=...;SharedAccessKey=...
	CAFile           string // DIR/ca.pem, the CA that signed the server certificate
	IDScope          string // the device API's ID scope: devices register at URL/{IDScope}/registrations/{id}/register
	Emulator         *Emulator

	srv  *http.Server
	done chan struct{}
}

// Start runs an Emulator over HTTPS on addr (":0" or "127.0.0.1:0" picks
// a free port; URL and HostName carry the real one), keeping its state in
// dir, which it creates (0700) if needed:
//
//   - dir/ca.pem and dir/ca.key: a self-signed ECDSA P-256 CA, made once
//     and reused, that signs a fresh server certificate at each start for
//     localhost, 127.0.0.1, ::1, addr's host and opts.HostNames;
//   - dir/connection-string: the connection string (0600); its shared
//     access key is made once and reused unless opts.PrimaryKey is given,
//     and the file is rewritten with the current host name;
//   - dir/id-scope: the device API's ID scope, opts.IDScope when given,
//     else the one kept there, else DefaultIDScope;
//   - dir/emulator.db unless opts.DB is set.
//
// A service SAS token must be signed for one of the certificate's names
// (with or without the port) or for the address a connection came in on,
// whatever Host header the request carries.
//
// The server asks TLS clients for a certificate without requiring one:
// X.509 devices authenticate with theirs, checked against their
// enrollment by the handler.
//
// Slow and numerous clients cannot hold the server: a TLS handshake and
// a request's header must each arrive within opts.ReadTimeout, a body
// within opts.ReadTimeout once it is read (ServeHTTP), an answer be
// written within 30 s, and an idle connection is closed after 2
// minutes. At most opts.MaxConns connections are open at once (by
// default DefaultMaxConns, or half of what the open-file limit leaves
// once 96 files are set aside for the store and the rest of the process,
// and at least 8); one more waits for room, which is made by closing the
// connection that has waited longest (at least 250 ms) for its client: in
// its handshake, sending its header or a body, or idle. Connections whose
// request is being worked on or answered are not closed for room.
//
// ctx bounds the start only; the server runs until Close. The
// certificates follow the real clock whatever opts.Now says. The other
// options are New's. Errors say which file or address failed; bad options
// wrap ErrOptions. On error nothing is left running.
func Start(ctx context.Context, addr, dir string, opts Options) (*Server, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: the emulator needs a folder for its CA, key and store", ErrOptions)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("DPS emulator folder: %w", err)
	}
	// Certificates follow the real clock, whatever opts.Now says: the
	// clients check them against theirs.
	now := time.Now
	caCert, caKey, err := loadOrMakeCA(dir, now())
	if err != nil {
		return nil, err
	}
	keyName := opts.KeyName
	if keyName == "" {
		keyName = DefaultKeyName
	}
	csFile := filepath.Join(dir, FileConnectionString)
	if len(opts.PrimaryKey) == 0 {
		key, err := loadOrMakeKey(csFile)
		if err != nil {
			return nil, err
		}
		opts.PrimaryKey = key
	}
	if opts.DB == "" {
		opts.DB = filepath.Join(dir, FileDB)
	}
	scopeFile := filepath.Join(dir, FileIDScope)
	if opts.IDScope == "" {
		b, err := os.ReadFile(scopeFile)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			opts.IDScope = DefaultIDScope
		case err != nil:
			return nil, fmt.Errorf("DPS emulator ID scope: %w", err)
		default:
			opts.IDScope = strings.TrimSpace(string(b))
			if err := CheckIDScope(opts.IDScope); err != nil {
				return nil, fmt.Errorf("DPS emulator ID scope in %s (remove it for the default): %w", scopeFile, err)
			}
		}
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("DPS emulator: listen on %s: %w", addr, err)
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	if h, _, err := net.SplitHostPort(addr); err == nil && h != "" && net.ParseIP(h) == nil {
		host = h // a name such as localhost, as given
	}
	hostPort := net.JoinHostPort(host, port)
	// The connection string names the service by the first name it was
	// given that leads to it (--host localhost), rather than the address
	// it listens on: the Azure SDKs want a name.
	csHost := host
	if net.ParseIP(host) != nil {
		csHost = nameFor(ctx, host, opts.HostNames)
	}
	hostName := net.JoinHostPort(csHost, port)
	if port == "443" {
		hostName = csHost
		if strings.Contains(csHost, ":") {
			hostName = "[" + csHost + "]"
		}
	}

	names := append([]string{"localhost", "127.0.0.1", "::1", host}, opts.HostNames...)
	leaf, err := serverCertificate(caCert, caKey, names, now())
	if err != nil {
		ln.Close()
		return nil, err
	}
	// SAS tokens are checked against the names the certificate is for.
	opts.HostNames = names
	e, err := New(ctx, opts)
	if err != nil {
		ln.Close()
		return nil, err
	}
	cs := enroll.ConnectionString{HostName: hostName, KeyName: keyName, Key: opts.PrimaryKey}
	if err := atomicfile.Write(csFile, []byte(cs.Secret()+"\n"), 0o600); err != nil {
		ln.Close()
		e.Close()
		return nil, fmt.Errorf("DPS emulator connection string: %w", err)
	}
	if err := atomicfile.Write(scopeFile, []byte(e.IDScope()+"\n"), 0o644); err != nil {
		ln.Close()
		e.Close()
		return nil, fmt.Errorf("DPS emulator ID scope: %w", err)
	}
	log := e.log
	lim := newLimitListener(ln, maxConns(opts.MaxConns), func() { e.reclaimed.Add(1) })
	s := &Server{
		URL:              "https://" + hostPort,
		HostName:         hostName,
		ConnectionString: cs.Secret(),
		CAFile:           filepath.Join(dir, FileCA),
		IDScope:          e.IDScope(),
		Emulator:         e,
		srv: &http.Server{
			Handler:           e,
			TLSConfig:         &tls.Config{Certificates: []tls.Certificate{leaf}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert},
			ReadHeaderTimeout: e.readTO, // and the TLS handshake
			// Set again for each request; ServeHTTP moves it past the
			// latency of Faults.
			WriteTimeout: writeTimeout,
			IdleTimeout:  idleTimeout,
			ConnContext:  connContext,
			ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.ServeTLS(lim, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("DPS emulator stopped serving", keyErr, err.Error())
		}
	}()
	log.Info("DPS emulator serving", "url", s.URL, "max_conns", lim.max, "ca_file", s.CAFile, "connection_string", cs.String(), "id_scope", s.IDScope, "iot_hubs", strings.Join(e.IoTHubs(), ","))
	return s, nil
}

// Close stops the server, giving requests under way a few seconds, and
// closes the emulator's store.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = s.srv.Close()
	}
	<-s.done
	if cerr := s.Emulator.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close DPS emulator: %w", err)
	}
	return nil
}

// loadOrMakeCA reads dir's CA, or makes one when there is none.
func loadOrMakeCA(dir string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	certFile, keyFile := filepath.Join(dir, FileCA), filepath.Join(dir, FileCAKey)
	certPEM, err := os.ReadFile(certFile)
	if errors.Is(err, fs.ErrNotExist) {
		return makeCA(certFile, keyFile, now)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("DPS emulator CA: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("DPS emulator CA key (remove %s to make a new CA): %w", certFile, err)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("DPS emulator CA: %s holds no PEM certificate", certFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("DPS emulator CA: %s: %w", certFile, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, fmt.Errorf("DPS emulator CA key: %s holds no PEM key", keyFile)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("DPS emulator CA key: %s: %w", keyFile, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("DPS emulator CA: the key in %s is not %s's (remove both to make a new CA)", keyFile, certFile)
	}
	if now.After(cert.NotAfter) {
		return nil, nil, fmt.Errorf("DPS emulator CA: %s expired on %s (remove it and %s to make a new CA)", certFile, cert.NotAfter.Format(time.DateOnly), keyFile)
	}
	return cert, key, nil
}

func makeCA(certFile, keyFile string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("DPS emulator CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "zerotouch DPS emulator CA", Organization: []string{"zerotouch"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("DPS emulator CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("DPS emulator CA: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("DPS emulator CA key: %w", err)
	}
	// The key first: a certificate is only ever there with its key.
	if err := atomicfile.Write(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, nil, fmt.Errorf("DPS emulator CA key: %w", err)
	}
	if err := atomicfile.Write(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, fmt.Errorf("DPS emulator CA: %w", err)
	}
	return cert, key, nil
}

// serverCertificate makes a TLS server certificate for names (host
// names or IP addresses, ports dropped) signed by the CA.
func serverCertificate(ca *x509.Certificate, caKey crypto.Signer, names []string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("DPS emulator server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: "zerotouch DPS emulator"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(0, 0, 397),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	for _, n := range names {
		n = stripPort(strings.ToLower(strings.TrimSpace(n)))
		if n == "" {
			continue
		}
		if ip := net.ParseIP(n); ip != nil {
			if !ip.IsUnspecified() && !slices.ContainsFunc(tmpl.IPAddresses, ip.Equal) {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if !slices.Contains(tmpl.DNSNames, n) {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("DPS emulator server certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}, nil
}

// loadOrMakeKey reads the shared access key from the connection string
// file, or makes a 32-byte key when there is no file.
func loadOrMakeKey(file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, 32)
		rand.Read(key)
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("DPS emulator connection string: %w", err)
	}
	cs, err := enroll.ParseConnectionString(string(b))
	if err != nil {
		return nil, fmt.Errorf("DPS emulator connection string in %s (remove it to make a new key): %w", file, err)
	}
	return cs.Key, nil
}

func randomSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n.Add(n, big.NewInt(1))
}

// nameFor is the first of names that resolves to ip, else ip.
func nameFor(ctx context.Context, ip string, names []string) string {
	for _, n := range names {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		addrs, err := net.DefaultResolver.LookupHost(lctx, n)
		cancel()
		if err == nil && slices.Contains(addrs, ip) {
			return n
		}
	}
	return ip
}
