package stream

import (
	"bytes"
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
	"math/big"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// A node's identity is a URI subject alternative name in its certificate:
//
//	wolfpack://<cluster>/node/<id>
//
// with <cluster> the cluster's name (config's "cluster") and <id> the node
// id in decimal, 1..64. A cluster CA carries wolfpack://<cluster>. Nothing
// else in a certificate names a node: the subject's common name is for
// people reading `openssl x509 -text`.
const uriScheme = "wolfpack"

// Default validities of NewCA and Issue.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultNodeValidity = 365 * 24 * time.Hour
)

// clockSkew backdates NotBefore, so a certificate issued on one node is
// already valid on a node whose clock is a little behind.
const clockSkew = 5 * time.Minute

// CA is a cluster certificate authority: a self-signed ECDSA P-256
// certificate named after the cluster, and its key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Cluster is the cluster name the CA was made for.
	Cluster string
}

// Identity is a node's certificate and private key.
type Identity struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NodeURI is the URI a node's certificate carries.
func NodeURI(cluster string, id nodes.ID) string {
	return (&url.URL{Scheme: uriScheme, Host: cluster, Path: "/node/" + strconv.Itoa(int(id))}).String()
}

// CheckClusterName reports whether name can stand in a certificate's URI:
// 1..253 characters of letters, digits, '-', '_' and '.', without an empty
// dot-separated label.
func CheckClusterName(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("cluster name %q: want 1..253 characters", name)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return fmt.Errorf("cluster name %q: empty label between dots", name)
		}
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("cluster name %q: character %q (want letters, digits, '-', '_', '.')", name, c)
		}
	}
	return nil
}

// NewCA creates a cluster CA valid from now for validity (zero:
// DefaultCAValidity).
func NewCA(cluster string, validity time.Duration) (*CA, error) {
	if validity <= 0 {
		validity = DefaultCAValidity
	}
	now := time.Now()
	return newCA(cluster, now.Add(-clockSkew), now.Add(validity))
}

