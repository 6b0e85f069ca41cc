package testbed

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/resources/physicaldisk"
)

// TestIntegrationPhysicalDisk is the physical_disk type's acceptance test
// on two guests sharing a data LUN (ext4 made on the host) through SG_IO:
// node1 takes the disk and writes files; node1 is frozen; node2 takes the
// disk over (preempting node1's key), checks the filesystem, mounts it and
// finds every file; node1, thawed, is fenced: its writes through the
// filesystem fail with an I/O error, its checks report the loss, and
// sg_persist shows only node2's key holding the reservation.
func TestIntegrationPhysicalDisk(t *testing.T) {
	start := time.Now()
	Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pdctl, err := BuildGo(ctx, "./resources/physicaldisk/internal/pdctl")
	if err != nil {
		t.Fatal(err)
	}
	tb := New(t, Config{Nodes: 2, DataLUNSize: 64 << 20, DataLUNFS: "ext4", Binaries: []string{pdctl}, Logger: testLogger(t)})
	t.Logf("testbed up in %v", time.Since(start).Round(time.Millisecond))
	n1, n2 := tb.Node(1), tb.Node(2)
	key1, _ := physicaldisk.Key(1)
	key2, _ := physicaldisk.Key(2)
	pd := func(n *Node, ops ...string) (Result, error) {
		d, _ := n.DataDisk()
		argv := append([]string{"pdctl", "-device", d.Block, "-mount", "/mnt/data", "-node", fmt.Sprint(n.Index()),
			"-options", "noatime", "-timeout", "30s"}, ops...)
		t0 := time.Now()
		res, err := n.Run(ctx, argv...)
		t.Logf("%s: pdctl %s (%v): %v\n%s%s", n.Name(), strings.Join(ops, " "), time.Since(t0).Round(time.Millisecond), err, res.Stdout, res.Stderr)
		return res, err
	}
	sh := func(n *Node, script string) (Result, error) {
		return n.Run(ctx, "sh", "-c", script)
	}

	// node1 takes the disk and writes files, then syncs.
	if _, err := pd(n1, "online", "looks-alive", "is-alive"); err != nil {
		t.Fatal(err)
	}
	const write = `set -e
for i in $(seq 1 20); do echo "node1 file $i $(head -c 16 /dev/urandom | md5sum)" > /mnt/data/f$i; done
mkdir /mnt/data/dir
dd if=/dev/urandom of=/mnt/data/dir/big bs=64k count=16 2>/dev/null
dd if=/dev/zero of=/mnt/data/prealloc bs=4k count=4 conv=fsync 2>/dev/null
sync
cd /mnt/data && md5sum f* dir/big prealloc`
	res, err := sh(n1, write)
	if err != nil {
		t.Fatalf("node1 writes: %v", err)
	}
	before := string(res.Stdout)
	if strings.Count(before, "\n") != 22 {
		t.Fatalf("node1 wrote:\n%s", before)
	}

	// node1 freezes; node2 takes the disk over and reads every file.
	if err := n1.Freeze(); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	res, err = pd(n2, "online", "looks-alive", "is-alive")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node2 online %v after node1 froze", time.Since(frozen).Round(time.Millisecond))
	for _, want := range []string{"reservation taken over", "filesystem checked", "mounted"} {
		if !strings.Contains(string(res.Stderr), want) {
			t.Errorf("node2's online does not log %q", want)
		}
	}
	res, err = sh(n2, "cd /mnt/data && md5sum f* dir/big prealloc")
	if err != nil {
		t.Fatalf("node2 reads: %v", err)
	}
	if after := string(res.Stdout); after != before {
		t.Errorf("node2 reads other files than node1 wrote:\nnode1:\n%s\nnode2:\n%s", before, after)
	}

	// node1 thaws: fenced.
	if err := n1.Thaw(); err != nil {
		t.Fatal(err)
	}
	// The kernel completes a write refused with RESERVATION CONFLICT as
	// BLK_STS_NEXUS, which reaches the writer as EBADE ("Invalid
	// exchange"), and logs the conflict.
	_, err = sh(n1, "dd if=/dev/urandom of=/mnt/data/prealloc bs=4k count=1 conv=notrunc oflag=direct")
	var ee *ExitError
	if !errors.As(err, &ee) || !strings.Contains(string(ee.Stderr), "Invalid exchange") && !strings.Contains(string(ee.Stderr), "I/O error") {
		t.Errorf("node1's direct write after the takeover: %v, want EBADE or EIO", err)
	}
	if res, err := sh(n1, "dmesg | grep -i -m 3 'reservation conflict'"); err != nil || !strings.Contains(string(res.Stdout), "0:0:10:0: reservation conflict") {
		t.Errorf("node1's kernel does not log a reservation conflict on the data disk: %v\n%s", err, res.Stdout)
	}
	if _, err := pd(n1, "looks-alive"); !errors.As(err, &ee) || !strings.Contains(string(ee.Stderr), "reservation lost") ||
		!strings.Contains(string(ee.Stderr), fmt.Sprintf("held by key %#x", key2)) {
		t.Errorf("node1's looks-alive: %v, want the reservation lost to node2's key", err)
	}
	if _, err := pd(n1, "is-alive"); !errors.As(err, &ee) || !strings.Contains(string(ee.Stderr), "RESERVATION CONFLICT") {
		t.Errorf("node1's is-alive: %v, want RESERVATION CONFLICT", err)
	}
	if _, err := pd(n2, "looks-alive", "is-alive"); err != nil {
		t.Errorf("node2's checks: %v", err)
	}

	// An independent reader: only node2's key, holding the reservation.
	d1, _ := n1.DataDisk()
	keys, err := runRetryUA(ctx, n1, "sg_persist", "-n", "-k", d1.SG)
	if err != nil {
		t.Fatal(err)
	}
	resv, err := runRetryUA(ctx, n1, "sg_persist", "-n", "-r", d1.SG)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sg_persist -k:\n%ssg_persist -r:\n%s", keys.Stdout, resv.Stdout)
	if k := string(keys.Stdout); !strings.Contains(k, "1 registered reservation key") || !strings.Contains(k, fmt.Sprintf("%#x", key2)) ||
		strings.Contains(k, fmt.Sprintf("%#x", key1)) {
		t.Errorf("keys: want only %#x:\n%s", key2, k)
	}
	if r := string(resv.Stdout); !strings.Contains(r, fmt.Sprintf("Key=%#x", key2)) || !strings.Contains(r, "Write Exclusive, registrants only") {
		t.Errorf("reservation: want %#x, Write Exclusive - Registrants Only:\n%s", key2, r)
	}

	// node2 gives the disk up: no key left, and the filesystem is clean
	// as the host reads it.
	if _, err := pd(n2, "offline"); err != nil {
		t.Fatal(err)
	}
	keys, err = runRetryUA(ctx, n1, "sg_persist", "-n", "-k", d1.SG)
	if err != nil || !strings.Contains(string(keys.Stdout), "there are NO registered reservation keys") {
		t.Errorf("keys after node2's offline: %v\n%s", err, keys.Stdout)
	}
	if out, err := exec.CommandContext(ctx, "e2fsck", "-f", "-n", tb.DataLUNPath()).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -f -n of the data LUN on the host: %v\n%s", err, out)
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}
