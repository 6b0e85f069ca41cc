// Package testbed runs QEMU virtual machines that share an iSCSI LUN served by a
// real userspace target (tgtd), for host-side integration tests run as root.
//
// # Layout
//
// A testbed has a short id (four hex digits); everything it creates on the host
// is named after it, so parallel testbeds never collide and leftovers are easy to
// spot:
//
//	wp<id>pub, wp<id>pv1, wp<id>pv2   bridges: public network, private networks
//	wp<id>n<N>e<K>                    tap of node N's NIC eth<K> (eth0 public, eth1.. private)
//	wp<id>cl                          host end of the veth into the client netns
//	wp<id>-client                     network namespace of the client (its end is eth0)
//	qemu -name wp<id>-node<N>         one QEMU per node, TCG, q35 machine, 1 vCPU
//	tgtd -C <ctl>                     the target, portal on 127.0.0.1:<free port>
//	/run/wolfpack-testbed/wp<id>.json what the testbed owns, for sweeping after a crash
//
// Addresses (test-only, inside the bridges and netns above): node N has
// 10.99.0.(10+N)/24 on the public network and 10.99.K.(10+N)/24 on private
// network K; the client has 10.99.0.100/24. Nothing gets an address on the host.
//
// Every node has Config.Initiators I_T nexuses onto the one LUN: nexus M is a
// QEMU iscsi blockdev with initiator name <target iqn>:node<N>-i<M>, passed
// through as scsi-block with scsi-id M, so in the guest it is H:0:M:0 and
// Node.Disk(M) names its /dev/sgX. Use Disk, not /dev/sdX names: the sd driver
// probes asynchronously and hands out sda/sdb in either order.
//
// # The guest
//
// The image is an initramfs built here in Go (newc cpio, gzip) and cached by
// content hash under .cache/testbed/images: /init is cmd/wolfpack-agent (built
// with CGO_ENABLED=0), the virtio, SCSI and virtio-net modules of the cloud
// kernel in .cache/kernel (see scripts/deps.sh) with their load order, sg3-utils
// tools with their shared libraries (an independent reader of the LUN),
// busybox with its applets, and Config.Binaries in /bin.
//
// The agent mounts /proc, /sys, /dev, loads the modules, names and addresses the
// NICs from the kernel command line, waits for the disks, and then serves one
// JSON request per line on the guest's second serial port (the first is the
// console, logged to <WorkDir>/node<N>.console). See package testbed/agent.
// Node.Run runs a program and returns its output (*ExitError for a non-zero
// exit), Node.Start runs one in the background (output in the guest's
// /var/log/<name>.log); Freeze/Thaw stop and continue the VM through QMP and
// Kill pulls its power, Reboot powers it on again (a fresh guest from the
// same image, disks and NICs); Cut and Restore pull and plug back the cable
// of one of its NICs (QMP set_link: the guest sees its carrier go), and
// MAC is a NIC's address. Client.Run runs a host program in the client netns.
// A request takes about 20 ms; output crosses the emulated UART at roughly
// 100 KiB/s, so move bulk data over the LUN or the networks instead.
//
// # The appliance
//
// Config.Appliance boots the appliance (package initramfs; docs/appliance.md)
// instead: its initramfs, cached by content like the agent image, with a
// second archive appended holding the agent, the guest tools and
// Config.Binaries; the appliance's init (cmd/wolfpack-init) sets the guest up
// and runs the agent in its serve-only mode, so Node.Run and the rest work
// the same; its VMs get a virtio-rng device (the guest's entropy).
// Appliance.UEFI boots it as a UEFI image under OVMF. Each node has a
// config disk (virtio-blk, a tar archive) with boot.conf (host name,
// NICs, disks) and the files of EtcDir(N); with Appliance.Cluster the
// testbed fills those with cluster create and cluster join run on the host
// (the quorum LUN formatted through iscsi://, the node files naming it by
// the guests' /dev/disk/by-id/wwn-0x... link), so the nodes form the
// cluster at boot. Node.WaitMember waits until a node is up in a membership
// of N and times it from clusterd's log on the host's clock;
// Node.ClusterStatus is its cluster status --json. Memory defaults to
// 512 MiB there.
//
// # Teardown
//
// Close kills the VMs and tgtd and removes every link, namespace, socket and LUN
// file the testbed created; it is idempotent, runs from t.Cleanup when the
// testbed comes from New (also after t.Fatal or a panic in the test), and on
// SIGINT/SIGTERM. QEMU and tgtd die with the test process (PDEATHSIG), and a
// later Start sweeps what a killed test process left behind.
package testbed
