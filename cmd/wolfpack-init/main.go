// Command wolfpack-init is /init of the Wolfpack appliance (make appliance,
// docs/appliance.md): a non-interactive PID 1 that mounts the basics, loads
// the kernel modules in the order the image lists, reads the config disk
// into /etc/wolfpack, sets the host name and the NICs from the boot
// settings (the kernel command line over the config disk's boot.conf),
// makes /dev/disk/by-id links for the disks, and then runs clusterd with
// the node file, starting it again when it exits except on 0 (it left the
// cluster), 2 (bad configuration) and 4 (evicted), as the systemd unit
// does. It reaps every orphan. When the image holds /bin/wolfpack-agent
// (the testbed adds it), it also runs the agent in its serve-only mode.
package main

import "github.com/wolfpack-ha/wolfpack/cmd/internal/initmain"

func main() { initmain.Main() }
