package db

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// schemaBase is base with a resource of each built-in type in group svc
// (svc-name depends on svc-ip, which names its interface) and a
// resourcetype app run by generic_application.
func schemaBase(t testing.TB) *DB {
	d := base(t)
	mustApply(t, d,
		Create(KindResourceType, "app", P{"agent": str("generic_application")}),
		Create(KindGroup, "svc", P{"failback": str("window"), "failback_window_start": IntValue(22), "failback_window_end": IntValue(6),
			"owner": str("n1"), "owner_inc": IntValue(7), "failovers": ListValue("1700000000000", "1700000060000"), "state": str("online")}),
		Create(KindResource, "svc-ip", P{"group": str("svc"), "type": str("ip_address"), "address": str("192.0.2.10"),
			"prefix_len": IntValue(24), "interface": str("eth0"), "probe": BoolValue(true), "possible_owners": ListValue("n1")}),
		Create(KindResource, "svc-app", P{"group": str("svc"), "type": str("app"), "command": str("exec /usr/bin/svc"),
			"directory": str("/srv"), "environment": ListValue("MODE=active", "_X1="), "user": str("svc"),
			"restart_action": str("restart"), "state": str("online-pending"), "state_node": str("n1"), "reason": str("starting")}),
		Create(KindResource, "svc-name", P{"group": str("svc"), "type": str("network_name"), "name": str("svc.example"),
			"depends_on": ListValue("svc-ip")}),
	)
	d.TakeChanges()
	return d
}

