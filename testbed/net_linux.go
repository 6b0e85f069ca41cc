package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

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

// setupNetwork creates, in the host namespace, one bridge per network with
// a tap per node for QEMU, and the client namespace with a veth onto the
// public bridge.
func setupNetwork(ctx context.Context, log *slog.Logger, prefix string, nodes, private int, st *state) (*network, error) {
	nw := &network{log: log, prefix: prefix, netns: prefix + "-client"}
	host := netns.In("")
	for k := 0; k <= private; k++ {
		host.Bridge(bridgeName(prefix, k))
		for n := 1; n <= nodes; n++ {
			host.Tap(tapName(prefix, n, k), bridgeName(prefix, k))
		}
	}
	if err := host.Run(ctx); err != nil {
		return nw, fmt.Errorf("create bridges and taps: %w", err)
	}

	// The client: a namespace with one end of a veth, the other on the public bridge.
	st.update(func(s *stateFile) { s.Netns = nw.netns })
	if err := netns.Add(ctx, nw.netns); err != nil {
		return nw, err
	}
	if err := netns.In("").Veth(prefix+"cl", bridgeName(prefix, 0), nw.netns, "eth0").Run(ctx); err != nil {
		return nw, fmt.Errorf("create client veth: %w", err)
	}
	if err := netns.In(nw.netns).Iface("lo").Iface("eth0", ClientAddr()).Run(ctx); err != nil {
		return nw, fmt.Errorf("configure client namespace: %w", err)
	}
	return nw, nil
}

// removeNetwork deletes the client namespace and every host link whose name
// has the prefix.
func removeNetwork(prefix, ns string) error {
	var errs []error
	if ns != "" {
		if err := netns.Delete(ns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := netns.DeleteLinks(prefix); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Client runs host programs inside the client network namespace.
type Client struct{ netns string }

// Netns is the name of the client namespace (for ip netns exec).
func (c *Client) Netns() string { return c.netns }

// Run runs argv in the client namespace and returns its output; a non-zero exit
// is an *ExitError carrying the Result.
func (c *Client) Run(ctx context.Context, argv ...string) (Result, error) {
	cmd := netns.Command(ctx, c.netns, argv...)
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
