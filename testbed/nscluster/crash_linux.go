package nscluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/config"
	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

// Proc is a process running in a node's namespace.
type Proc struct {
	Pid, PPid int
	// Comm is /proc/<pid>/comm (the executable's name, 15 bytes at most).
	Comm string
	// State is /proc/<pid>/stat's state letter (Z: a zombie).
	State string
}

// procInfo reads pid's comm and parent ("" comm: gone).
func procInfo(pid int) Proc {
	p := Proc{Pid: pid}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p
	}
	// pid (comm) state ppid ...
	i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if i < 0 || j < i {
		return p
	}
	p.Comm = string(b[i+1 : j])
	if f := strings.Fields(string(b[j+1:])); len(f) > 1 {
		p.State = f[0]
		p.PPid, _ = strconv.Atoi(f[1])
	}
	return p
}

// Procs lists the live processes (not zombies) in the node's namespace:
// its clusterd, resmon, the applications resmon started, anything Spawn
// started.
func (n *Node) Procs() ([]Proc, error) { return procsIn(n.Netns) }

func procsIn(ns string) ([]Proc, error) {
	pids, err := netns.Pids(ns)
	if err != nil {
		return nil, err
	}
	var out []Proc
	for _, pid := range pids {
		if p := procInfo(pid); p.Comm != "" && p.State != "Z" {
			out = append(out, p)
		}
	}
	return out, nil
}

// ResmonPid is the pid of the resmon the node's current clusterd runs (a
// process named resmon whose parent is the daemon), 0 if there is none.
func (n *Node) ResmonPid() int {
	ps, _ := n.Procs()
	d := n.Pid()
	for _, p := range ps {
		if p.Comm == "resmon" && p.PPid == d && d != 0 {
			return p.Pid
		}
	}
	return 0
}

// KillResmon sends SIGKILL to the node's resmon and returns its pid.
func (n *Node) KillResmon() (int, error) {
	pid := n.ResmonPid()
	if pid == 0 {
		return 0, fmt.Errorf("nscluster: node %d runs no resmon", n.ID)
	}
	n.c.log.Info("kill resmon", "node", n.ID, "pid", pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return pid, fmt.Errorf("nscluster: node %d: kill resmon %d: %w", n.ID, pid, err)
	}
	return pid, nil
}

// MAC is the hardware address of the node's interface ifname (eth0: the
// public network).
func (n *Node) MAC(ifname string) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := netns.Visit(n.Netns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("nscluster: node %d: %w", n.ID, err)
	}
	return mac, nil
}

// HasAddr reports whether addr is on one of the node's interfaces.
func (n *Node) HasAddr(addr netip.Addr) (bool, error) {
	var found bool
	err := netns.Visit(n.Netns, func() error {
		as, err := net.InterfaceAddrs()
		if err != nil {
			return err
		}
		for _, a := range as {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr() == addr {
				found = true
			}
		}
		return nil
	})
	return found, err
}

// Crash is node i's crash as the other nodes and the clients see it: every
// process in its namespace (clusterd, resmon, the applications) stops at
// once and is killed, and all of its links go down (at the fabric end, as
// Cut does, on every network), so its kernel no longer answers for any
// address it had. Its namespace keeps what the kernel held (the
// addresses): Reboot clears that, as a reboot would, and starts it again.
func (c *Cluster) Crash(i int) error {
	n := c.Node(i)
	c.log.Info("crash", "node", i)
	ps, err := procsIn(n.Netns)
	if err != nil {
		return err
	}
	pids := func() []int {
		var l []int
		for _, p := range ps {
			l = append(l, p.Pid)
		}
		return l
	}
	// Stopped first, so that nothing sees its links go.
	for _, pid := range pids() {
		syscall.Kill(pid, syscall.SIGSTOP)
	}
	fab := netns.In(c.Fabric)
	for _, nw := range c.nets() {
		fab.Add("link set %s down", port(i, nw))
	}
	linkErr := fab.Run(context.Background())
	// Then killed, and whatever was forked in between too.
	deadline := time.Now().Add(10 * time.Second)
	for len(ps) > 0 {
		for _, pid := range pids() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nscluster: crash node %d: processes %v still there after 10 s", i, ps)
		}
		time.Sleep(5 * time.Millisecond)
		if ps, err = procsIn(n.Netns); err != nil {
			return err
		}
	}
	if n.current() != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := n.Wait(ctx); err != nil {
			return err
		}
	}
	if linkErr != nil {
		return fmt.Errorf("nscluster: crash node %d: links: %w", i, linkErr)
	}
	return nil
}

// Reboot brings a crashed (or killed) node i back: every address its
// interfaces gained since the rig configured them is gone (a reboot
// forgets them), its resmon state directory, which lives under /run on a
// real node, is emptied, its links come up, and Start starts it.
func (c *Cluster) Reboot(i int, edit ...func(*config.File)) error {
	if err := c.Revive(i); err != nil {
		return err
	}
	return c.Node(i).Start(edit...)
}

// Revive is Reboot without the daemon: the node's namespace comes back as
// a rebooted machine's would (addresses the rig gave it only, resmon's
// state gone, links up) and nothing runs in it; a rig whose nodes run
// another stack (keepalived) starts that itself.
func (c *Cluster) Revive(i int) error {
	n := c.Node(i)
	if n.Running() {
		return fmt.Errorf("nscluster: reboot node %d: still running", i)
	}
	sc := netns.In(n.Netns)
	for k, nw := range c.nets() {
		dev := fmt.Sprintf("eth%d", k)
		sc.Add("addr flush dev %s", dev)
		sc.Add("addr add %s dev %s", netip.PrefixFrom(Addr(nw, i), 24), dev)
	}
	if err := sc.Run(context.Background()); err != nil {
		return fmt.Errorf("nscluster: reboot node %d: %w", i, err)
	}
	if err := os.RemoveAll(n.resmonStateDir()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	fab := netns.In(c.Fabric)
	for _, nw := range c.nets() {
		fab.Add("link set %s up", port(i, nw))
	}
	if err := fab.Run(context.Background()); err != nil {
		return fmt.Errorf("nscluster: reboot node %d: links: %w", i, err)
	}
	c.log.Info("reboot", "node", i)
	return nil
}

func (n *Node) resmonStateDir() string {
	return filepath.Join(n.c.Dir, fmt.Sprintf("resmon-node%d", n.ID))
}