// TestSchemaRefuses: each transaction is refused with the sentinel, a
// message naming the object and the property, and leaves the database as
// it was (Seq aside).
func TestSchemaRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup []Op
		ops   []Op
		is    error
		msg   string
	}{
		// Groups.
		{"failback value", nil, []Op{Set(KindGroup, "web", P{"failback": str("sometimes")})},
			ErrInvalid, `group "web": property failback: "sometimes", want one of`},
		{"failback wrong type", nil, []Op{Set(KindGroup, "web", P{"failback": BoolValue(true)})},
			ErrInvalid, `group "web": property failback of a group must be of type string, not bool`},
		{"failover_threshold range", nil, []Op{Set(KindGroup, "web", P{"failover_threshold": IntValue(1001)})},
			ErrInvalid, `group "web": property failover_threshold: 1001, want 0..1000`},
		{"failover_period_s range", nil, []Op{Set(KindGroup, "web", P{"failover_period_s": IntValue(0)})},
			ErrInvalid, `group "web": property failover_period_s: 0, want 1..604800`},
		{"window hour range", nil, []Op{Set(KindGroup, "web", P{"failback_window_start": IntValue(24)})},
			ErrInvalid, `group "web": property failback_window_start: 24, want 0..23`},
		{"window without end", nil, []Op{Set(KindGroup, "web", P{"failback": str("window"), "failback_window_start": IntValue(1)})},
			ErrInvalid, `group "web": property failback_window_end missing: failback "window" needs both window hours`},
		{"window hours deleted", nil, []Op{DeleteProps(KindGroup, "svc", "failback_window_start")},
			ErrInvalid, `group "svc": property failback_window_start missing`},
		{"empty window", nil, []Op{Set(KindGroup, "svc", P{"failback_window_end": IntValue(22)})},
			ErrInvalid, `group "svc": properties failback_window_start and failback_window_end are both 22`},
		{"target_state", nil, []Op{Set(KindGroup, "web", P{"target_state": str("up")})},
			ErrInvalid, `group "web": property target_state: "up"`},
		{"group state", nil, []Op{Set(KindGroup, "web", P{"state": str("online-pending")})},
			ErrInvalid, `group "web": property state: "online-pending"`},
		{"failovers not decimal", nil, []Op{Set(KindGroup, "web", P{"failovers": ListValue("12", "0x10")})},
			ErrInvalid, `group "web": property failovers: item 1: "0x10" is not a non-negative decimal integer`},
		{"failovers negative", nil, []Op{Set(KindGroup, "web", P{"failovers": ListValue("-1")})},
			ErrInvalid, `group "web": property failovers: item 0: "-1"`},
		{"owner_inc negative", nil, []Op{Set(KindGroup, "web", P{"owner_inc": IntValue(-1)})},
			ErrInvalid, `group "web": property owner_inc: -1`},
		{"owner not a node", nil, []Op{Set(KindGroup, "web", P{"owner": str("n9")})},
			ErrReference, `group "web": property owner: "n9" is not a node`},
		{"moving_to not a node", nil, []Op{Set(KindGroup, "web", P{"moving_to": str("n9")})},
			ErrReference, `group "web": property moving_to: "n9" is not a node`},
		{"moving_to not a name", nil, []Op{Set(KindGroup, "web", P{"moving_to": str("-n")})},
			ErrInvalid, `group "web": property moving_to: name "-n"`},

		// Common resource properties.
		{"restart_action", nil, []Op{Set(KindResource, "svc-app", P{"restart_action": str("reboot")})},
			ErrInvalid, `resource "svc-app": property restart_action: "reboot"`},
		{"looks_alive_ms range", nil, []Op{Set(KindResource, "svc-app", P{"looks_alive_ms": IntValue(5)})},
			ErrInvalid, `resource "svc-app": property looks_alive_ms: 5, want 10..86400000`},
		{"pending_timeout_ms wrong type", nil, []Op{Set(KindResource, "svc-app", P{"pending_timeout_ms": str("5s")})},
			ErrInvalid, `resource "svc-app": property pending_timeout_ms of a resource must be of type int, not string`},
		{"resource state", nil, []Op{Set(KindResource, "svc-app", P{"state": str("partial")})},
			ErrInvalid, `resource "svc-app": property state: "partial", want one of ["offline" "online-pending" "online" "offline-pending" "failed"]`},
		{"possible owner not a node", nil, []Op{Set(KindResource, "svc-app", P{"possible_owners": ListValue("n1", "n9")})},
			ErrReference, `resource "svc-app": possible owner "n9" is not a node`},

		// Types.
		{"unknown property, built-in type", nil, []Op{Set(KindResource, "svc-ip", P{"adress": str("192.0.2.11")})},
			ErrInvalid, `db: invalid: resource "svc-ip": property "adress" is not a property of type ip_address`},
		{"unknown property, resourcetype", nil, []Op{Set(KindResource, "svc-app", P{"address": str("192.0.2.11")})},
			ErrInvalid, `resource "svc-app": property "address" is not a property of type "app" (generic_application)`},
		{"unknown type", nil, []Op{Set(KindResource, "svc-app", P{"type": str("disk")})},
			ErrReference, `resource "svc-app": resource type "disk" does not exist`},
		{"missing required", nil, []Op{Create(KindResource, "web-ip2", P{"group": str("web"), "type": str("ip_address")})},
			ErrInvalid, `resource "web-ip2": property "address" of type ip_address missing`},
		{"required deleted", nil, []Op{DeleteProps(KindResource, "svc-app", "command")},
			ErrInvalid, `resource "svc-app": property "command" of type "app" (generic_application) missing`},
		{"type property wrong type", nil, []Op{Set(KindResource, "svc-ip", P{"prefix_len": str("24")})},
			ErrInvalid, `resource "svc-ip": property prefix_len of type ip_address must be of type int, not string`},
		{"address not canonical", nil, []Op{Set(KindResource, "svc-ip", P{"address": str("2001:DB8::1")})},
			ErrInvalid, `resource "svc-ip": property address: "2001:DB8::1" is not in canonical form (2001:db8::1)`},
		{"address unparsable", nil, []Op{Set(KindResource, "svc-ip", P{"address": str("192.0.2")})},
			ErrInvalid, `resource "svc-ip": property address: `},
		{"prefix_len range", nil, []Op{Set(KindResource, "svc-ip", P{"prefix_len": IntValue(129)})},
			ErrInvalid, `resource "svc-ip": property prefix_len: 129, want 0..128`},
		{"prefix_len IPv4", nil, []Op{Set(KindResource, "svc-ip", P{"prefix_len": IntValue(33)})},
			ErrInvalid, `resource "svc-ip" (type ip_address): property prefix_len: 33, want 0..32 for IPv4 address 192.0.2.10`},
		{"interface name", nil, []Op{Set(KindResource, "svc-ip", P{"interface": str("eth0:1")})},
			ErrInvalid, `resource "svc-ip": property interface: interface name "eth0:1"`},
		{"empty command", nil, []Op{Set(KindResource, "svc-app", P{"command": str(" ")})},
			ErrInvalid, `resource "svc-app": property command: empty command`},
		{"relative directory", nil, []Op{Set(KindResource, "svc-app", P{"directory": str("srv")})},
			ErrInvalid, `resource "svc-app": property directory: "srv" is not an absolute path`},
		{"environment name", nil, []Op{Set(KindResource, "svc-app", P{"environment": ListValue("A=1", "1X=2")})},
			ErrInvalid, `resource "svc-app": property environment: item 1: "1X" is not a variable name`},
		{"environment item", nil, []Op{Set(KindResource, "svc-app", P{"environment": ListValue("FOO")})},
			ErrInvalid, `resource "svc-app": property environment: item 0: "FOO" is not NAME=value`},
		{"user", nil, []Op{Set(KindResource, "svc-app", P{"user": str("-x")})},
			ErrInvalid, `resource "svc-app": property user: user name "-x"`},
		{"stop_timeout_ms", nil, []Op{Set(KindResource, "svc-app", P{"stop_timeout_ms": IntValue(3600001)})},
			ErrInvalid, `resource "svc-app": property stop_timeout_ms: 3600001, want 10..3600000`},
		{"host name", nil, []Op{Set(KindResource, "svc-name", P{"name": str("svc_1.example")})},
			ErrInvalid, `resource "svc-name": property name: host name "svc_1.example"`},
		{"mode", nil, []Op{Set(KindResource, "svc-name", P{"mode": str("llmnr")})},
			ErrInvalid, `resource "svc-name": property mode: "llmnr", want one of ["mdns" "dns"]`},
		{"dns mode without zone", nil, []Op{Set(KindResource, "svc-name", P{"mode": str("dns"), "dns_server": str("192.0.2.53")})},
			ErrInvalid, `resource "svc-name" (type network_name): property dns_zone missing: mode "dns" needs dns_server and dns_zone`},
		{"ttl_s", nil, []Op{Set(KindResource, "svc-name", P{"ttl_s": IntValue(0)})},
			ErrInvalid, `resource "svc-name": property ttl_s: 0, want 1..86400`},
		{"mdns without interface", nil, []Op{DeleteProps(KindResource, "svc-ip", "interface")},
			ErrInvalid, `group "svc": resource "svc-name": property "interface" missing: a network_name in mdns mode needs one`},
		{"mdns dependency dropped", nil, []Op{DeleteProps(KindResource, "svc-name", "depends_on")},
			ErrInvalid, `group "svc": resource "svc-name": property "interface" missing`},

		// Resource types.
		{"agent not built-in", nil, []Op{Create(KindResourceType, "disk", P{"agent": str("ocf:heartbeat:Filesystem")})},
			ErrInvalid, `property agent: "ocf:heartbeat:Filesystem", want one of ["generic_application" "generic_service" "ip_address" "network_name" "physical_disk" "ocf"]`},
		{"agent missing", nil, []Op{Create(KindResourceType, "disk", P{"description": str("x")})},
			ErrInvalid, `a resourcetype needs property agent`},
		{"agent deleted", nil, []Op{DeleteProps(KindResourceType, "app", "agent")},
			ErrInvalid, `property agent of a resourcetype is required`},
		{"resourcetype named as a built-in type", nil, []Op{Create(KindResourceType, "ip_address", P{"agent": str("ip_address")})},
			ErrInvalid, `resourcetype "ip_address": the name of a built-in type`},
		{"agent changed under its resources", nil, []Op{Set(KindResourceType, "ip", P{"agent": str("generic_application")})},
			ErrInvalid, `resource "db-ip": property "address" is not a property of type "ip" (generic_application)`},

		// OCF agents: the schema is the resourcetype's ocf_parameters.
		{"ocf without agent", nil, []Op{Create(KindResourceType, "dummy", P{"agent": str("ocf")})},
			ErrInvalid, `resourcetype "dummy": property ocf_agent missing`},
		{"ocf agent name", nil, []Op{Create(KindResourceType, "dummy", P{"agent": str("ocf"), "ocf_agent": str("heartbeat/Dummy")})},
			ErrInvalid, `resourcetype "dummy": property ocf_agent: "heartbeat/Dummy" is not PROVIDER:TYPE`},
		{"ocf parameter type", nil, []Op{Create(KindResourceType, "dummy", P{"agent": str("ocf"), "ocf_agent": str("pacemaker:Dummy"),
			"ocf_parameters": ListValue("state string", "op_sleep float")})},
			ErrInvalid, `resourcetype "dummy": property ocf_parameters: item 1: parameter "op_sleep": type "float", want string, integer or boolean`},
		{"ocf properties on a built-in agent", nil, []Op{Set(KindResourceType, "app", P{"ocf_agent": str("pacemaker:Dummy")})},
			ErrInvalid, `resourcetype "app": property ocf_agent is for agent "ocf" only`},
		{"ocf required parameter missing", ocfSetup, []Op{Create(KindResource, "d1", P{"group": str("svc"), "type": str("dummy")})},
			ErrInvalid, `resource "d1": property "param.state" of type "dummy" (ocf:pacemaker:Dummy) missing`},
		{"ocf parameter wrong type", ocfSetup, []Op{Create(KindResource, "d1", P{"group": str("svc"), "type": str("dummy"),
			"param.state": str("/run/d1"), "param.op_sleep": str("soon")})},
			ErrInvalid, `resource "d1": property param.op_sleep of type "dummy" (ocf:pacemaker:Dummy) must be of type int, not string`},
		{"ocf unknown parameter", ocfSetup, []Op{Create(KindResource, "d1", P{"group": str("svc"), "type": str("dummy"),
			"param.state": str("/run/d1"), "param.colour": str("red")})},
			ErrInvalid, `resource "d1": property "param.colour" is not a property of type "dummy" (ocf:pacemaker:Dummy), whose parameters are "param.state", "param.op_sleep", "param.fake"`},
		{"ocf parameter unprefixed", ocfSetup, []Op{Create(KindResource, "d1", P{"group": str("svc"), "type": str("dummy"),
			"param.state": str("/run/d1"), "op_sleep": IntValue(1)})},
			ErrInvalid, `resource "d1": property "op_sleep" is not a property of type "dummy"`},
		{"ocf parameters changed under a resource", append(ocfSetup, Create(KindResource, "d1", P{"group": str("svc"), "type": str("dummy"),
			"param.state": str("/run/d1")})), []Op{Set(KindResourceType, "dummy", P{"ocf_parameters": ListValue("state integer required")})},
			ErrInvalid, `resource "d1": property param.state of type "dummy" (ocf:pacemaker:Dummy) must be of type int, not string`},
		{"ocf resource valid", ocfSetup, []Op{Create(KindResource, "d1", P{"group": str("svc"), "type": str("dummy"),
			"param.state": str("/run/d1"), "param.op_sleep": IntValue(2), "param.fake": BoolValue(true)})}, nil, ``},
		{"ocf action", nil, []Op{Create(KindResourceType, "dummy", P{"agent": str("ocf"), "ocf_agent": str("pacemaker:Dummy"),
			"ocf_actions": ListValue("start 20000", "stop twenty")})},
			ErrInvalid, `property ocf_actions: item 1: action "stop": timeout "twenty", want 0..86400000 ms`},

		// Generic services and physical disks.
		{"unit name", nil, []Op{Create(KindResource, "s1", P{"group": str("svc"), "type": str("generic_service"), "unit": str("nginx")})},
			ErrInvalid, `resource "s1": property unit: "nginx" is not a unit name`},
		{"disk without mount point", nil, []Op{Create(KindResource, "disk1", P{"group": str("svc"), "type": str("physical_disk"), "device": str("/dev/sdb")})},
			ErrInvalid, `resource "disk1": property "mount_point" of type physical_disk missing`},
		{"disk fstype", nil, []Op{Create(KindResource, "disk1", P{"group": str("svc"), "type": str("physical_disk"), "device": str("/dev/sdb"),
			"mount_point": str("/srv/data"), "fstype": str("ntfs")})},
			ErrInvalid, `resource "disk1": property fstype: "ntfs", want one of`},
		{"disk on the root", nil, []Op{Create(KindResource, "disk1", P{"group": str("svc"), "type": str("physical_disk"), "device": str("/dev/sdb"),
			"mount_point": str("/./")})},
			ErrInvalid, `resource "disk1": property mount_point: "/./" is the root directory`},
		{"disk bind option", nil, []Op{Create(KindResource, "disk1", P{"group": str("svc"), "type": str("physical_disk"), "device": str("/dev/sdb"),
			"mount_point": str("/srv/data"), "mount_options": str("noatime,rbind")})},
			ErrInvalid, `resource "disk1": property mount_options: option "rbind" does not mount a filesystem`},

		// Dependencies.
		{"cycle", nil, []Op{Set(KindResource, "svc-ip", P{"depends_on": ListValue("svc-app")}), Set(KindResource, "svc-app", P{"depends_on": ListValue("svc-name")})},
			ErrReference, `group "svc": dependency cycle "svc-app" → "svc-name" → "svc-ip" → "svc-app"`},
		{"self", nil, []Op{Set(KindResource, "svc-app", P{"depends_on": ListValue("svc-app")})},
			ErrReference, `group "svc": resource "svc-app" depends on itself`},
		{"missing dependency", nil, []Op{Set(KindResource, "svc-app", P{"depends_on": ListValue("ghost")})},
			ErrReference, `group "svc": resource "svc-app" depends on "ghost", which does not exist`},
		{"cross-group", nil, []Op{Set(KindResource, "svc-app", P{"depends_on": ListValue("web-ip")})},
			ErrReference, `resource "svc-app" (group "svc") depends on "web-ip" (group "web"): a dependency stays within its group`},

		// Deleting a node something names.
		{"delete a possible owner", nil, []Op{Delete(KindNode, "n1")},
			ErrReference, `delete node "n1": it is a preferred owner of group "web"; the owner of group "svc"; a possible owner of resource "svc-ip"`},
		{"delete the target of a move", []Op{Set(KindGroup, "db", P{"moving_to": str("n2")}), Set(KindGroup, "web", P{"moving_to": str("n2"), "preferred_owners": ListValue("n1")})},
			[]Op{Delete(KindNode, "n2")},
			ErrReference, `delete node "n2": it is the move target (moving_to) of groups "db", "web"`},
		{"delete a state node", []Op{Set(KindGroup, "svc", P{"owner": str("")}), DeleteProps(KindResource, "svc-ip", "possible_owners"), Set(KindGroup, "web", P{"preferred_owners": ListValue("n2")})},
			[]Op{Delete(KindNode, "n1")}, nil, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := schemaBase(t)
			if tc.setup != nil {
				mustApply(t, d, tc.setup...)
				d.TakeChanges()
			}
			before, seq := d.Snapshot(), d.Seq()
			tx := Tx{Ops: tc.ops}
			data, err := tx.MarshalBinary()
			if err == nil {
				err = d.Apply(seq+1, data)
			}
			if tc.is == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.is) || !names(err, tc.msg) {
				t.Fatalf("got %v\nwant %v containing %s", err, tc.is, tc.msg)
			}
			if data != nil && d.Seq() != seq+1 {
				t.Fatalf("seq %d after a refused transaction %d", d.Seq(), seq+1)
			}
			if c := d.TakeChanges(); len(c) != 0 {
				t.Fatalf("a refused transaction recorded %v", c)
			}
			if !bytes.Equal(d.Snapshot(), withSeq(before, d.Seq())) {
				t.Fatal("a refused transaction changed the database")
			}
			// Every node gives the same outcome: a second database
			// restored from the same snapshot refuses it alike.
			if data != nil {
				other := New()
				if err := other.Restore(before); err != nil {
					t.Fatal(err)
				}
				if err2 := other.Apply(seq+1, data); err2 == nil || err2.Error() != err.Error() {
					t.Fatalf("another node: %v, want %v", err2, err)
				}
			}
		})
	}
}