func newCA(cluster string, notBefore, notAfter time.Time) (*CA, error) {
	if err := CheckClusterName(cluster); err != nil {
		return nil, fmt.Errorf("stream: new CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("stream: new CA: generate key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, fmt.Errorf("stream: new CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"wolfpack"}, CommonName: cluster + " cluster CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{{Scheme: uriScheme, Host: cluster}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("stream: new CA for cluster %s: %w", cluster, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("stream: new CA for cluster %s: parse: %w", cluster, err)
	}
	return &CA{Cert: cert, Key: key, Cluster: cluster}, nil
}

// Issue creates a key for node id and a certificate for it signed by the
// CA, valid from now for validity (zero: DefaultNodeValidity, and never
// past the CA's own expiry). The certificate serves both ends of a
// connection (extended key usages server and client authentication).
func (ca *CA) Issue(id nodes.ID, validity time.Duration) (*Identity, error) {
	if validity <= 0 {
		validity = DefaultNodeValidity
	}
	notBefore, notAfter := ca.validity(validity)
	return ca.issue(ca.Cluster, id, notBefore, notAfter)
}

// validity is a certificate's validity from now (backdated by clockSkew)
// for d, never past the CA's own expiry.
func (ca *CA) validity(d time.Duration) (notBefore, notAfter time.Time) {
	now := time.Now()
	notAfter = now.Add(d)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	return now.Add(-clockSkew), notAfter
}

// issue signs a certificate naming any cluster (tests make wrong ones).
func (ca *CA) issue(cluster string, id nodes.ID, notBefore, notAfter time.Time) (*Identity, error) {
	if !id.Valid() {
		return nil, fmt.Errorf("stream: issue a node certificate: node id %d out of range 1..%d", id, nodes.Max)
	}
	u, _ := url.Parse(NodeURI(cluster, id))
	return ca.sign(fmt.Sprintf("node %d", id), &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{"wolfpack"}, CommonName: fmt.Sprintf("%s node %d", cluster, id)},
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{u},
	})
}

// sign creates a key and a certificate for it from tmpl (its serial number
// filled in) signed by the CA; what names the certificate in errors.
func (ca *CA) sign(what string, tmpl *x509.Certificate) (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("stream: issue a certificate for %s: generate key: %w", what, err)
	}
	if tmpl.SerialNumber, err = serialNumber(); err != nil {
		return nil, fmt.Errorf("stream: issue a certificate for %s: %w", what, err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("stream: issue a certificate for %s: %w", what, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("stream: issue a certificate for %s: parse: %w", what, err)
	}
	return &Identity{Cert: cert, Key: key}, nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return n, nil
}

// certIdentity returns the cluster and node id a certificate names; a CA
// certificate names a cluster and node 0.
func certIdentity(c *x509.Certificate) (cluster string, id nodes.ID, err error) {
	var found []string
	for _, u := range c.URIs {
		if u.Scheme != uriScheme {
			continue
		}
		found = append(found, u.String())
		switch {
		case u.Path == "" && c.IsCA:
			return u.Host, 0, nil
		case strings.HasPrefix(u.Path, "/node/") && !c.IsCA:
			n, perr := strconv.ParseUint(strings.TrimPrefix(u.Path, "/node/"), 10, 32)
			if perr != nil || !nodes.ID(n).Valid() {
				return "", 0, fmt.Errorf("URI %s does not name a node id 1..%d", u, nodes.Max)
			}
			return u.Host, nodes.ID(n), nil
		}
	}
	if found == nil {
		return "", 0, errors.New("no wolfpack:// URI in the certificate")
	}
	return "", 0, fmt.Errorf("URIs %v name no cluster (CA) or node (node certificate)", found)
}

// WritePEM saves a certificate to certPath (mode 0644) and, if key is not
// nil, its key to keyPath (PKCS #8, mode 0600).
func WritePEM(certPath string, cert *x509.Certificate, keyPath string, key crypto.Signer) error {
	cb := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := os.WriteFile(certPath, cb, 0o644); err != nil {
		return fmt.Errorf("stream: save certificate: %w", err)
	}
	if key == nil {
		return nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("stream: save key %s: %w", keyPath, err)
	}
	kb := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(keyPath, kb, 0o600); err != nil {
		return fmt.Errorf("stream: save key: %w", err)
	}
	return nil
}

// Save writes the CA's certificate and key.
func (ca *CA) Save(certPath, keyPath string) error {
	return WritePEM(certPath, ca.Cert, keyPath, ca.Key)
}

// Save writes the node's certificate and key.
func (n *Identity) Save(certPath, keyPath string) error {
	return WritePEM(certPath, n.Cert, keyPath, n.Key)
}

// readCerts reads every CERTIFICATE block of a PEM file; anything else in
// it is an error.
func readCerts(path, what string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("stream: %s: %w", what, err)
	}
	var certs []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("stream: %s %s: PEM block %d is %q, want CERTIFICATE", what, path, len(certs)+1, blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("stream: %s %s: certificate %d: %w", what, path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("stream: %s %s: not PEM (%d bytes that are not a PEM block)", what, path, len(bytes.TrimSpace(rest)))
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("stream: %s %s: not PEM (no CERTIFICATE block)", what, path)
	}
	return certs, nil
}

// ReadCABundle reads a CA bundle: one or more CERTIFICATE blocks. It does
// not check them; NewCredentials does.
func ReadCABundle(path string) ([]*x509.Certificate, error) {
	return readCerts(path, "CA bundle")
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("stream: key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("stream: key %s: not PEM", path)
	}
	var k any
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("stream: key %s: PEM block %q, want PRIVATE KEY", path, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("stream: key %s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("stream: key %s: a %T cannot sign", path, k)
	}
	return s, nil
}

// LoadCA reads a CA written by CA.Save.
func LoadCA(certPath, keyPath string) (*CA, error) {
	certs, err := readCerts(certPath, "CA certificate")
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("stream: CA certificate %s: %d certificates, want 1", certPath, len(certs))
	}
	c := certs[0]
	cluster, _, err := certIdentity(c)
	if err != nil || !c.IsCA {
		return nil, fmt.Errorf("stream: CA certificate %s: not a wolfpack cluster CA (%v)", certPath, err)
	}
	key, err := readKey(keyPath)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(key.Public(), c.PublicKey) {
		return nil, fmt.Errorf("stream: CA key %s does not belong to the certificate %s", keyPath, certPath)
	}
	return &CA{Cert: c, Key: key, Cluster: cluster}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// Credentials are what a node presents and trusts on its streams: its
// certificate and key, and the CA bundle that every peer's certificate
// must chain to. The bundle may hold several CAs of the same cluster, so
// that a CA can be replaced without a cluster-wide outage
// (docs/streams.md, "Rotating the CA").
type Credentials struct {
	Cluster string
	Node    nodes.ID
	// CAs is the bundle, in file order.
	CAs  []*x509.Certificate
	pool *x509.CertPool
	cert tls.Certificate
}

// Certificate is the node's own certificate.
func (c *Credentials) Certificate() *x509.Certificate { return c.cert.Leaf }

// NewCredentials checks that id is a certificate for node self of cluster,
// signed by one of cas, valid now, and that every CA is cluster's.
func NewCredentials(cluster string, self nodes.ID, cas []*x509.Certificate, id *Identity) (*Credentials, error) {
	return newCredentials(cluster, self, cas, id, "CA bundle", "node certificate")
}

func newCredentials(cluster string, self nodes.ID, cas []*x509.Certificate, id *Identity, caName, certName string) (*Credentials, error) {
	if len(cas) == 0 {
		return nil, fmt.Errorf("stream: %s: no CA certificate", caName)
	}
	pool := x509.NewCertPool()
	for i, ca := range cas {
		cl, _, err := certIdentity(ca)
		switch {
		case err != nil || !ca.IsCA:
			return nil, fmt.Errorf("stream: %s: certificate %d (%s) is not a wolfpack cluster CA", caName, i+1, ca.Subject.CommonName)
		case cl != cluster:
			return nil, fmt.Errorf("stream: %s: certificate %d is the CA of cluster %q, not %q (wrong cluster)", caName, i+1, cl, cluster)
		}
		pool.AddCert(ca)
	}
	c := id.Cert
	cl, nid, err := certIdentity(c)
	switch {
	case err != nil:
		return nil, fmt.Errorf("stream: %s: %w", certName, err)
	case c.IsCA:
		return nil, fmt.Errorf("stream: %s is a CA certificate, not a node's", certName)
	case cl != cluster:
		return nil, fmt.Errorf("stream: %s is for cluster %q, not %q (wrong cluster)", certName, cl, cluster)
	case nid != self:
		return nil, fmt.Errorf("stream: %s is for node %d, not %d", certName, nid, self)
	case !publicKeysEqual(id.Key.Public(), c.PublicKey):
		return nil, fmt.Errorf("stream: the key does not belong to the %s", certName)
	}
	now := time.Now()
	if now.After(c.NotAfter) {
		return nil, fmt.Errorf("stream: %s expired at %s", certName, c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return nil, fmt.Errorf("stream: %s is not valid before %s", certName, c.NotBefore.UTC().Format(time.RFC3339))
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) {
			return nil, fmt.Errorf("stream: %s is not signed by a CA in the %s", certName, caName)
		}
		return nil, fmt.Errorf("stream: %s: %w", certName, err)
	}
	return &Credentials{
		Cluster: cluster,
		Node:    self,
		CAs:     cas,
		pool:    pool,
		cert:    tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: id.Key, Leaf: c},
	}, nil
}

// LoadCredentials reads a node's credentials from three PEM files: the CA
// bundle (one or more CERTIFICATE blocks), the node's certificate and its
// key. Every error names the file and the problem: missing, not PEM, not
// signed by a CA in the bundle, expired, wrong cluster, wrong node.
func LoadCredentials(cluster string, self nodes.ID, caBundle, certFile, keyFile string) (*Credentials, error) {
	cas, err := readCerts(caBundle, "CA bundle")
	if err != nil {
		return nil, err
	}
	certs, err := readCerts(certFile, "node certificate")
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("stream: node certificate %s: %d certificates, want 1", certFile, len(certs))
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(key.Public(), certs[0].PublicKey) {
		return nil, fmt.Errorf("stream: key %s does not belong to the node certificate %s", keyFile, certFile)
	}
	return newCredentials(cluster, self, cas, &Identity{Cert: certs[0], Key: key}, "CA bundle "+caBundle, "node certificate "+certFile)
}
