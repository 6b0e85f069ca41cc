package stream

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"time"
)

// The admin API's certificates (docs/clusterd.md, "The remote admin API")
// are signed by a cluster CA too, but name no node: a client's names a
// person or a program (the subject's common name) and its role (the
// subject's organization, as Kubernetes names a user's groups); a
// server's names the host names and addresses clients dial.

// DefaultClientValidity is IssueClient's and IssueServer's default.
const DefaultClientValidity = 365 * 24 * time.Hour

// IssueClient creates a key and an admin API client certificate for name
// with role as its subject's organization, signed by the CA, valid from
// now for validity (zero: DefaultClientValidity; never past the CA's
// expiry). Its only extended key usage is client authentication.
func (ca *CA) IssueClient(name, role string, validity time.Duration) (*Identity, error) {
	if name == "" || role == "" {
		return nil, fmt.Errorf("stream: issue a client certificate: want a name and a role (got %q, %q)", name, role)
	}
	if validity <= 0 {
		validity = DefaultClientValidity
	}
	notBefore, notAfter := ca.validity(validity)
	return ca.sign("client "+name, &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{role}, CommonName: name},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// IssueServer creates a key and an admin API server certificate for hosts
// (host names and IP addresses, as clients dial them), signed by the CA,
// valid from now for validity (zero: DefaultClientValidity; never past
// the CA's expiry). Its only extended key usage is server authentication.
func (ca *CA) IssueServer(hosts []string, validity time.Duration) (*Identity, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("stream: issue a server certificate: no host name or address")
	}
	if validity <= 0 {
		validity = DefaultClientValidity
	}
	notBefore, notAfter := ca.validity(validity)
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"wolfpack"}, CommonName: hosts[0]},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.sign("server "+hosts[0], tmpl)
}