// names reports whether err's message holds msg, or, for msg "object:
// problem", the object and the problem apart: a refusal at the sender
// (Tx.Validate) names the object in its operation, `op 0 (set group
// "web"): property ...`, Apply's as `group "web": property ...`.
func names(err error, msg string) bool {
	e := err.Error()
	if strings.Contains(e, msg) {
		return true
	}
	obj, problem, ok := strings.Cut(msg, ": ")
	if !ok {
		return false
	}
	for _, op := range []string{"create", "set", "delete-props"} {
		if strings.Contains(e, "("+op+" "+obj+"): "+problem) {
			return true
		}
	}
	return false
}

// TestSchemaAccepts: what the rules allow.
func TestSchemaAccepts(t *testing.T) {
	d := schemaBase(t)
	for _, ops := range [][]Op{
		// An administrator's own property on a group, window hours kept
		// while failback is not window.
		{Set(KindGroup, "web", P{"site": str("b"), "failback": str("never"), "failback_window_start": IntValue(3)})},
		// Owner and move target empty: none.
		{Set(KindGroup, "svc", P{"owner": str(""), "moving_to": str(""), "owner_inc": IntValue(0)})},
		{Set(KindGroup, "svc", P{"moving_to": str("n2"), "target_state": str("offline")})},
		// IPv6 with a long prefix.
		{Set(KindResource, "svc-ip", P{"address": str("2001:db8::10"), "prefix_len": IntValue(64)})},
		// dns mode with what it needs; mdns interface no longer needed.
		{Set(KindResource, "svc-name", P{"mode": str("dns"), "dns_server": str("192.0.2.53:5353"), "dns_zone": str("example"),
			"tsig_key_file": str("/etc/wolfpack/tsig.key"), "addresses": ListValue("192.0.2.10", "2001:db8::10"), "ttl_s": IntValue(60)})},
		{DeleteProps(KindResource, "svc-name", "depends_on"), DeleteProps(KindResource, "svc-ip", "interface")},
		// A network_name in mdns mode that names its interface.
		{Create(KindResource, "web-name", P{"group": str("web"), "type": str("network_name"), "name": str("www"), "interface": str("eth1")})},
		// An agent change its resources suit; a numeric uid.
		{Create(KindResourceType, "spare", P{"agent": str("ip_address")}), Set(KindResource, "svc-app", P{"user": str("1000")})},
		{Set(KindResourceType, "spare", P{"agent": str("network_name")})},
		// A change of agent together with the resources' properties.
		{Set(KindResourceType, "app", P{"agent": str("ip_address")}),
			DeleteProps(KindResource, "svc-app", "command", "directory", "environment", "user"),
			Set(KindResource, "svc-app", P{"address": str("192.0.2.20")})},
	} {
		if err := apply(t, d, ops...); err != nil {
			t.Fatalf("%v: %v", ops, err)
		}
	}
	// The result restores: Restore keeps every rule Apply keeps.
	if err := New().Restore(d.Snapshot()); err != nil {
		t.Fatal(err)
	}
}

