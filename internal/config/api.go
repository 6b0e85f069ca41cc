package config

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/wolfpack-ha/wolfpack/internal/stream"
)

// API is the [api] section: the admin API on TCP with TLS (docs/clusterd.md,
// "The remote admin API"). Listen is ADDRESS:PORT; CABundle the CAs that
// sign the clients' certificates (the cluster CA will do); Cert and Key the
// server's certificate and key. All four or none; none means the admin API
// is on the unix socket only.
type API struct {
	Listen   string `toml:"listen,omitempty"`
	CABundle string `toml:"ca_bundle,omitempty"`
	Cert     string `toml:"cert,omitempty"`
	Key      string `toml:"key,omitempty"`
}

// RemoteAPI is a validated [api] section, its files loaded.
type RemoteAPI struct {
	Listen netip.AddrPort
	// ClientCAs sign the clients' certificates.
	ClientCAs []*x509.Certificate
	// Cert is the server's certificate (its Leaf parsed) and key.
	Cert tls.Certificate
}

// validateAPI checks the [api] keys and loads the files; c.API stays nil
// when the section is empty.
func (f *File) validateAPI(c *Config, bad *problems) {
	a := f.API
	keys := []keyValue{{"api.listen", a.Listen}, {"api.ca_bundle", a.CABundle}, {"api.cert", a.Cert}, {"api.key", a.Key}}
	set, unset := setKeys(keys)
	switch {
	case len(set) == 0:
		return
	case len(unset) > 0:
		for _, k := range unset {
			bad.add(k, "missing: %s set, and the remote admin API needs all four of listen, ca_bundle, cert and key (or none)", strings.Join(set, " and "))
		}
		return
	}
	r := &RemoteAPI{}
	var err error
	if r.Listen, err = netip.ParseAddrPort(a.Listen); err != nil || r.Listen.Port() == 0 || r.Listen.Addr().Zone() != "" {
		bad.add("api.listen", "%q: want ADDRESS:PORT with an IP address and a port 1..65535 (\"10.0.0.1:7443\", \"[::]:7443\")", a.Listen)
	}
	for _, k := range keys[1:] {
		if _, err := os.Stat(k.v); err != nil {
			bad.add(k.key, "%v", err)
			return
		}
	}
	if r.ClientCAs, err = stream.ReadCABundle(a.CABundle); err != nil {
		bad.add("api.ca_bundle", "%v", strings.TrimPrefix(err.Error(), "stream: "))
	}
	if r.Cert, err = tls.LoadX509KeyPair(a.Cert, a.Key); err != nil {
		bad.add("api.cert", "%s with the key %s: %v", a.Cert, a.Key, strings.TrimPrefix(err.Error(), "tls: "))
	} else if eku := r.Cert.Leaf.ExtKeyUsage; len(eku) > 0 && !slices.Contains(eku, x509.ExtKeyUsageServerAuth) && !slices.Contains(eku, x509.ExtKeyUsageAny) {
		bad.add("api.cert", "%s is not a server certificate (no server authentication in its extended key usage; cluster ca server issues one)", a.Cert)
	}
	c.API = r
}
