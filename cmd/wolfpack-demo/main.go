// Command wolfpack-demo is what `make demo` runs: it builds the appliance
// (package initramfs), boots two appliance VMs under QEMU that share a
// quorum LUN served by a real iSCSI target (tgtd), creates a virtual server
// on them (an address, a name and an application), then pulls the power of
// the node that serves it and prints what happened, as a timeline: the
// survivor's detection, regroup, fencing of the dead node on the quorum LUN,
// the virtual server online again, and the client's first answer; and the
// outage the client saw, probing the address and the name every 10 ms.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed"
	"github.com/wolfpack-ha/wolfpack/testbed/probe"
)

// The virtual server.
const (
	group    = "web"
	name     = "web.local"
	echoPort = 7777
)

var vip = netip.MustParseAddr("10.99.0.50")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "wolfpack-demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("wolfpack-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("v", false, "log the testbed's steps")
	uefi := fs.Bool("uefi", false, "boot the single-file UEFI image under OVMF instead of kernel + initramfs")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags: -v, -uefi)", fs.Arg(0))
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	p := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }

	p("Wolfpack demo: a two-node appliance cluster loses the node that serves a virtual server")
	p("")
	work, err := os.MkdirTemp("", "wpdemo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	echo, err := echoServer(ctx, work)
	if err != nil {
		return err
	}

	p("Building the appliance (u-root userland, clusterd, resmon, cluster; minutes the first time) and")
	p("booting node1 and node2 from it under QEMU (TCG), the quorum LUN on tgtd over iSCSI ...")
	start := time.Now()
	tb, err := testbed.Start(ctx, testbed.Config{Nodes: 2, PrivateNets: 2, Binaries: []string{echo}, Logger: log, WorkDir: work,
		Appliance: &testbed.Appliance{Cluster: "demo", UEFI: *uefi}})
	if err != nil {
		return fmt.Errorf("start the testbed: %w", err)
	}
	defer func() {
		p("")
		p("Tearing down: VMs, tgtd, bridges, taps and namespaces ...")
		if err := tb.Close(); err != nil {
			p("  teardown: %v", err)
			return
		}
		p("  done; nothing left running.")
	}()
	for _, n := range tb.Nodes() {
		d, err := n.WaitMember(ctx, 2)
		if err != nil {
			return err
		}
		p("  %s: QEMU start → cluster member in %.1f s", n.Name(), d.Seconds())
	}
	p("  (image %.1f s, everything %.1f s)", tb.ImageTime.Seconds(), time.Since(start).Seconds())

	n1, n2 := tb.Node(1), tb.Node(2)
	cli := func(n *testbed.Node, args ...string) error {
		_, err := n.Run(ctx, append([]string{"cluster"}, args...)...)
		return err
	}
	p("")
	p("Creating the virtual server %q on node1: address %s, name %s (mDNS), a UDP echo server", group, vip, name)
	for _, c := range [][]string{
		{"group", "create", group, "--preferred", "node1,node2"},
		{"resource", "create", "web-ip", "--group", group, "--type", "ip_address", "address=" + vip.String(), "prefix_len=24", "interface=eth0"},
		{"resource", "create", "web-name", "--group", group, "--type", "network_name", "name=web", "mode=mdns", "--depends-on", "web-ip"},
		{"resource", "create", "web-app", "--group", group, "--type", "generic_application",
			fmt.Sprintf("command=probe-echo -listen 0.0.0.0:%d -hostname", echoPort), "--depends-on", "web-ip"},
	} {
		p("  node1$ cluster %s", strings.Join(c, " "))
		// A member's node object reaches the database just after it
		// joins: a group that names it may come a moment too early.
		err := cli(n1, c...)
		for try := 0; err != nil && strings.Contains(err.Error(), "is not a node") && try < 100; try++ {
			time.Sleep(200 * time.Millisecond)
			err = cli(n1, c...)
		}
		if err != nil {
			return err
		}
	}
	client := tb.Client()
	if _, err := client.Run(ctx, "ip", "route", "add", "224.0.0.0/4", "dev", "eth0"); err != nil {
		return err
	}
	byAddr, err := probe.Start(client.Netns(), netip.AddrPortFrom(vip, echoPort), 10*time.Millisecond)
	if err != nil {
		return err
	}
	defer byAddr.Close()
	byName, err := probe.StartName(client.Netns(), name, 10*time.Millisecond)
	if err != nil {
		return err
	}
	defer byName.Close()
	wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
	_, err = byAddr.WaitReply(wait, time.Now(), func(r probe.Reply) bool { return r.ID() == "node1" })
	cancel()
	if err != nil {
		return fmt.Errorf("the virtual server did not answer from node1: %w", err)
	}
	p("  online: the client (10.99.0.100) gets answers from node1 every 10 ms, by address and by name")
	time.Sleep(2 * time.Second)

	// Put node2's clock on the host's time line before node1 goes.
	offset, within, err := n2.ClockOffset(ctx)
	if err != nil {
		return err
	}
	p("")
	p("Pulling node1's power (QEMU killed) ...")
	kill := time.Now()
	if err := n1.Kill(); err != nil {
		return err
	}
	wait, cancel = context.WithTimeout(ctx, 2*time.Minute)
	first, err := byAddr.WaitReply(wait, kill, func(r probe.Reply) bool { return r.ID() == "node2" })
	cancel()
	if err != nil {
		return fmt.Errorf("no answer from node2 after the kill: %w", err)
	}
	time.Sleep(3 * time.Second) // the name's announcements, the last log records
	outage, err := byAddr.Outage(kill, time.Time{})
	if err != nil {
		return err
	}
	nameGap, _, nameAfter, nameErr := byName.Outage(kill, time.Time{})

	res, err := n2.Run(ctx, "cat", "/var/log/clusterd.log")
	if err != nil {
		return fmt.Errorf("read node2's log: %w", err)
	}
	recs := parseLog(res.Stdout, offset)
	p("")
	p("What happened, in ms after node1's power went (node2's log on the host's clock, ±%d ms):", within.Milliseconds())
	p("")
	at := func(t time.Time) string { return fmt.Sprintf("%6d", t.Sub(kill).Milliseconds()) }
	p("  %s  node1 powered off", at(kill))
	for _, l := range timeline(recs, kill) {
		p("  %s  %s", at(l.at), l.what)
	}
	p("  %s  first answer from node2 by address (after the last from node1 at %d)", at(first.Recv), outage.Before.Recv.Sub(kill).Milliseconds())
	if nameErr == nil {
		p("  %s  first mDNS answer for %s after the silence (%s)", at(nameAfter.Recv), name, nameAfter.From)
	}
	p("")
	p("The client's outage: %d ms by address (%d probes lost)", outage.Gap.Milliseconds(), outage.Lost)
	if nameErr == nil {
		p("                     %d ms by name", nameGap.Milliseconds())
	}
	p("Timings are the appliance testbed's (heartbeat 100 ms × 20, lease 1 s: TCG guests are slow);")
	p("on servers the default profile detects in 500 ms (BENCHMARKS.md).")
	return nil
}

