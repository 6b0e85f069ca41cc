package dnsupdate_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/wolfpack-ha/wolfpack/internal/nstest"
	"github.com/wolfpack-ha/wolfpack/net/dnsupdate"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

const (
	zone    = "example.test."
	server  = "10.77.0.53"
	keyName = "wolfpack-key."
)

// knot starts knotd in its own namespace with a zone that takes updates
// signed with a fresh key, and returns the key's secret.
func knot(t *testing.T, rig *nstest.Rig) string {
	nstest.RequireCommand(t, "knotd", "knot")
	nstest.RequireCommand(t, "kdig", "knot-dnsutils")
	ns := rig.Node("dns", server+"/24")
	dir := t.TempDir()
	secret := make([]byte, 32)
	rand.Read(secret)
	b64 := base64.StdEncoding.EncodeToString(secret)
	conf := fmt.Sprintf(`server:
    rundir: "%[1]s"
    listen: %[2]s@53
log:
  - target: stderr
    any: info
database:
    storage: "%[1]s/db"
key:
  - id: %[3]s
    algorithm: hmac-sha256
    secret: %[4]s
acl:
  - id: update
    key: %[3]s
    action: update
template:
  - id: default
    storage: "%[1]s"
    file: "%%s.zone"
zone:
  - domain: %[5]s
    acl: update
    zonefile-sync: -1
`, dir, server, keyName, b64, zone)
	zonefile := fmt.Sprintf(`$ORIGIN %s
$TTL 60
@   SOA ns1 hostmaster 1 3600 600 86400 60
@   NS  ns1
ns1 A   %s
`, zone, server)
	for name, text := range map[string]string{"knot.conf": conf, "example.test.zone": zonefile} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "knotd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	if _, err := ns.Start(logf, logf, "knotd", "-c", filepath.Join(dir, "knot.conf")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("knotd's log:\n%s", b)
		}
	})
	// Up when it answers for the zone's SOA.
	err = nstest.WaitFor(t.Context(), 10*time.Second, func() (bool, error) {
		out, err := ns.Run(t.Context(), "kdig", "+short", "+timeout=1", "+retry=0", "@"+server, zone, "SOA")
		return err == nil && strings.Contains(string(out), "hostmaster"), nil
	})
	if err != nil {
		t.Fatalf("knotd did not answer: %v", err)
	}
	return b64
}

// The name is registered with the key, replaced by the same owner, left
// alone for another owner, removed on deregister, and an update signed
// with a wrong secret is refused with a TSIG error.
func TestIntegrationDynamicDNS(t *testing.T) {
	rig := nstest.New(t)
	a := rig.Node("a", "10.77.0.1/24")
	cl := rig.Node("cl", "10.77.0.100/24")
	secret := knot(t, rig)
	log := slog.New(slog.NewTextHandler(tWriter{t}, nil))
	updater := func(owner, secret string) *dnsupdate.Updater {
		u, err := dnsupdate.New(dnsupdate.Config{
			Server: server + ":53", Zone: zone, Name: "vs1", Owner: owner,
			Key: dnsupdate.Key{Name: keyName, Secret: secret}, Logger: log,
		})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	// Updates leave from node a's namespace.
	in := func(f func(ctx context.Context) error) error {
		return a.Do(func() error { return f(t.Context()) })
	}
	kdig := func(qtype string) string {
		out, err := cl.Run(t.Context(), "kdig", "+short", "+timeout=1", "@"+server, "vs1."+zone, qtype)
		if err != nil {
			t.Fatalf("kdig: %v", err)
		}
		return strings.TrimSpace(string(out))
	}

	ours := updater("c1/vs1", secret)
	v4, v6 := netip.MustParseAddr("10.77.0.50"), netip.MustParseAddr("fd77::50")
	start := time.Now()
	if err := in(func(ctx context.Context) error { return ours.Register(ctx, []netip.Addr{v4, v6}) }); err != nil {
		t.Fatalf("register: %v", err)
	}
	t.Logf("registered in %v", time.Since(start))
	if got := kdig("A"); got != v4.String() {
		t.Fatalf("kdig A: %q, want %s", got, v4)
	}
	if got := kdig("AAAA"); got != v6.String() {
		t.Fatalf("kdig AAAA: %q, want %s", got, v6)
	}
	if got := kdig("TXT"); got != `"wolfpack-owner=c1/vs1"` {
		t.Fatalf("kdig TXT: %q", got)
	}

	// The same owner from another node: the address is replaced.
	v4b := netip.MustParseAddr("10.77.0.51")
	if err := in(func(ctx context.Context) error { return updater("c1/vs1", secret).Register(ctx, []netip.Addr{v4b}) }); err != nil {
		t.Fatalf("register again: %v", err)
	}
	if got, got6 := kdig("A"), kdig("AAAA"); got != v4b.String() || got6 != "" {
		t.Fatalf("after the same owner's update: A %q AAAA %q, want %s and none", got, got6, v4b)
	}

	// Another owner: refused, nothing changed, the error names us.
	err := in(func(ctx context.Context) error {
		return updater("c2/other", secret).Register(ctx, []netip.Addr{netip.MustParseAddr("10.77.0.99")})
	})
	if !errors.Is(err, dnsupdate.ErrNotOwner) || !strings.Contains(err.Error(), "c1/vs1") {
		t.Fatalf("another owner's register: %v, want ErrNotOwner naming c1/vs1", err)
	}
	t.Logf("another owner: %v", err)
	if err := in(func(ctx context.Context) error { return updater("c2/other", secret).Deregister(ctx) }); !errors.Is(err, dnsupdate.ErrNotOwner) {
		t.Fatalf("another owner's deregister: %v, want ErrNotOwner", err)
	}
	if got := kdig("A"); got != v4b.String() {
		t.Fatalf("after another owner's attempts: A %q, want %s", got, v4b)
	}

	// A wrong secret: the server refuses, the error says TSIG.
	wrong := make([]byte, 32)
	rand.Read(wrong)
	err = in(func(ctx context.Context) error {
		return updater("c1/vs1", base64.StdEncoding.EncodeToString(wrong)).Register(ctx, []netip.Addr{netip.MustParseAddr("10.77.0.98")})
	})
	var ue *dnsupdate.Error
	if !errors.Is(err, dnsupdate.ErrTSIG) || !errors.As(err, &ue) || ue.Rcode != dns.RcodeNotAuth {
		t.Fatalf("wrong key: %v, want ErrTSIG with NOTAUTH", err)
	}
	t.Logf("wrong key: %v", err)
	if got := kdig("A"); got != v4b.String() {
		t.Fatalf("after the wrong key: A %q, want %s", got, v4b)
	}

	// Offline: everything of ours goes; again is not an error.
	for i := 0; i < 2; i++ {
		if err := in(func(ctx context.Context) error { return ours.Deregister(ctx) }); err != nil {
			t.Fatalf("deregister %d: %v", i+1, err)
		}
	}
	for _, q := range []string{"A", "AAAA", "TXT"} {
		if got := kdig(q); got != "" {
			t.Fatalf("after deregister: %s %q, want none", q, got)
		}
	}
}
