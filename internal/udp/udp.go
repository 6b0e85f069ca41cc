// Package udp is the private networks' datagram sockets that carry heartbeats and
// regroup frames for clusterd, each bound to its interface.
package udp

import (
	"fmt"
	"net"
	"net/netip"
)

// UDP is one private network's datagram socket: bound to the node's
// address on that network and, on Linux, to the network's interface
// (SO_BINDTODEVICE), so that heartbeats for a network never leave through
// another NIC when a route changes. The daemon owns it; the Detector never
// sees it (it only takes datagrams and returns Sends).
type UDP struct {
	Network   int
	Interface string
	conn      *net.UDPConn
}

// ListenUDP opens the socket of network net on local (the node's address
// and the cluster port), bound to interface ifname. An empty ifname binds
// to no device (tests on 127.0.0.0/8).
func ListenUDP(network int, ifname string, local netip.AddrPort) (*UDP, error) {
	conn, err := listenUDP(ifname, local)
	if err != nil {
		return nil, fmt.Errorf("udp: listen on network %d (%s, interface %q): %w", network, local, ifname, err)
	}
	return &UDP{Network: network, Interface: ifname, conn: conn}, nil
}

// Send sends one datagram to peer.
func (u *UDP) Send(to netip.AddrPort, datagram []byte) error {
	_, err := u.conn.WriteToUDPAddrPort(datagram, to)
	return err
}

// ReadFrom reads one datagram into buf.
func (u *UDP) ReadFrom(buf []byte) (int, netip.AddrPort, error) {
	return u.conn.ReadFromUDPAddrPort(buf)
}

// LocalAddr is the bound address.
func (u *UDP) LocalAddr() netip.AddrPort { return u.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// Close closes the socket; a blocked ReadFrom returns.
func (u *UDP) Close() error { return u.conn.Close() }
