//go:build !linux

package udp

import (
	"errors"
	"net"
	"net/netip"
)

// listenUDP binds a UDP socket to local. Binding to an interface needs
// Linux's SO_BINDTODEVICE.
func listenUDP(ifname string, local netip.AddrPort) (*net.UDPConn, error) {
	if ifname != "" {
		return nil, errors.New("binding to an interface is only supported on Linux")
	}
	return net.ListenUDP("udp", net.UDPAddrFromAddrPort(local))
}