// ocfSetup is a resourcetype for ocf:pacemaker:Dummy as its meta-data
// would give it.
var ocfSetup = []Op{Create(KindResourceType, "dummy", P{"agent": str("ocf"), "ocf_agent": str("pacemaker:Dummy"),
	"ocf_parameters": ListValue("state string required unique", "op_sleep integer", "fake boolean"),
	"ocf_actions":    ListValue("start 20000", "stop 20000", "monitor 20000 10000", "reload 20000"), "ocf_version": str("1.1")})}

func TestOCFItems(t *testing.T) {
	for _, s := range []string{"ip string required unique", "cidr_netmask integer", "flag boolean required"} {
		p, err := ParseOCFParameter(s)
		if err != nil || p.String() != s {
			t.Errorf("%q: %v %q", s, err, p.String())
		}
	}
	for _, s := range []string{"ip", "ip  string", "ip string required required", "ip string optional", "i p string"} {
		if _, err := ParseOCFParameter(s); err == nil {
			t.Errorf("%q decoded", s)
		}
	}
	for _, s := range []string{"start 20000", "monitor 20000 10000", "meta-data 5000", "monitor 30000 60000 10", "monitor 30000 0 10"} {
		a, err := ParseOCFAction(s)
		if err != nil || a.String() != s {
			t.Errorf("%q: %v %q", s, err, a.String())
		}
	}
	for _, s := range []string{"start", "start -1", "start 020", "monitor 1 2 3 4", "monitor 1 2 x", "monitor 1 2 -3", "start 86400001"} {
		if _, err := ParseOCFAction(s); err == nil {
			t.Errorf("%q decoded", s)
		}
	}
}

