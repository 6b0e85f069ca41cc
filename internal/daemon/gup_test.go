package daemon

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/regroup"
)

func setTx(t *testing.T, k, v string) []byte {
	t.Helper()
	tx := db.Tx{Ops: []db.Op{db.Set(db.KindCluster, db.ClusterObject, map[string]db.Value{k: db.StringValue(v)})}}
	b, err := tx.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (c *testCluster) commit(id regroup.NodeID, k, v string) uint64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seq, outcome, err := c.run[id].d.Commit(ctx, setTx(c.t, k, v))
	if err != nil || outcome != "" {
		c.t.Fatalf("node %d: commit %s=%s: %v %s", id, k, v, err, outcome)
	}
	return seq
}

// read reads cluster property k on node id, linearizably.
func (c *testCluster) read(id regroup.NodeID, k string) (string, uint64) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var v string
	seq, err := c.run[id].d.ReadDB(ctx, false, func(x *db.DB) {
		o, _ := x.Get(db.KindCluster, db.ClusterObject)
		if p, ok := o.Prop(k); ok {
			v = p.Str
		}
	})
	if err != nil {
		c.t.Fatalf("node %d: read %s: %v", id, k, err)
	}
	return v, seq
}

// TestGUPCommitReadLockerCrash: writes through any node are read back
// through every node (read-your-writes and linearizable reads); the locker
// crashes, the next holder takes over from the log, and the crashed node
// comes back from its local copy and catches up.
func TestGUPCommitReadLockerCrash(t *testing.T) {
	c := newTestCluster(t, 3, 1)
	c.start(1)
	c.waitMembers(5*time.Second, []int{1}, 1)
	c.start(2)
	c.start(3)
	c.waitMembers(5*time.Second, []int{1, 2, 3}, 1, 2, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	create, _ := (&db.Tx{Ops: []db.Op{db.Create(db.KindCluster, db.ClusterObject, nil)}}).MarshalBinary()
	if _, outcome, err := c.run[2].d.Commit(ctx, create); err != nil || outcome != "" {
		t.Fatalf("create the cluster object: %v %s", err, outcome)
	}
	for i := range 30 {
		id := regroup.NodeID(1 + i%3)
		v := fmt.Sprintf("v%d", i)
		seq := c.commit(id, "k", v)
		// Read your write on the node asked, and on the next node.
		for _, r := range []regroup.NodeID{id, regroup.NodeID(1 + (i+1)%3)} {
			if got, at := c.read(r, "k"); got != v || at < seq {
				t.Fatalf("after commit %s at #%d via %d: node %d reads %q at #%d", v, seq, id, r, got, at)
			}
		}
	}
	s, _ := c.status(1)
	if !s.GUP.IsLocker {
		t.Fatalf("node 1 formed but is not the locker: %+v", s.GUP)
	}
	c.crash(1)
	c.waitMembers(10*time.Second, []int{2, 3}, 2, 3)
	seq := c.commit(3, "k", "after")
	if got, _ := c.read(2, "k"); got != "after" {
		t.Fatalf("node 2 reads %q after the takeover, want \"after\"", got)
	}
	c.start(1)
	c.waitMembers(10*time.Second, []int{1, 2, 3}, 1, 2, 3)
	if got, at := c.read(1, "k"); got != "after" || at < seq {
		t.Fatalf("node 1 back: reads %q at #%d, want \"after\" at #%d or later", got, at, seq)
	}
	if len(c.run[1].log.records("local copy of the database loaded")) != 1 {
		t.Fatalf("node 1 did not start from its local copy")
	}
}

// TestGUPWatch: a watcher gets every change as it is applied here, in
// order, and its channel closes when the daemon stops.
func TestGUPWatch(t *testing.T) {
	c := newTestCluster(t, 2, 1)
	c.start(1)
	c.waitMembers(5*time.Second, []int{1}, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ch, stop, err := c.run[1].d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	create, _ := (&db.Tx{Ops: []db.Op{db.Create(db.KindCluster, db.ClusterObject, nil)}}).MarshalBinary()
	seq1, outcome, err := c.run[1].d.Commit(ctx, create)
	if err != nil || outcome != "" {
		t.Fatalf("create: %v %s", err, outcome)
	}
	seq2 := c.commit(1, "k", "v")
	var got []db.Change
	for len(got) < 2 {
		select {
		case cs, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed after %v", got)
			}
			got = append(got, cs...)
		case <-ctx.Done():
			t.Fatalf("changes so far %v: %v", got, ctx.Err())
		}
	}
	want := []db.Change{
		{Seq: seq1, Kind: db.KindCluster, Name: db.ClusterObject, Op: db.Created, Version: seq1},
		{Seq: seq2, Kind: db.KindCluster, Name: db.ClusterObject, Op: db.Updated, Version: seq2},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("changes %+v, want %+v", got, want)
	}
	c.stop(1)
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("a change after the daemon stopped")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not close when the daemon stopped")
	}
}

