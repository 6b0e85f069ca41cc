package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/wolfpack-ha/wolfpack/heartbeat"
	"github.com/wolfpack-ha/wolfpack/internal/udp"
	"github.com/wolfpack-ha/wolfpack/regroup"
)

// One UDP socket per private network carries both heartbeats and regroup
// messages (told apart by their magic); both are sealed with HMAC-SHA256
// under the cluster key (docs/clusterd.md says why UDP + HMAC and not TLS).

type packet struct {
	net  int
	from netip.AddrPort
	data []byte
}

// transportCounters count what the loop dropped or failed to send.
type transportCounters struct {
	regroupAccepted uint64
	regroupDropped  map[string]uint64
	sendErrors      []uint64 // per network
	networkDown     []uint64 // per network: a peer's heartbeats stopped there
	gupDropped      uint64   // GUP messages that did not decode or lied about their sender
}

func (c *transportCounters) drop(reason string) {
	if c.regroupDropped == nil {
		c.regroupDropped = map[string]uint64{}
	}
	c.regroupDropped[reason]++
}

func (d *Daemon) openSockets() error {
	d.counters.sendErrors = make([]uint64, len(d.cfg.Networks))
	d.counters.networkDown = make([]uint64, len(d.cfg.Networks))
	for k, n := range d.cfg.Networks {
		local := netip.AddrPortFrom(d.self.Addrs[k], uint16(d.cfg.Port))
		u, err := udp.ListenUDP(k, n.Interface, local)
		if err != nil {
			d.closeSockets()
			return fmt.Errorf("open network %s: %w", n.Name, err)
		}
		d.socks = append(d.socks, u)
	}
	for _, u := range d.socks {
		d.wg.Add(1)
		go d.read(u)
	}
	return nil
}

func (d *Daemon) closeSockets() {
	for _, u := range d.socks {
		u.Close()
	}
}

// read hands every datagram of one socket to the loop until the socket is
// closed.
func (d *Daemon) read(u *udp.UDP) {
	defer d.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := u.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			d.log.Debug("read", "network", d.netName(u.Network), "err", err.Error())
			continue
		}
		p := packet{net: u.Network, from: from, data: append([]byte(nil), buf[:n]...)}
		select {
		case d.recv <- p:
		case <-d.stopped:
			return
		}
	}
}

func (d *Daemon) sendHeartbeat(s heartbeat.Send) {
	addrs, ok := d.peers[s.To]
	if !ok || s.Network >= len(d.socks) {
		return
	}
	if err := d.socks[s.Network].Send(addrs[s.Network], s.Datagram); err != nil {
		d.counters.sendErrors[s.Network]++
		d.log.Debug("send heartbeat", "peer", int(s.To), "network", d.netName(s.Network), "err", err.Error())
	}
}

// sendMessage seals m once and sends it on every network on which the
// detector hears the peer (on every network when it hears it on none, as
// for a joiner): the copies share one sequence number, so the receiver
// keeps the first and drops the others as duplicates.
func (d *Daemon) sendMessage(m regroup.Message) {
	addrs, ok := d.peers[m.To]
	if !ok {
		return
	}
	m.From = d.cfg.Self
	d.seq++
	b, err := d.seal.Seal(regroup.Header{Cluster: d.cfg.ClusterTag, Incarnation: d.inc, Seq: d.seq}, m)
	if err != nil {
		d.log.Warn("encode regroup message", "msg", m.String(), "err", err.Error())
		return
	}
	nets := make([]bool, len(d.socks))
	any := false
	if pv, ok := d.node.Detector().Peer(m.To); ok && pv.Alive {
		for k, up := range pv.NetworksUp {
			if up && k < len(nets) {
				nets[k], any = true, true
			}
		}
	}
	for k := range d.socks {
		if any && !nets[k] {
			continue
		}
		if err := d.socks[k].Send(addrs[k], b); err != nil {
			d.counters.sendErrors[k]++
			d.log.Debug("send regroup message", "peer", int(m.To), "network", d.netName(k), "err", err.Error())
		}
	}
}

// receive dispatches one datagram: regroup frames are opened, checked
// and stepped; everything else goes to the failure detector, which
// authenticates and counts it.
func (d *Daemon) receive(p packet) {
	if !regroup.IsFrame(p.data) {
		if err := d.node.StepHeartbeat(p.net, p.data); err != nil {
			d.log.Debug("heartbeat dropped", "network", d.netName(p.net), "from", p.from.String(), "err", err.Error())
			if errors.Is(err, heartbeat.ErrBadMAC) {
				d.badMAC(p)
			}
		}
		return
	}
	h, m, err := d.seal.Open(p.data)
	switch {
	case errors.Is(err, regroup.ErrBadMAC):
		d.counters.drop("bad_mac")
		d.badMAC(p)
	case err != nil:
		d.counters.drop("malformed")
	case h.Cluster != d.cfg.ClusterTag || m.To != d.cfg.Self || m.From == d.cfg.Self || d.peers[m.From] == nil:
		d.counters.drop("unknown_node")
	default:
		w := d.win[m.From]
		if w == nil {
			w = &replayWindow{}
			d.win[m.From] = w
		}
		switch w.accept(h.Incarnation, h.Seq) {
		case replayDuplicate:
			// Usually the copy sent on another network.
			d.counters.drop("duplicate")
			return
		case replayOld:
			d.counters.drop("replay")
			return
		}
		d.counters.regroupAccepted++
		d.log.Debug("<-", "message", m.String(), "network", d.netName(p.net))
		d.node.Step(m)
		return
	}
	d.log.Debug("regroup message dropped", "network", d.netName(p.net), "from", p.from.String(), "err", fmt.Sprint(err))
}

// replayWindow accepts each (incarnation, sequence) of one sender at most
// once: a newer incarnation resets it, an older one is refused, and within
// an incarnation a 64-message window admits reordered datagrams (the
// anti-replay window of IPsec, RFC 4303 3.4.3).
type replayWindow struct {
	inc, top uint64
	bits     uint64 // bit i: top-i seen
}

// Verdicts of replayWindow.accept.
const (
	replayNew       = iota
	replayDuplicate // seen within the window
	replayOld       // older incarnation, or too far behind the window
)

func (w *replayWindow) accept(inc, seq uint64) int {
	switch {
	case inc < w.inc:
		return replayOld
	case inc > w.inc:
		*w = replayWindow{inc: inc, top: seq, bits: 1}
		return replayNew
	case seq > w.top:
		if shift := seq - w.top; shift >= 64 {
			w.bits = 1
		} else {
			w.bits = w.bits<<shift | 1
		}
		w.top = seq
		return replayNew
	}
	off := w.top - seq
	switch {
	case off >= 64:
		return replayOld
	case w.bits&(1<<off) != 0:
		return replayDuplicate
	}
	w.bits |= 1 << off
	return replayNew
}

// badMAC tells the core of a datagram that failed authentication, naming
// the peer by the source address (docs/clusterd.md says what a stranger on
// the network can still do); the core decides whether this node's secret
// is wrong.
func (d *Daemon) badMAC(p packet) {
	if peer, ok := d.addrPeer[p.from.Addr().Unmap()]; ok {
		d.node.AuthFailed(peer)
	}
}
