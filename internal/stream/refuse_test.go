package stream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
)

// selfSigned is a stranger's certificate: it names node 2 of cluster
// "test" but signs itself.
func selfSigned(t *testing.T) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(NodeURI("test", 2))
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "stranger"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		URIs:         []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func tlsCert(id *Identity) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{id.Cert.Raw}, PrivateKey: id.Key}
}

func issue(t *testing.T, ca *CA, cluster string, id nodes.ID, notBefore, notAfter time.Time) tls.Certificate {
	ident, err := ca.issue(cluster, id, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return tlsCert(ident)
}

// client dials addr as a hand-made TLS client with certs, sends hello if
// not nil, and reads until the server ends the connection. It returns its
// local address, the remote the server logs.
func client(t *testing.T, addr string, certs []tls.Certificate, hello *Hello) string {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(raw, clientConfig(certs))
	if c.Handshake() == nil && hello != nil {
		b, err := hello.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		h, _ := Header{Version: 1, Type: TypeHello, Len: uint32(len(b))}.AppendBinary(nil)
		c.Write(append(h, b...))
	}
	for {
		if _, _, err := ReadFrame(c, 1<<20); err != nil {
			break
		}
	}
	return raw.LocalAddr().String()
}

// TestRefusals: each kind of stranger is refused by a mesh of node 1 with
// peers 2 and 3, counted under its reason and logged with its address.
func TestRefusals(t *testing.T) {
	ca := clusterCA(t)
	other, err := NewCA("test", 0)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	valid2 := issue(t, ca, "test", 2, now.Add(-time.Hour), now.Add(time.Hour))
	valid3 := issue(t, ca, "test", 3, now.Add(-time.Hour), now.Add(time.Hour))
	good := &Hello{MinVersion: 1, MaxVersion: 1, Cluster: testTag, Node: 2, Incarnation: 1}
	n := startMesh(t, creds(t, ca, 1), listen(t, ""), map[nodes.ID]string{2: "127.0.0.1:1", 3: "127.0.0.1:1"}, nil)
	addr := n.ln.Addr().String()
	for _, tc := range []struct {
		name   string
		certs  []tls.Certificate
		hello  *Hello
		reason Reason
	}{
		{"stranger, self-signed", []tls.Certificate{selfSigned(t)}, good, ReasonWrongCA},
		{"no certificate", nil, good, ReasonNoCert},
		{"another CA", []tls.Certificate{issue(t, other, "test", 2, now.Add(-time.Hour), now.Add(time.Hour))}, good, ReasonWrongCA},
		{"expired", []tls.Certificate{issue(t, ca, "test", 2, now.Add(-2*time.Hour), now.Add(-time.Hour))}, good, ReasonExpired},
		{"node 3 says it is node 2", []tls.Certificate{valid3}, good, ReasonWrongNode},
		{"not a peer", []tls.Certificate{issue(t, ca, "test", 9, now.Add(-time.Hour), now.Add(time.Hour))}, good, ReasonWrongNode},
		{"certificate of another cluster", []tls.Certificate{issue(t, ca, "prod", 2, now.Add(-time.Hour), now.Add(time.Hour))}, good, ReasonWrongCluster},
		{"hello of another cluster", []tls.Certificate{valid2}, &Hello{MinVersion: 1, MaxVersion: 1, Cluster: testTag + 1, Node: 2, Incarnation: 1}, ReasonWrongCluster},
		{"version 2 only", []tls.Certificate{valid2}, &Hello{MinVersion: 2, MaxVersion: 3, Cluster: testTag, Node: 2, Incarnation: 1}, ReasonBadVersion},
		{"malformed hello", []tls.Certificate{valid2}, nil, ReasonBadHello},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := n.Counters()
			remote := ""
			if tc.reason == ReasonBadHello {
				remote = badHelloClient(t, addr, tc.certs)
			} else {
				remote = client(t, addr, tc.certs, tc.hello)
			}
			if !wait(5*time.Second, func() bool { return n.Counters().Refused[tc.reason] == before.Refused[tc.reason]+1 }) {
				t.Fatalf("refused %v, before %v: want one more %q\n%s", n.Counters().Refused, before.Refused, tc.reason, n.log)
			}
			after := n.Counters()
			if after.RefusedTotal() != before.RefusedTotal()+1 || after.Connections != 0 || after.Received != 0 {
				t.Errorf("counters %+v: want exactly one refusal, no connection", after)
			}
			if l := n.log.line("stream connection refused", "remote="+remote+" ", `reason="`+tc.reason.String()+`"`); l == "" {
				t.Errorf("no log line naming %s and %q:\n%s", remote, tc.reason, n.log)
			}
		})
	}
}

