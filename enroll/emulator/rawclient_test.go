package emulator

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"zerotouch/enroll"
)

// rawClient speaks HTTP/1.1 to an emulator over TLS by hand, so that a
// test can send a header and then as much of a body as it likes, when
// it likes.
type rawClient struct {
	addr      string // host:port
	pool      *x509.CertPool
	connStr   enroll.ConnectionString
	idScope   string
	dialLimit time.Duration
}

func newRawClient(t testing.TB, url, caFile, connStr, idScope string) *rawClient {
	t.Helper()
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	cs, err := enroll.ParseConnectionString(connStr)
	if err != nil {
		t.Fatalf("connection string: %v", err)
	}
	return &rawClient{addr: strings.TrimPrefix(url, "https://"), pool: pool, connStr: cs, idScope: idScope, dialLimit: 10 * time.Second}
}

func rawClientFor(t testing.TB, s *Server) *rawClient {
	return newRawClient(t, s.URL, s.CAFile, s.ConnectionString, s.IDScope)
}

// token is a service SAS token from the connection string.
func (c *rawClient) token() string {
	return enroll.SASToken(c.connStr.HostName, c.connStr.KeyName, c.connStr.Key, time.Now().Add(time.Hour))
}

// dial opens a TLS connection, HTTP/1.1 only.
func (c *rawClient) dial() (*tls.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: c.dialLimit}, Config: &tls.Config{RootCAs: c.pool, NextProtos: []string{"http/1.1"}}}
	ctx, cancel := context.WithTimeout(context.Background(), c.dialLimit)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	return conn.(*tls.Conn), nil
}

// head is a request's header: Content-Length length (-1: chunked),
// Authorization auth when not "".
func (c *rawClient) head(method, path, auth string, length int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n", method, path, c.addr)
	if auth != "" {
		fmt.Fprintf(&b, "Authorization: %s\r\n", auth)
	}
	if length < 0 {
		b.WriteString("Transfer-Encoding: chunked\r\n")
	} else {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", length)
	}
	b.WriteString("\r\n")
	return b.String()
}

// devicePath is a device API path of the client's ID scope.
func (c *rawClient) devicePath(rest string) string {
	return "/" + c.idScope + "/registrations/" + rest + "?api-version=2021-06-01"
}

// servicePath is a service API path.
func servicePath(p string) string { return p + "?api-version=" + enroll.APIVersion }

// readAnswer reads one answer from conn.
func readAnswer(conn net.Conn) (response, error) {
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}, err
}

// closedAfter reports whether the server closed conn after its answer.
func closedAfter(conn net.Conn) bool {
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := conn.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}
