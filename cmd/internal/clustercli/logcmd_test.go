package clustercli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/gup"
	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/quorumdisk"
	"github.com/wolfpack-ha/wolfpack/scsi/memtarget"
)

// TestLogDevice: `cluster log --device` reads the recovery log off a LUN
// and describes each record: an owner record's node and time, a database
// update's operations and origin, a note's text; --json the same as
// GET /v1/log answers it.
func TestLogDevice(t *testing.T) {
	ctx := context.Background()
	_, open := memLUN(t, memtarget.CompatTgt)
	if out, err := cli(t, open, "quorum", "format", "/dev/mem1"); err != nil {
		t.Fatalf("format: %v\n%s", err, out)
	}
	d, _ := open("/dev/mem1")
	qd, err := openQuorum(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	lg, _, err := qd.OpenLog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := (&db.Tx{Ops: []db.Op{
		db.Create(db.KindGroup, "web", map[string]db.Value{"preferred_owners": db.ListValue("node1", "node2")}),
		db.Set(db.KindGroup, "web", map[string]db.Value{"moving_to": db.StringValue("node2")}),
	}}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	owner, _ := json.Marshal(map[string]any{"node": 1, "incarnation": 7, "time": time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)})
	for _, r := range []quorumdisk.Record{
		{Type: quorumdisk.RecordOwner, Epoch: 2, Payload: owner},
		{Type: quorumdisk.RecordUpdate, Epoch: 2, GUPSeq: 5, Payload: gup.EncodeBatch([]gup.Update{{Seq: 5, Origin: 2, Inc: 9, Req: 1, Data: tx}})},
		{Type: quorumdisk.RecordNote, Epoch: 2, Payload: []byte("hello")},
	} {
		if _, err := lg.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	out, err := cli(t, open, "log", "--device", "/dev/mem1")
	if err != nil {
		t.Fatalf("log: %v\n%s", err, out)
	}
	for _, want := range []string{
		"3 records after it",
		"owner      node 1 took the quorum disk over, at 2026-11-29 10:00:00 UTC (",
		"gup 5      update     from node 2\n",
		`    #5 create group web: preferred_owners=["node1" "node2"]` + "\n",
		`    #5 set group web: moving_to="node2"` + "\n",
		"note       hello\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	out, err = cli(t, open, "log", "--json", "--device", "/dev/mem1")
	var l clusterapi.Log
	if err != nil || json.Unmarshal([]byte(out), &l) != nil || len(l.Records) != 3 || l.Records[1].Node != 2 || len(l.Records[1].Changes) != 2 || l.Records[0].Time != "2026-11-29T10:00:00Z" {
		t.Fatalf("log --json: %v %+v\n%s", err, l, out)
	}
	for _, args := range [][]string{
		{"log", "--device", "/dev/mem1", "--socket", "s"},
		{"log", "--initiator-name", "iqn.2024-01.x:y"},
		{"log", "/dev/mem1"},
		{"log", "--device", "/dev/mem1", "--initiator-name", "iqn.2024-01.x:y"},
	} {
		if _, err := cli(t, open, args...); !isUsage(err) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}

// TestLogHelp: `cluster log -h` prints its usage on stdout and exits 0.
func TestLogHelp(t *testing.T) {
	for _, args := range [][]string{{"log", "-h"}, {"log", "--help"}, {"log", "--device", "/dev/sg0", "-h"}} {
		var out, errb strings.Builder
		if err := run(context.Background(), args, &out, &errb, nil); err != nil || !strings.HasPrefix(out.String(), "usage: cluster log") || errb.Len() != 0 {
			t.Errorf("cluster %s: %v, stdout %q, stderr %q", strings.Join(args, " "), err, out.String(), errb.String())
		}
	}
}
