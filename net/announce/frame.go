package announce

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// EtherTypes of the frames read and written here.
const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
)

const (
	ipv6HeaderLen = 40
	protoICMPv6   = 58
)

var (
	zeroMAC      = net.HardwareAddr{0, 0, 0, 0, 0, 0}
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	// allNodes is ff02::1, the destination of unsolicited advertisements.
	allNodes = netip.MustParseAddr("ff02::1")
)

// ipv6MulticastMAC is the Ethernet address of an IPv6 multicast group (RFC 2464 §7).
func ipv6MulticastMAC(group netip.Addr) net.HardwareAddr {
	b := group.As16()
	return net.HardwareAddr{0x33, 0x33, b[12], b[13], b[14], b[15]}
}

// ethernetFrame wraps payload in an Ethernet II frame.
func ethernetFrame(dst, src net.HardwareAddr, typ ethernet.EtherType, payload []byte) ([]byte, error) {
	f := &ethernet.Frame{Destination: dst, Source: src, EtherType: typ, Payload: payload}
	return f.MarshalBinary()
}

// ARPForm is the shape of a gratuitous ARP: some devices honour only one.
type ARPForm int

const (
	// ARPRequest: an ARP request whose sender and target IP are the
	// address, target hardware address zero (RFC 5227 §2.3).
	ARPRequest ARPForm = iota
	// ARPReply: an ARP reply with sender and target both the address and
	// our hardware address (what Linux accepts as a gratuitous reply).
	ARPReply
)

func (f ARPForm) String() string {
	if f == ARPReply {
		return "reply"
	}
	return "request"
}

// garpFrame is a broadcast gratuitous ARP for addr from mac in the given form.
func garpFrame(form ARPForm, mac net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	op, tha := arp.OperationRequest, zeroMAC
	if form == ARPReply {
		op, tha = arp.OperationReply, mac
	}
	p, err := arp.NewPacket(op, mac, addr, tha, addr)
	if err != nil {
		return nil, err
	}
	b, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return ethernetFrame(broadcastMAC, mac, etherTypeARP, b)
}

// probeFrame is an ARP probe for addr (RFC 5227 §2.1.1): a broadcast request
// from sender IP 0.0.0.0, target hardware address zero.
func probeFrame(mac net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	p, err := arp.NewPacket(arp.OperationRequest, mac, netip.IPv4Unspecified(), zeroMAC, addr)
	if err != nil {
		return nil, err
	}
	b, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return ethernetFrame(broadcastMAC, mac, etherTypeARP, b)
}

// icmpv6Frame puts an NDP message in an IPv6 packet (hop limit 255, as RFC
// 4861 requires) in an Ethernet frame, with the ICMPv6 checksum computed.
func icmpv6Frame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, m ndp.Message) ([]byte, error) {
	body, err := ndp.MarshalMessageChecksum(m, src, dst)
	if err != nil {
		return nil, err
	}
	pkt := make([]byte, ipv6HeaderLen+len(body))
	pkt[0] = 6 << 4
	binary.BigEndian.PutUint16(pkt[4:6], uint16(len(body)))
	pkt[6] = protoICMPv6
	pkt[7] = ndp.HopLimit
	s, d := src.As16(), dst.As16()
	copy(pkt[8:24], s[:])
	copy(pkt[24:40], d[:])
	copy(pkt[40:], body)
	return ethernetFrame(dstMAC, srcMAC, etherTypeIPv6, pkt)
}

// dadFrame is a DAD Neighbor Solicitation for addr (RFC 4862 §5.4.2): from
// the unspecified address to addr's solicited-node group, no source
// link-layer option.
func dadFrame(mac net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	group, err := ndp.SolicitedNodeMulticast(addr)
	if err != nil {
		return nil, err
	}
	return icmpv6Frame(ipv6MulticastMAC(group), mac, netip.IPv6Unspecified(), group,
		&ndp.NeighborSolicitation{TargetAddress: addr})
}

// naFrame is an unsolicited Neighbor Advertisement for addr to all nodes
// with the override flag and our link-layer address (RFC 4861 §7.2.6).
func naFrame(mac net.HardwareAddr, addr netip.Addr) ([]byte, error) {
	return icmpv6Frame(ipv6MulticastMAC(allNodes), mac, addr, allNodes, &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: addr,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	})
}

var errNotOurs = errors.New("not a frame of the kind read here")

