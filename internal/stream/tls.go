package stream

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// Reason is why a connection was refused.
type Reason int

// Reasons a Mesh refuses a connection, during the TLS handshake or the
// hello exchange.
const (
	// ReasonNone: not a refusal (the peer refused us, the network failed).
	ReasonNone Reason = iota
	// ReasonNoCert: the client presented no certificate.
	ReasonNoCert
	// ReasonWrongCA: the certificate does not chain to a CA in the bundle.
	ReasonWrongCA
	// ReasonExpired: the certificate is expired or not yet valid.
	ReasonExpired
	// ReasonWrongNode: the certificate or the hello names a node that is
	// not a configured peer, not the one dialled, or not each other.
	ReasonWrongNode
	// ReasonWrongCluster: the certificate or the hello names another
	// cluster.
	ReasonWrongCluster
	// ReasonBadVersion: the hello's versions and ours have none in common.
	ReasonBadVersion
	// ReasonBadHello: the first frame is not a well-formed hello.
	ReasonBadHello
	// ReasonBadCert: any other certificate problem (no wolfpack URI,
	// wrong key usage).
	ReasonBadCert
	numReasons
)

var reasonNames = [...]string{"none", "no certificate", "wrong CA", "expired certificate", "wrong node id", "wrong cluster", "bad version", "bad hello", "bad certificate"}

func (r Reason) String() string {
	if r >= 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// RefusedError is a connection this node refused.
type RefusedError struct {
	Reason Reason
	Detail string
}

func (e *RefusedError) Error() string { return "refused: " + e.Reason.String() + ": " + e.Detail }

func refused(r Reason, format string, args ...any) error {
	return &RefusedError{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// ServerConfig is the TLS configuration of a listening node: TLS 1.3
// only, a client certificate required and verified against the CA bundle,
// and the certificate's node id one of peers.
func (c *Credentials) ServerConfig(peers nodes.Set) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    c.pool,
		// Nothing resumes a session: no tickets to send.
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := c.checkPeer(cs, peers, x509.ExtKeyUsageClientAuth)
			return err
		},
	}
}

// ClientConfig is the TLS configuration of a node dialling peer: TLS 1.3
// only, its certificate presented, and the server's certificate verified
// against the CA bundle and required to name peer.
//
// Go's own server verification checks a DNS name, which these
// certificates do not carry; InsecureSkipVerify turns only that off, and
// VerifyConnection does the whole verification (chain, validity, key
// usage, cluster, node id) instead, as SPIFFE's Go library does.
func (c *Credentials) ClientConfig(peer nodes.ID) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{c.cert},
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := c.checkPeer(cs, nodes.SetOf(peer), x509.ExtKeyUsageServerAuth)
			return err
		},
	}
}

// checkPeer verifies the peer's chain against the bundle (a second time on
// a server, after Go's) and returns the node id its certificate names,
// which must be in allowed.
func (c *Credentials) checkPeer(cs tls.ConnectionState, allowed nodes.Set, usage x509.ExtKeyUsage) (nodes.ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return 0, refused(ReasonNoCert, "the peer presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, ic := range cs.PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.pool, Intermediates: inter, CurrentTime: time.Now(), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return 0, classifyVerify(leaf, err)
	}
	cluster, id, err := certIdentity(leaf)
	switch {
	case err != nil:
		return 0, refused(ReasonBadCert, "certificate %q: %v", leaf.Subject.CommonName, err)
	case cluster != c.Cluster:
		return 0, refused(ReasonWrongCluster, "certificate of node %d of cluster %q, this is cluster %q", id, cluster, c.Cluster)
	case !allowed.Has(id):
		return 0, refused(ReasonWrongNode, "certificate of node %d, want one of %v", id, allowed)
	}
	return id, nil
}

func classifyVerify(leaf *x509.Certificate, err error) error {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return refused(ReasonWrongCA, "certificate %q (issuer %q) is not signed by a CA in the bundle", leaf.Subject.CommonName, leaf.Issuer.CommonName)
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return refused(ReasonExpired, "certificate %q is valid %s..%s only", leaf.Subject.CommonName,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return refused(ReasonBadCert, "certificate %q: %v", leaf.Subject.CommonName, err)
}

// refusalOf names the reason for a failed handshake when this node refused
// it, or ReasonNone when the peer or the network ended it.
func refusalOf(err error) (Reason, error) {
	var re *RefusedError
	if errors.As(err, &re) {
		return re.Reason, re
	}
	var ve *tls.CertificateVerificationError
	if errors.As(err, &ve) && len(ve.UnverifiedCertificates) > 0 {
		e := classifyVerify(ve.UnverifiedCertificates[0], ve.Err)
		return e.(*RefusedError).Reason, e
	}
	// Go's server reports a missing client certificate only by this
	// message (TestRefusals pins it).
	if strings.Contains(err.Error(), "didn't provide a certificate") {
		return ReasonNoCert, refused(ReasonNoCert, "the client presented no certificate")
	}
	return ReasonNone, err
}

// isBadRecord reports whether err is this side's TLS refusing a record
// that failed authentication: tampered, replayed, reordered or cut (Go
// sends the bad_record_mac alert and reports it as a local error).
func isBadRecord(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "local error" && strings.Contains(op.Err.Error(), "bad record MAC")
}