func TestTypeSchema(t *testing.T) {
	if !slices.IsSorted(BuiltinTypes) || !reflect.DeepEqual(BuiltinTypes, []string{"generic_application", "generic_service", "ip_address", "network_name", "physical_disk"}) {
		t.Fatalf("BuiltinTypes %v", BuiltinTypes)
	}
	for _, name := range BuiltinTypes {
		s, ok := TypeSchema(name)
		if !ok || len(s) == 0 {
			t.Fatalf("TypeSchema(%s): %v %v", name, s, ok)
		}
		if !slices.IsSortedFunc(s, func(a, b PropSpec) int { return strings.Compare(a.Name, b.Name) }) {
			t.Errorf("%s: not sorted", name)
		}
		for _, p := range s {
			if spec(KindResource, p.Name) != nil {
				t.Errorf("%s: property %s shadows a common resource property", name, p.Name)
			}
		}
	}
	if _, ok := TypeSchema("ipaddr"); ok {
		t.Fatal("TypeSchema of an unknown type")
	}
	// The common properties of docs/resources.md.
	var names []string
	for _, p := range Schema(KindResource) {
		names = append(names, p.Name)
	}
	want := []string{"depends_on", "description", "group", "is_alive_ms", "looks_alive_ms", "pending_timeout_ms", "possible_owners",
		"reason", "restart_action", "restart_period_s", "restart_threshold", "state", "state_node", "target_state", "type"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("resource properties\n%v\nwant\n%v", names, want)
	}
}