// TestRefusesBadResources: through a running node's Commit (the admin
// API's POST /v1/db), bad property values, unknown types, unknown
// properties, dependency cycles and cross-group dependencies are refused
// with an outcome naming the resource and the property, and the database
// is unchanged.
func TestRefusesBadResources(t *testing.T) {
	c := newTestCluster(t, 1, 1)
	c.start(1)
	c.waitMembers(5*time.Second, []int{1}, 1)
	d := c.run[1].d
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	str, list := db.StringValue, db.ListValue
	res := func(name, group, typ string, props map[string]db.Value) db.Op {
		p := map[string]db.Value{"group": str(group), "type": str(typ)}
		for k, v := range props {
			p[k] = v
		}
		return db.Create(db.KindResource, name, p)
	}
	commit := func(ops ...db.Op) (uint64, string) {
		t.Helper()
		b, err := (&db.Tx{Ops: ops}).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		seq, outcome, err := d.Commit(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		return seq, outcome
	}
	if _, out := commit(db.Create(db.KindGroup, "web", nil), db.Create(db.KindGroup, "db", nil),
		res("ip", "web", "ip_address", map[string]db.Value{"address": str("10.1.0.5")}),
		res("app", "web", "generic_application", map[string]db.Value{"command": str("true"), "depends_on": list("ip")}),
		res("dbip", "db", "ip_address", map[string]db.Value{"address": str("10.1.0.6")}),
		// An OCF agent's resourcetype as its meta-data gives it (resources/ocf).
		db.Create(db.KindResourceType, "vip", map[string]db.Value{"agent": str("ocf"), "ocf_agent": str("heartbeat:IPaddr2"),
			"ocf_parameters": list("ip string required unique", "cidr_netmask string", "nic string", "arp_count integer", "lvs_support boolean"),
			"ocf_actions":    list("start 20000", "stop 20000", "monitor 20000 10000")})); out != "" {
		t.Fatalf("setup: %s", out)
	}
	snapshot := func() []byte {
		var b []byte
		if _, err := d.ReadDB(ctx, false, func(x *db.DB) { b = x.Snapshot() }); err != nil {
			t.Fatal(err)
		}
		return b
	}
	before := snapshot()
	for _, tc := range []struct {
		name string
		ops  []db.Op
		want []string // in the outcome
	}{
		{"bad value", []db.Op{res("ip2", "web", "ip_address", map[string]db.Value{"address": str("10.1.0.999")})}, []string{`"ip2"`, "address"}},
		{"wrong type", []db.Op{db.Set(db.KindResource, "ip", map[string]db.Value{"prefix_len": str("24")})}, []string{`"ip"`, "prefix_len"}},
		{"unknown property", []db.Op{db.Set(db.KindResource, "ip", map[string]db.Value{"adress": str("10.1.0.7")})}, []string{`"ip"`, "adress"}},
		{"unknown type", []db.Op{res("x", "web", "apache", nil)}, []string{`"x"`, "apache"}},
		{"cycle", []db.Op{db.Set(db.KindResource, "ip", map[string]db.Value{"depends_on": list("app")})}, []string{"ip", "app", "cycle"}},
		{"cross-group", []db.Op{db.Set(db.KindResource, "app", map[string]db.Value{"depends_on": list("ip", "dbip")})}, []string{"app", "dbip"}},
		{"disk on the root", []db.Op{res("disk", "db", "physical_disk", map[string]db.Value{"device": str("/dev/disk/by-id/wwn-0x1"), "mount_point": str("/")})},
			[]string{`"disk"`, "mount_point", "root directory"}},
		{"disk bad fsck", []db.Op{res("disk", "db", "physical_disk", map[string]db.Value{"device": str("/dev/sdb"), "mount_point": str("/srv/db"), "fsck": str("sometimes")})},
			[]string{`"disk"`, "fsck", "sometimes"}},
		{"disk without device", []db.Op{res("disk", "db", "physical_disk", map[string]db.Value{"mount_point": str("/srv/db")})}, []string{`"disk"`, "device"}},
		{"ocf required parameter missing", []db.Op{res("vip1", "db", "vip", map[string]db.Value{"param.nic": str("eth0")})},
			[]string{`"vip1"`, "param.ip", "ocf:heartbeat:IPaddr2", "missing"}},
		{"ocf parameter of the wrong type", []db.Op{res("vip1", "db", "vip", map[string]db.Value{"param.ip": str("10.1.0.9"), "param.arp_count": str("five")})},
			[]string{`"vip1"`, "param.arp_count", "ocf:heartbeat:IPaddr2", "int"}},
		{"ocf unknown parameter", []db.Op{res("vip1", "db", "vip", map[string]db.Value{"param.ip": str("10.1.0.9"), "param.netmask": str("24")})},
			[]string{`"vip1"`, "param.netmask", "ocf:heartbeat:IPaddr2"}},
	} {
		_, out := commit(tc.ops...)
		if out == "" {
			t.Errorf("%s: committed", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: outcome %q does not name %s", tc.name, out, w)
			}
		}
		t.Logf("%s: %s", tc.name, out)
	}
	if after := snapshot(); !bytes.Equal(stripSeq(before), stripSeq(after)) {
		t.Fatal("the database changed")
	}
}

// stripSeq is a snapshot without its sequence number and checksum: a
// refused transaction still takes a sequence number.
func stripSeq(b []byte) []byte {
	c := bytes.Clone(b[:len(b)-4])
	clear(c[8:16])
	return c
}
