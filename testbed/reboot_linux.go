package testbed

import (
	"context"
	"fmt"

	"github.com/wolfpack-ha/wolfpack/testbed/agent"
)

// Reboot powers the node on again: its QEMU is killed first if it still
// runs (Kill), then started anew with the same disks, NICs and image, and
// Reboot returns when the new agent answers and the guest sees its disks,
// as at Start. Everything the guest held in memory (its processes, files
// under /var and /etc, addresses) is gone: the image is an initramfs.
// The node must not be used by other goroutines meanwhile.
func (n *Node) Reboot(ctx context.Context) error {
	if err := n.Kill(); err != nil {
		return fmt.Errorf("reboot %s: %w", n.name, err)
	}
	n.wmu.Lock()
	had := n.conn != nil
	if had {
		n.conn.Close()
	}
	n.wmu.Unlock()
	if had {
		<-n.down // the read loop has failed every pending request
	}
	n.mu.Lock()
	n.pending = make(map[uint64]chan agent.Response)
	n.down = make(chan struct{})
	n.mu.Unlock()
	n.wmu.Lock()
	n.conn = nil
	n.wmu.Unlock()
	n.hello = make(chan agent.Hello, 1)
	n.log.Info("rebooting")
	if err := n.boot(ctx); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	return nil
}
