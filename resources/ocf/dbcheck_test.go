package ocf

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/gup/db"
)

// A resourcetype made from the installed IPaddr2's meta-data: the
// database refuses a resource with bad parameters, naming the agent and
// the parameter, and changes nothing; a good one goes in.
func TestDatabaseRefusesBadParameters(t *testing.T) {
	if _, err := os.Stat(filepath.Join(DefaultRoot, "resource.d/heartbeat/IPaddr2")); err != nil {
		t.Skipf("%v: apt-get install resource-agents (scripts/deps.sh does)", err)
	}
	m, err := LoadMetadata(t.Context(), DefaultRoot, "heartbeat:IPaddr2")
	if err != nil {
		t.Fatal(err)
	}
	rt, err := m.ResourceTypeProps("heartbeat:IPaddr2")
	if err != nil {
		t.Fatal(err)
	}
	d := db.New()
	if err := apply(t, d, db.Create(db.KindResourceType, "vip", rt), db.Create(db.KindGroup, "web", nil)); err != nil {
		t.Fatal(err)
	}
	res := func(p map[string]db.Value) db.Op {
		p["group"], p["type"] = db.StringValue("web"), db.StringValue("vip")
		return db.Create(db.KindResource, "web-ip", p)
	}
	before := d.List(db.KindResource)
	for _, c := range []struct {
		props map[string]db.Value
		msg   string
	}{
		{map[string]db.Value{"param.nic": db.StringValue("eth0")},
			`resource "web-ip": property "param.ip" of type "vip" (ocf:heartbeat:IPaddr2) missing`},
		{map[string]db.Value{"param.ip": db.StringValue("10.0.0.5"), "param.arp_count": db.StringValue("five")},
			`resource "web-ip": property param.arp_count of type "vip" (ocf:heartbeat:IPaddr2) must be of type int, not string`},
		{map[string]db.Value{"param.ip": db.StringValue("10.0.0.5"), "param.lvs_support": db.StringValue("yes")},
			`property param.lvs_support of type "vip" (ocf:heartbeat:IPaddr2) must be of type bool, not string`},
		{map[string]db.Value{"param.ip": db.StringValue("10.0.0.5"), "param.netmask": db.StringValue("24")},
			`resource "web-ip": property "param.netmask" is not a property of type "vip" (ocf:heartbeat:IPaddr2), whose parameters are "param.ip", "param.nic", "param.cidr_netmask"`},
		{map[string]db.Value{"ip": db.StringValue("10.0.0.5")},
			`property "ip" is not a property of type "vip" (ocf:heartbeat:IPaddr2)`},
	} {
		err := apply(t, d, res(c.props))
		if !errors.Is(err, db.ErrInvalid) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: %v\nwant ErrInvalid with %q", c.props, err, c.msg)
		}
		if after := d.List(db.KindResource); !reflect.DeepEqual(after, before) {
			t.Fatalf("a refused transaction changed the resources: %v", after)
		}
	}
	if err := apply(t, d, res(map[string]db.Value{"param.ip": db.StringValue("10.0.0.5"), "param.cidr_netmask": db.StringValue("24"),
		"param.arp_count": db.IntValue(3), "param.lvs_support": db.BoolValue(false)})); err != nil {
		t.Fatalf("a good resource refused: %v", err)
	}
}
