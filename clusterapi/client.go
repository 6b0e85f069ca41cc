package clusterapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/wolfpack-ha/wolfpack/internal/stream"
)

// Client talks to one daemon's admin API, on its unix socket (NewClient)
// or on TCP with TLS (NewRemoteClient); it keeps its connections (one
// Client per simulated user in a benchmark).
type Client struct {
	// Socket is the unix socket; empty for a remote client.
	Socket string
	base   string // what request paths are appended to
	where  string // the socket or the URL, for errors
	hc     *http.Client
}

// NewClient returns a client of the admin API on socket.
func NewClient(socket string) *Client {
	return &Client{Socket: socket, base: "http://clusterd", where: socket, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 4,
	}}}
}

// NewRemoteClient returns a client of the admin API on TCP with TLS at
// rawURL, https://HOST:PORT (docs/clusterd.md, "The remote admin API");
// tc is ClientTLS's.
func NewRemoteClient(rawURL string, tc *tls.Config) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("admin API URL %q: want https://HOST:PORT", rawURL)
	}
	base := "https://" + u.Host
	return &Client{base: base, where: base, hc: &http.Client{Transport: &http.Transport{
		TLSClientConfig:     tc,
		MaxIdleConnsPerHost: 4,
	}}}, nil
}

// ClientTLS loads what a remote client needs: caFile, the CAs that sign the
// servers' certificates, and the client's own certificate and key (PEM).
func ClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cas, err := stream.ReadCABundle(caFile)
	if err != nil {
		return nil, fmt.Errorf("admin API client: %s", strings.TrimPrefix(err.Error(), "stream: "))
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("admin API client: certificate %s, key %s: %s", certFile, keyFile, strings.TrimPrefix(err.Error(), "tls: "))
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{cert}}, nil
}

// Close drops the client's idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }
