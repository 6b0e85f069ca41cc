package announce

import (
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

var (
	us    = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	other = net.HardwareAddr{0x52, 0x54, 0, 0, 0, 2}
	v4    = netip.MustParseAddr("10.77.0.50")
	v6    = netip.MustParseAddr("fd77::50")
)

// Reference: RFC 5227 §2.1.1: a reply from the address's owner, or another
// host's probe for it, is a conflict; our own frames are not.
func TestARPConflict(t *testing.T) {
	reply := func(op arp.Operation, sha net.HardwareAddr, sip netip.Addr, tip netip.Addr) []byte {
		p, err := arp.NewPacket(op, sha, sip, zeroMAC, tip)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := p.MarshalBinary()
		f, err := ethernetFrame(broadcastMAC, sha, etherTypeARP, b)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	ownProbe, err := probeFrame(us, v4)
	if err != nil {
		t.Fatal(err)
	}
	othersProbe, _ := probeFrame(other, v4)
	garp, _ := garpFrame(ARPReply, other, v4)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"owner's reply", reply(arp.OperationReply, other, v4, netip.IPv4Unspecified()), true},
		{"owner's gratuitous reply", garp, true},
		{"another host's probe", othersProbe, true},
		{"our own probe", ownProbe, false},
		{"unrelated request", reply(arp.OperationRequest, other, netip.MustParseAddr("10.77.0.9"), netip.MustParseAddr("10.77.0.1")), false},
		{"truncated", ownProbe[:20], false},
	} {
		mac, got := arpConflict(tc.frame, us, v4)
		if got != tc.want || (got && mac.String() != other.String()) {
			t.Errorf("%s: conflict %v mac %v, want %v %v", tc.name, got, mac, tc.want, other)
		}
	}
}

// Reference: RFC 4862 §5.4.3, §5.4.4.
func TestNDConflict(t *testing.T) {
	ownDAD, err := dadFrame(us, v6)
	if err != nil {
		t.Fatal(err)
	}
	othersDAD, _ := dadFrame(other, v6)
	na, _ := naFrame(other, v6)
	otherNA, _ := naFrame(other, netip.MustParseAddr("fd77::51"))
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"advertisement", na, true},
		{"another host's DAD", othersDAD, true},
		{"our own DAD", ownDAD, false},
		{"advertisement for another address", otherNA, false},
	} {
		mac, got := ndConflict(tc.frame, us, v6)
		if got != tc.want || (got && mac.String() != other.String()) {
			t.Errorf("%s: conflict %v mac %v, want %v %v", tc.name, got, mac, tc.want, other)
		}
	}
}

func TestDADFrame(t *testing.T) {
	b, err := dadFrame(us, v6)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseNDP(b)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := net.HardwareAddr(b[0:6]).String(), "33:33:ff:00:00:50"; got != want {
		t.Errorf("destination MAC %s, want %s", got, want)
	}
	if !p.src.IsUnspecified() || p.dst != netip.MustParseAddr("ff02::1:ff00:50") {
		t.Errorf("src %s dst %s, want :: and ff02::1:ff00:50", p.src, p.dst)
	}
	ns, ok := p.msg.(*ndp.NeighborSolicitation)
	if !ok || ns.TargetAddress != v6 || len(ns.Options) != 0 {
		t.Errorf("message %#v, want an NS for %s without options", p.msg, v6)
	}
	if sum := icmpChecksum(p.src, p.dst, b[14+ipv6HeaderLen:]); sum != 0 {
		t.Errorf("checksum does not verify: %#04x", sum)
	}
}

func TestGARPForms(t *testing.T) {
	for _, form := range []ARPForm{ARPRequest, ARPReply} {
		b, err := garpFrame(form, us, v4)
		if err != nil {
			t.Fatal(err)
		}
		p, f, err := parseARP(b)
		if err != nil {
			t.Fatal(err)
		}
		if f.Destination.String() != broadcastMAC.String() || p.SenderIP != v4 || p.TargetIP != v4 || p.SenderHardwareAddr.String() != us.String() {
			t.Errorf("%v: %+v", form, p)
		}
		// Linux takes a reply as gratuitous only if its target hardware
		// address is the sender's (net/ipv4/arp.c, arp_process).
		if form == ARPReply && (p.Operation != arp.OperationReply || p.TargetHardwareAddr.String() != us.String()) {
			t.Errorf("reply form: %+v", p)
		}
	}
}

// icmpChecksum is the Internet checksum over the IPv6 pseudo-header and
// body: zero when body carries a correct checksum.
func icmpChecksum(src, dst netip.Addr, body []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
		if len(b)%2 == 1 {
			sum += uint32(b[len(b)-1]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	add([]byte{0, 0, byte(len(body) >> 8), byte(len(body)), 0, 0, 0, protoICMPv6})
	add(body)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