// TestRestoreRefusesSchema: a snapshot whose objects break the type rules
// is refused like the transaction that would have made them.
func TestRestoreRefusesSchema(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(d *DB)
		is   error
		msg  string
	}{
		{"unknown property", func(d *DB) { d.objs[KindResource]["svc-ip"].Props["adress"] = str("x") },
			ErrInvalid, `resource "svc-ip": property "adress" is not a property of type ip_address`},
		{"agent", func(d *DB) { d.objs[KindResourceType]["app"].Props["agent"] = str("nfs") },
			ErrReference, `resource "svc-app": resourcetype "app" has agent "nfs", not a built-in type`},
		{"agent, unused type", func(d *DB) {
			d.objs[KindResourceType]["app"].Props["agent"] = str("nfs")
			delete(d.objs[KindResource], "svc-app")
			d.count--
		},
			ErrInvalid, `resourcetype "app": property agent: "nfs"`},
		{"window", func(d *DB) { delete(d.objs[KindGroup]["svc"].Props, "failback_window_end") },
			ErrInvalid, `group "svc": property failback_window_end missing`},
		{"owner", func(d *DB) { d.objs[KindGroup]["svc"].Props["owner"] = str("n7") },
			ErrReference, `group "svc": property owner: "n7" is not a node`},
		{"mdns", func(d *DB) { delete(d.objs[KindResource]["svc-ip"].Props, "interface") },
			ErrInvalid, `group "svc": resource "svc-name": property "interface" missing`},
	} {
		d := schemaBase(t)
		tc.f(d)
		err := New().Restore(d.Snapshot())
		if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: got %v, want %v containing %s", tc.name, err, tc.is, tc.msg)
		}
	}
}
