package udp

import (
	"errors"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestIntegrationUDPBindToDevice: a socket bound to lo with SO_BINDTODEVICE
// carries a datagram over 127.0.0.0/8; an interface that does not exist
// is refused. Needs CAP_NET_RAW.
func TestIntegrationUDPBindToDevice(t *testing.T) {
	a, err := ListenUDP(0, "lo", netip.MustParseAddrPort("127.0.0.1:0"))
	if errors.Is(err, syscall.EPERM) || errors.Is(err, os.ErrPermission) {
		t.Skip("SO_BINDTODEVICE needs CAP_NET_RAW: run as root")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ListenUDP(0, "", netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.Send(b.LocalAddr(), []byte("beat")); err != nil {
		t.Fatal(err)
	}
	b.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, from, err := b.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "beat" || from != a.LocalAddr() {
		t.Fatalf("read %q from %v: %v", buf[:n], from, err)
	}
	if _, err := ListenUDP(1, "nonexistent0", netip.MustParseAddrPort("127.0.0.1:0")); err == nil {
		t.Fatal("bound to an interface that does not exist")
	}
}
