package stream

import (
	"crypto/x509"
	"testing"
	"time"
)

// The admin API's certificates verify against the CA for their one use
// only, name what they are for, and never outlive the CA.
func TestIssueAdminCertificates(t *testing.T) {
	ca, err := NewCA("test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cl, err := ca.IssueClient("alice", "read-only", 0)
	if err != nil {
		t.Fatal(err)
	}
	if cl.Cert.Subject.CommonName != "alice" || len(cl.Cert.Subject.Organization) != 1 || cl.Cert.Subject.Organization[0] != "read-only" {
		t.Errorf("client subject %v, want CN=alice, O=read-only", cl.Cert.Subject)
	}
	if !cl.Cert.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("client expires %v, want the CA's %v", cl.Cert.NotAfter, ca.Cert.NotAfter)
	}
	if _, err := cl.Cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate as a client: %v", err)
	}
	if _, err := cl.Cert.Verify(x509.VerifyOptions{Roots: pool}); err == nil {
		t.Error("client certificate verified as a server's")
	}
	srv, err := ca.IssueServer([]string{"node1.example", "10.0.0.1"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"node1.example", "10.0.0.1"} {
		if _, err := srv.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: h}); err != nil {
			t.Errorf("server certificate for %s: %v", h, err)
		}
	}
	if _, err := srv.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "10.0.0.2"}); err == nil {
		t.Error("server certificate verified for an address it does not name")
	}
	if _, err := ca.IssueClient("", "operator", 0); err == nil {
		t.Error("a client certificate without a name was issued")
	}
	if _, err := ca.IssueServer(nil, 0); err == nil {
		t.Error("a server certificate without a host was issued")
	}
}