// clientConfig presents certs[0] whatever CAs the server asks for (Go's
// client would send nothing that does not match them; a stranger might).
func clientConfig(certs []tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if len(certs) == 0 {
				return &tls.Certificate{}, nil
			}
			return &certs[0], nil
		},
	}
}

// badHelloClient sends a hello frame whose payload is 3 bytes.
func badHelloClient(t *testing.T, addr string, certs []tls.Certificate) string {
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	c := tls.Client(raw, clientConfig(certs))
	h, _ := Header{Version: 1, Type: TypeHello, Len: 3}.AppendBinary(nil)
	c.Write(append(h, 1, 1, 0))
	for {
		if _, _, err := ReadFrame(c, 1<<20); err != nil {
			break
		}
	}
	return raw.LocalAddr().String()
}

// TestRefusedOutgoing: node 1 dials the address it has for node 2, and
// node 3 answers there: node 1 refuses it (wrong node id) and counts it.
// Node 3 sees the TLS alert and counts no refusal of its own.
func TestRefusedOutgoing(t *testing.T) {
	ca := clusterCA(t)
	ln3 := listen(t, "")
	n3 := startMesh(t, creds(t, ca, 3), ln3, map[nodes.ID]string{1: "127.0.0.1:1"}, nil)
	n1 := startMesh(t, creds(t, ca, 1), listen(t, ""), map[nodes.ID]string{2: ln3.Addr().String()}, nil)
	n1.Send(2, 16, []byte("for node 2"))
	if !wait(5*time.Second, func() bool { return n1.Counters().Refused[ReasonWrongNode] == 1 }) {
		t.Fatalf("node 1 counters %+v\n%s", n1.Counters(), n1.log)
	}
	if l := n1.log.line("stream connection refused", "remote="+ln3.Addr().String(), `reason="wrong node id"`, "outgoing=true"); l == "" {
		t.Errorf("no refusal logged:\n%s", n1.log)
	}
	if c := n3.Counters(); c.Received != 0 || c.Connections != 0 {
		t.Errorf("node 3 accepted the connection: %+v", c)
	}
	wait(5*time.Second, func() bool { return n1.Counters().Unreachable == 1 })
	if c := n1.Counters(); c.Sent != 0 || c.Unreachable != 1 {
		t.Errorf("node 1 counters %+v: the frame must be dropped as unreachable", c)
	}
}

// TestCARotation: the procedure of docs/streams.md. With both CAs in every
// bundle, a node whose certificate the new CA issued and one the old CA
// issued talk; once the old CA leaves the bundle, the old certificate is
// refused.
func TestCARotation(t *testing.T) {
	oldCA := clusterCA(t)
	newCA, err := NewCA("test", 0)
	if err != nil {
		t.Fatal(err)
	}
	ln1, ln2 := listen(t, ""), listen(t, "")
	a := startMesh(t, creds(t, oldCA, 1, oldCA, newCA), ln1, map[nodes.ID]string{2: ln2.Addr().String()}, nil)
	b := startMesh(t, creds(t, newCA, 2, oldCA, newCA), ln2, map[nodes.ID]string{1: ln1.Addr().String()}, nil)
	connect(t, []*node{a, b})
	b.Close()
	b = startMesh(t, creds(t, newCA, 2, newCA), listen(t, ln2.Addr().String()), map[nodes.ID]string{1: ln1.Addr().String()}, nil)
	// Node 1 may first write into its connection to the closed node.
	if !wait(5*time.Second, func() bool {
		a.Send(2, 16, nil)
		time.Sleep(20 * time.Millisecond)
		return b.Counters().Refused[ReasonWrongCA] >= 1
	}) {
		t.Fatalf("the new-CA-only node accepted the old certificate: %+v", b.Counters())
	}
}