// echoServer builds testbed/probe/echo as probe-echo (/bin/echo is a
// shell command's name in the guest).
func echoServer(ctx context.Context, dir string) (string, error) {
	b, err := testbed.BuildGo(ctx, "./testbed/probe/echo")
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(b)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "probe-echo")
	return out, os.WriteFile(out, data, 0o755)
}

// record is one JSON line of clusterd's log, its time on the host's clock.
type record struct {
	at    time.Time
	msg   string
	attrs map[string]any
}

func parseLog(b []byte, offset time.Duration) []record {
	var out []record
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		ts, _ := m["time"].(string)
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		msg, _ := m["msg"].(string)
		out = append(out, record{at: t.Add(-offset), msg: msg, attrs: m})
	}
	return out
}

type line struct {
	at   time.Time
	what string
}

// timeline picks, from the survivor's records after the kill, the first
// of each step of a failover.
func timeline(recs []record, kill time.Time) []line {
	steps := []struct {
		match func(r record) bool
		what  func(r record) string
	}{
		{func(r record) bool { return r.msg == "peer suspected" }, func(r record) string {
			return fmt.Sprintf("detection: node2 suspects node1, silent for %v ms on every private network", r.attrs["silent_ms"])
		}},
		{func(r record) bool { return r.msg == "regroup started" }, func(r record) string { return "regroup started" }},
		{func(r record) bool { return r.msg == "arbitration done" }, func(r record) string {
			return fmt.Sprintf("arbitration for the quorum LUN: won=%v", r.attrs["won"])
		}},
		{func(r record) bool { return r.msg == "key removed" }, func(r record) string {
			return fmt.Sprintf("fencing: node1's key %v removed from the quorum LUN (its writes now fail)", r.attrs["victim"])
		}},
		{func(r record) bool { return r.msg == "membership installed" }, func(r record) string {
			return fmt.Sprintf("membership %v installed: members %v", r.attrs["epoch"], r.attrs["members"])
		}},
		{func(r record) bool {
			return r.msg == "state" && r.attrs["resource"] == "web-ip" && r.attrs["state"] == "online"
		},
			func(r record) string { return "web-ip online on node2 (after node1's lease ran out)" }},
		{func(r record) bool {
			return r.msg == "state" && r.attrs["resource"] == "web-app" && r.attrs["state"] == "online"
		},
			func(r record) string { return "web-app online on node2" }},
		{func(r record) bool {
			return r.msg == "state" && r.attrs["resource"] == "web-name" && r.attrs["state"] == "online"
		},
			func(r record) string { return "web-name online on node2 (announced by mDNS)" }},
	}
	var out []line
	for _, s := range steps {
		for _, r := range recs {
			if r.at.After(kill) && s.match(r) {
				out = append(out, line{r.at, s.what(r)})
				break
			}
		}
	}
	slices.SortStableFunc(out, func(a, b line) int { return a.at.Compare(b.at) })
	return out
}
