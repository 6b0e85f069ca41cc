package daemon

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/internal/stream"
)

// tlsCert is an identity as crypto/tls takes it.
func tlsCert(id *stream.Identity) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{id.Cert.Raw}, PrivateKey: id.Key, Leaf: id.Cert}
}

// expiredClient is an operator's client certificate signed by ca that
// expired an hour ago.
func expiredClient(t *testing.T, ca *stream.CA) tls.Certificate {
	t.Helper()
	id, err := ca.IssueClient("old", "operator", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *id.Cert
	tmpl.SerialNumber = big.NewInt(2)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.Cert, id.Key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tlsCert(&stream.Identity{Cert: c, Key: id.Key})
}

// TestRemoteAPI: the admin API on TCP with TLS, against a running daemon.
// A client without a certificate, with one from another CA or with an
// expired one is refused at the handshake; a read-only client reads but
// its write is refused naming its role, the database unchanged; an
// operator's write commits; a certificate naming no role (a node's, from
// the same CA) is refused with 403 saying so.
func TestRemoteAPI(t *testing.T) {
	start := time.Now()
	c := newTestCluster(t, 1, 1)
	srv, err := c.ca.IssueServer([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c.remoteAPI = &RemoteAPI{Listen: addr, ClientCAs: []*x509.Certificate{c.ca.Cert}, Cert: tlsCert(srv)}
	c.start(1)
	c.waitMembers(5*time.Second, []int{1}, 1)

	roots := x509.NewCertPool()
	roots.AddCert(c.ca.Cert)
	client := func(certs ...tls.Certificate) *clusterapi.Client {
		cl, err := clusterapi.NewRemoteClient("https://"+addr, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, Certificates: certs})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	issue := func(ca *stream.CA, name, role string) tls.Certificate {
		id, err := ca.IssueClient(name, role, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return tlsCert(id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	write := clusterapi.Tx{Ops: []clusterapi.Op{{Op: "create", Kind: "group", Name: "web"}}}

	other, err := stream.NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		alert string
	}{
		{"no certificate", nil, "certificate required"},
		{"another CA's certificate", []tls.Certificate{issue(other, "mallory", "operator")}, "unknown certificate authority"},
		{"an expired certificate", []tls.Certificate{expiredClient(t, c.ca)}, "expired certificate"},
	} {
		_, _, err := client(tc.certs...).Status(ctx)
		var se *clusterapi.StatusError
		if err == nil || errors.As(err, &se) || !strings.Contains(err.Error(), tc.alert) {
			t.Errorf("%s: %v, want the handshake refused (%q)", tc.name, err, tc.alert)
		}
	}

	// The read-only client's files, loaded as the CLI loads them.
	dir := t.TempDir()
	alice, err := c.ca.IssueClient("alice", "read-only", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := alice.Save(filepath.Join(dir, "alice.pem"), filepath.Join(dir, "alice.key")); err != nil {
		t.Fatal(err)
	}
	if err := c.ca.Save(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	tc, err := clusterapi.ClientTLS(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "alice.pem"), filepath.Join(dir, "alice.key"))
	if err != nil {
		t.Fatal(err)
	}
	ro, err := clusterapi.NewRemoteClient("https://"+addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if st, _, err := ro.Status(ctx); err != nil || st.Node != 1 {
		t.Fatalf("read-only status: %+v, %v", st, err)
	}
	before, err := ro.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ro.Commit(ctx, write)
	var se *clusterapi.StatusError
	if !errors.As(err, &se) || se.Code != 403 || se.ErrCode != clusterapi.CodeForbidden || !strings.Contains(se.Message, "needs the operator role; this caller's is read-only") {
		t.Errorf("read-only write: %v, want 403 naming the roles", err)
	}
	if after, err := ro.Info(ctx); err != nil || after.Seq != before.Seq {
		t.Errorf("after the refused write: %+v, %v; want seq %d", after, err, before.Seq)
	}
	if _, err := ro.Get(ctx, "group", "web", false); !errors.As(err, &se) || se.Code != 404 {
		t.Errorf("the refused write's group: %v, want 404", err)
	}

	op := client(issue(c.ca, "bob", "operator"))
	if _, err := op.Commit(ctx, write); err != nil {
		t.Fatalf("operator write: %v", err)
	}
	if _, err := ro.Get(ctx, "group", "web", false); err != nil {
		t.Errorf("the operator's group, read back: %v", err)
	}

	node, err := c.ca.Issue(1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = client(tlsCert(node)).Status(ctx)
	if !errors.As(err, &se) || se.Code != 403 || !strings.Contains(se.Message, "names no role") || !strings.Contains(se.Message, "want operator or read-only") {
		t.Errorf("a certificate without a role: %v, want 403 saying so", err)
	}
	t.Logf("wall time %v", time.Since(start).Round(time.Millisecond))
}
