package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
)

const netnsDir = "/run/netns"

// Addressing of the test networks (inside our bridges and namespace only).

// NodeAddr is node n's address on network k (0 public, 1.. private).
func NodeAddr(k, n int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, byte(k), byte(10 + n)}), 24)
}

// ClientAddr is the client namespace's address on the public network.
func ClientAddr() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, 0, 100}), 24)
}

func bridgeName(prefix string, k int) string {
	if k == 0 {
		return prefix + "pub"
	}
	return fmt.Sprintf("%spv%d", prefix, k)
}

func tapName(prefix string, node, k int) string { return fmt.Sprintf("%sn%de%d", prefix, node, k) }

func nodeMAC(idByte [2]byte, node, k int) net.HardwareAddr {
	return net.HardwareAddr{0x52, 0x54, idByte[0], idByte[1], byte(k), byte(node)}
}

// network is the set of bridges, taps and the client namespace of a testbed.
type network struct {
	log    *slog.Logger
	prefix string
	netns  string
}

func setupNetwork(ctx context.Context, log *slog.Logger, prefix string, nodes, private int, st *state) (*network, error) {
	nw := &network{log: log, prefix: prefix, netns: prefix + "-client"}
	for k := 0; k <= private; k++ {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName(prefix, k)}}
		if err := netlink.LinkAdd(br); err != nil {
			return nw, fmt.Errorf("create bridge %s: %w", br.Name, err)
		}
		if err := netlink.LinkSetUp(br); err != nil {
			return nw, fmt.Errorf("bring bridge %s up: %w", br.Name, err)
		}
		for n := 1; n <= nodes; n++ {
			tap := &netlink.Tuntap{
				LinkAttrs: netlink.LinkAttrs{Name: tapName(prefix, n, k), MasterIndex: br.Index},
				Mode:      netlink.TUNTAP_MODE_TAP,
				Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
			}
			if err := netlink.LinkAdd(tap); err != nil {
				return nw, fmt.Errorf("create tap %s: %w", tap.Name, err)
			}
			if err := netlink.LinkSetMasterByIndex(tap, br.Index); err != nil {
				return nw, fmt.Errorf("attach tap %s to %s: %w", tap.Name, br.Name, err)
			}
			if err := netlink.LinkSetUp(tap); err != nil {
				return nw, fmt.Errorf("bring tap %s up: %w", tap.Name, err)
			}
		}
	}

	// The client: a namespace with one end of a veth, the other on the public bridge.
	st.update(func(s *stateFile) { s.Netns = nw.netns })
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", nw.netns).CombinedOutput(); err != nil {
		return nw, fmt.Errorf("create netns %s: %w: %s", nw.netns, err, out)
	}
	nsf, err := os.Open(filepath.Join(netnsDir, nw.netns))
	if err != nil {
		return nw, fmt.Errorf("open netns %s: %w", nw.netns, err)
	}
	defer nsf.Close()
	pub, err := netlink.LinkByName(bridgeName(prefix, 0))
	if err != nil {
		return nw, fmt.Errorf("find public bridge: %w", err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: prefix + "cl", MasterIndex: pub.Attrs().Index},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(nsf.Fd())),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return nw, fmt.Errorf("create client veth: %w", err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return nw, fmt.Errorf("bring client veth up: %w", err)
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", ClientAddr().String(), "dev", "eth0"},
		{"link", "set", "eth0", "up"},
	} {
		argv := append([]string{"-n", nw.netns}, args...)
		if out, err := exec.CommandContext(ctx, "ip", argv...).CombinedOutput(); err != nil {
			return nw, fmt.Errorf("ip %s: %w: %s", strings.Join(argv, " "), err, out)
		}
	}
	return nw, nil
}

// teardown removes the namespace and every link whose name has the prefix.
func (nw *network) teardown() error {
	return removeNetwork(nw.prefix, nw.netns)
}

func removeNetwork(prefix, netns string) error {
	var errs []error
	if netns != "" {
		if _, err := os.Stat(filepath.Join(netnsDir, netns)); err == nil {
			if out, err := exec.Command("ip", "netns", "del", netns).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("delete netns %s: %w: %s", netns, err, out))
			}
		}
	}
	links, err := listLinks()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	// Taps and veths first, then the bridges they were on.
	for _, bridges := range []bool{false, true} {
		for _, l := range links {
			name := l.Attrs().Name
			if !strings.HasPrefix(name, prefix) || (l.Type() == "bridge") != bridges {
				continue
			}
			if err := netlink.LinkDel(l); err != nil && !errors.Is(err, os.ErrNotExist) {
				if _, lerr := netlink.LinkByName(name); lerr == nil { // still there
					errs = append(errs, fmt.Errorf("delete link %s: %w", name, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// listLinks lists the host's links. The kernel interrupts a dump when links
// change under it (another testbed starting or stopping); netlink then
// returns a possibly incomplete list with ErrDumpInterrupted, and the cure
// is to dump again.
func listLinks() ([]netlink.Link, error) {
	var err error
	for try := 0; try < 20; try++ {
		var links []netlink.Link
		if links, err = netlink.LinkList(); err == nil {
			return links, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("list links: %w", err)
}

// linksWithPrefix lists the host's links whose names start with prefix.
func linksWithPrefix(prefix string) ([]string, error) {
	links, err := listLinks()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			names = append(names, l.Attrs().Name)
		}
	}
	return names, nil
}

// Client runs host programs inside the client network namespace.
type Client struct{ netns string }

// Netns is the name of the client namespace (for ip netns exec).
func (c *Client) Netns() string { return c.netns }

// Run runs argv in the client namespace and returns its output; a non-zero exit
// is an *ExitError carrying the Result.
func (c *Client) Run(ctx context.Context, argv ...string) (Result, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", c.netns}, argv...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Stdout: []byte(stdout.String()), Stderr: []byte(stderr.String())}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.ExitCode = ee.ExitCode()
		return r, &ExitError{Argv: argv, Result: r}
	case err != nil:
		r.ExitCode = -1
		return r, fmt.Errorf("run %v in netns %s: %w", argv, c.netns, err)
	}
	return r, nil
}
