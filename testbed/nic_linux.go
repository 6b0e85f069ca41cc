package testbed

import (
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// MAC is the hardware address of the node's NIC on network k (0 public,
// 1.. private): what a client's neighbour table holds for the node.
func (n *Node) MAC(k int) net.HardwareAddr { return nodeMAC(n.tb.idBytes, n.index, k) }

// Cut pulls the cable of the node's NIC on network k: QEMU's set_link
// takes the link down on both the NIC and its tap, so the guest sees its
// carrier go (as linkwatch reports a pulled cable) and no frame crosses
// in either direction. Restore plugs it back.
func (n *Node) Cut(k int) error { return n.setLink(k, false) }

// Restore plugs back the cable Cut pulled.
func (n *Node) Restore(k int) error { return n.setLink(k, true) }

func (n *Node) setLink(k int, up bool) error {
	if k < 0 || k > n.tb.cfg.PrivateNets {
		return fmt.Errorf("%s: set link of network %d: the testbed has networks 0..%d", n.name, k, n.tb.cfg.PrivateNets)
	}
	args := map[string]any{"name": fmt.Sprintf("net%d", k), "up": up}
	if err := n.qmpArgs("set_link", args); err != nil {
		return fmt.Errorf("%s: set link of network %d up=%v: %w", n.name, k, up, err)
	}
	n.log.Info("link", "network", k, "up", up)
	return nil
}

// qmpArgs runs one QMP command with arguments (qmp runs those without).
func (n *Node) qmpArgs(command string, args map[string]any) error {
	c, err := net.DialTimeout("unix", n.qmpSock, 5*time.Second)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	dec := json.NewDecoder(c)
	var greeting map[string]any
	if err := dec.Decode(&greeting); err != nil {
		return fmt.Errorf("qmp greeting: %w", err)
	}
	enc := json.NewEncoder(c)
	for _, req := range []map[string]any{{"execute": "qmp_capabilities"}, {"execute": command, "arguments": args}} {
		if err := enc.Encode(req); err != nil {
			return fmt.Errorf("qmp %s: %w", req["execute"], err)
		}
		for { // skip asynchronous events until the reply
			var msg struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Class string `json:"class"`
					Desc  string `json:"desc"`
				} `json:"error"`
			}
			if err := dec.Decode(&msg); err != nil {
				return fmt.Errorf("qmp %s: %w", req["execute"], err)
			}
			if msg.Error != nil {
				return fmt.Errorf("qmp %s: %s: %s", req["execute"], msg.Error.Class, msg.Error.Desc)
			}
			if msg.Return != nil {
				break
			}
		}
	}
	return nil
}