// parseARP decodes an Ethernet frame carrying an ARP packet.
func parseARP(b []byte) (*arp.Packet, *ethernet.Frame, error) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil {
		return nil, nil, fmt.Errorf("ethernet frame: %w", err)
	}
	if f.EtherType != etherTypeARP {
		return nil, nil, errNotOurs
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		return nil, nil, fmt.Errorf("arp packet: %w", err)
	}
	return &p, &f, nil
}

// ndpPacket is an NDP message with what its IPv6 header and frame said.
type ndpPacket struct {
	src, dst netip.Addr
	srcMAC   net.HardwareAddr
	msg      ndp.Message
}

// parseNDP decodes an Ethernet frame carrying an IPv6 packet whose next
// header is ICMPv6 with an NDP message and hop limit 255 (RFC 4861 §7.1.1
// drops anything else; extension headers are not followed).
func parseNDP(b []byte) (*ndpPacket, error) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(b); err != nil {
		return nil, fmt.Errorf("ethernet frame: %w", err)
	}
	if f.EtherType != etherTypeIPv6 {
		return nil, errNotOurs
	}
	p := f.Payload
	if len(p) < ipv6HeaderLen {
		return nil, fmt.Errorf("ipv6 header: %d bytes, want %d", len(p), ipv6HeaderLen)
	}
	if p[0]>>4 != 6 {
		return nil, fmt.Errorf("ipv6 header: version %d", p[0]>>4)
	}
	if p[6] != protoICMPv6 {
		return nil, errNotOurs
	}
	if p[7] != ndp.HopLimit {
		return nil, fmt.Errorf("ndp: hop limit %d, want 255", p[7])
	}
	n := int(binary.BigEndian.Uint16(p[4:6]))
	if ipv6HeaderLen+n > len(p) {
		return nil, fmt.Errorf("ipv6 payload length %d beyond the %d bytes received", n, len(p)-ipv6HeaderLen)
	}
	m, err := ndp.ParseMessage(p[ipv6HeaderLen : ipv6HeaderLen+n])
	if err != nil {
		return nil, errNotOurs // other ICMPv6 messages
	}
	return &ndpPacket{
		src:    netip.AddrFrom16([16]byte(p[8:24])),
		dst:    netip.AddrFrom16([16]byte(p[24:40])),
		srcMAC: f.Source,
		msg:    m,
	}, nil
}

// arpConflict says whether an ARP frame received while probing for addr
// shows another host using or claiming it (RFC 5227 §2.1.1): any ARP whose
// sender IP is addr, or a probe for addr from another host. It returns
// that host's hardware address. Frames from ours are not conflicts.
func arpConflict(b []byte, ours net.HardwareAddr, addr netip.Addr) (net.HardwareAddr, bool) {
	p, f, err := parseARP(b)
	if err != nil || len(p.SenderHardwareAddr) != len(f.Source) || len(f.Source) == 0 {
		// Not Ethernet ARP (a hardware address of another length, as the
		// fuzzer found with length 0): nobody to name, no conflict.
		return nil, false
	}
	if equalMAC(p.SenderHardwareAddr, ours) || equalMAC(f.Source, ours) {
		return nil, false
	}
	if p.SenderIP == addr {
		return p.SenderHardwareAddr, true
	}
	if p.Operation == arp.OperationRequest && p.SenderIP == netip.IPv4Unspecified() && p.TargetIP == addr {
		return p.SenderHardwareAddr, true
	}
	return nil, false
}

// ndConflict says whether an NDP frame received during DAD for addr shows
// another host using or claiming it (RFC 4862 §5.4.3, §5.4.4): an
// advertisement for addr, or a DAD solicitation for addr from another host.
// The hardware address is the advertisement's target link-layer option, else
// the frame's source.
func ndConflict(b []byte, ours net.HardwareAddr, addr netip.Addr) (net.HardwareAddr, bool) {
	p, err := parseNDP(b)
	if err != nil || equalMAC(p.srcMAC, ours) {
		return nil, false
	}
	switch m := p.msg.(type) {
	case *ndp.NeighborAdvertisement:
		if m.TargetAddress != addr {
			return nil, false
		}
		for _, o := range m.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
				return lla.Addr, true
			}
		}
		return p.srcMAC, true
	case *ndp.NeighborSolicitation:
		if m.TargetAddress == addr && p.src.IsUnspecified() {
			return p.srcMAC, true
		}
	}
	return nil, false
}

func equalMAC(a, b net.HardwareAddr) bool {
	return len(a) == len(b) && string(a) == string(b)
}
