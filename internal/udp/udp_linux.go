package udp

import (
	"context"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenUDP binds a UDP socket to local and, if ifname is set, to that
// interface with SO_BINDTODEVICE (set in the socket's Control hook, before
// bind). It needs CAP_NET_RAW for the device binding.
func listenUDP(ifname string, local netip.AddrPort) (*net.UDPConn, error) {
	lc := net.ListenConfig{}
	if ifname != "" {
		if _, err := net.InterfaceByName(ifname); err != nil {
			return nil, err
		}
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname)
			}); err != nil {
				return err
			}
			return os.NewSyscallError("setsockopt SO_BINDTODEVICE", serr)
		}
	}
	network := "udp4"
	if local.Addr().Is6() && !local.Addr().Is4In6() {
		network = "udp6"
	}
	pc, err := lc.ListenPacket(context.Background(), network, local.String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}
