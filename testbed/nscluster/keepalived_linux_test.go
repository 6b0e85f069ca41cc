package nscluster

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestKeepalivedConf: the configuration file the rig writes for each VRRP
// version, and every bad setting refused naming what is wrong with it.
func TestKeepalivedConf(t *testing.T) {
	vip := netip.MustParsePrefix("10.97.0.50/24")
	for _, c := range []struct {
		k    Keepalived
		want []string
	}{
		{Keepalived{Version: 2, Advert: time.Second, VIP: vip},
			[]string{"router_id node2\n", "vrrp_version 2\n", "state BACKUP\n", "nopreempt\n", "interface eth0\n",
				"virtual_router_id 51\n", "priority 100\n", "advert_int 1\n", "10.97.0.50/24 dev eth0\n"}},
		{Keepalived{Version: 3, Advert: 100 * time.Millisecond, VIP: vip, RouterID: 7, Priority: 150},
			[]string{"vrrp_version 3\n", "virtual_router_id 7\n", "priority 150\n", "advert_int 0.1\n"}},
		{Keepalived{Version: 3, Advert: 100 * time.Millisecond, VIP: vip, RTPriority: 10},
			[]string{"vrrp_version 3\n\tvrrp_rt_priority 10\n}\n"}},
	} {
		got, err := c.k.conf(2)
		if err != nil {
			t.Errorf("%+v: %v", c.k, err)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%+v: %q not in\n%s", c.k, w, got)
			}
		}
	}
	for _, c := range []struct {
		k    Keepalived
		want string
	}{
		{Keepalived{Version: 2, Advert: 100 * time.Millisecond, VIP: vip}, "VRRPv2 advert interval 100ms: want whole seconds"},
		{Keepalived{Version: 3, Advert: 5 * time.Millisecond, VIP: vip}, "VRRPv3 advert interval 5ms: want a multiple of 10ms"},
		{Keepalived{Version: 4, Advert: time.Second, VIP: vip}, "VRRP version 4: want 2 or 3"},
		{Keepalived{Version: 3, Advert: time.Second, VIP: vip, RTPriority: 100}, "vrrp_rt_priority 100: want 1..99"},
		{Keepalived{Version: 3, Advert: time.Second, VIP: netip.MustParsePrefix("fd00::50/64")}, "virtual address fd00::50/64: want an IPv4 prefix"},
		{Keepalived{Version: 3, Advert: time.Second, VIP: vip, RouterID: 256}, "virtual_router_id 256: want 1..255"},
		{Keepalived{Version: 3, Advert: time.Second, VIP: vip, Priority: 255}, "priority 255: want 1..254"},
	} {
		if _, err := c.k.conf(1); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want it to contain %q", c.k, err, c.want)
		}
	}
}
