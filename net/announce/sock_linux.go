package announce

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

// listen opens a packet socket on ifi that reads frames of etherType (0:
// none, for a socket that only sends).
func listen(ifi *net.Interface, etherType int) (*packet.Conn, error) {
	c, err := packet.Listen(ifi, packet.Raw, etherType, nil)
	if err != nil {
		return nil, fmt.Errorf("open packet socket on %s: %w", ifi.Name, err)
	}
	return c, nil
}

// joinMAC makes ifi accept frames to the multicast hardware address of
// group for as long as c is open (PACKET_ADD_MEMBERSHIP).
func joinMAC(c *packet.Conn, ifi *net.Interface, group netip.Addr) error {
	mac := ipv6MulticastMAC(group)
	mreq := &unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_MULTICAST, Alen: uint16(len(mac))}
	copy(mreq.Address[:], mac)
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptPacketMreq(int(fd), unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, mreq)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("join %s (%s) on %s: %w", group, mac, ifi.Name, os.NewSyscallError("setsockopt PACKET_ADD_MEMBERSHIP", serr))
	}
	return nil
}

// send writes a whole frame to its own destination hardware address.
func send(c *packet.Conn, frame []byte) error {
	_, err := c.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr(frame[0:6])})
	return err
}
