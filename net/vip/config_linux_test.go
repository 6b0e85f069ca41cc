package vip_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/net/vip"
)

// Addresses that cannot be a virtual server's are refused before any
// netlink or packet (no root needed).
func TestOnlineRefusesNonUnicast(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "::", "224.0.0.251", "ff02::1", "127.0.0.1", "::1"} {
		_, err := vip.Online(t.Context(), vip.Config{Addr: netip.MustParseAddr(s)})
		if err == nil || !strings.Contains(err.Error(), "not a unicast address") {
			t.Errorf("%s: %v, want refused as not unicast", s, err)
		}
	}
	if _, err := vip.Online(t.Context(), vip.Config{}); err == nil {
		t.Errorf("no address: accepted")
	}
}
