package testbed

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/initramfs"
	"github.com/wolfpack-ha/wolfpack/initramfs/boot"
	"github.com/wolfpack-ha/wolfpack/internal/config"
	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi"
)

// Appliance makes a testbed boot the appliance (package initramfs, what
// make appliance builds) instead of the agent image: the appliance's
// initramfs with a second archive appended that holds the agent
// (/bin/wolfpack-agent, which the appliance's init runs in its serve-only
// mode), the guest tools and Config.Binaries, so Node.Run works as ever.
// Each node gets a config disk (a virtio-blk raw file holding a tar
// archive): its /etc/wolfpack when Cluster is set, and boot.conf with its
// host name, NICs and disk count.
type Appliance struct {
	// UEFI boots the single-file UEFI image under OVMF, from a FAT ESP
	// (QEMU's vvfat) as \EFI\BOOT\BOOTX64.EFI, instead of -kernel and
	// -initrd. The image is the appliance's wolfpack.efi rebuilt with
	// the agent's archive appended to its .initrd; its command line is
	// the appliance's, so the node's settings come from boot.conf.
	UEFI bool
	// Cluster, if set, names a cluster the nodes form at boot with no
	// step inside the guests: on the host, cluster create (the quorum LUN
	// formatted through iscsi://) and cluster join for every node write
	// each node's files, the node file naming the quorum LUN by the
	// guest's /dev/disk/by-id/wwn-0x... link; the private networks are
	// the cluster's (PrivateNets, at least 1).
	Cluster string
	// Timing is the node files' timing profile (cluster create --timing),
	// "default" when empty. Either way the [timing] gets
	// heartbeat_threshold = HeartbeatThreshold and lease = Lease, as TCG
	// guests are slow.
	Timing string
	// HeartbeatThreshold and Lease are the node files' timing overrides
	// for TCG: 20 and 1 s when zero.
	HeartbeatThreshold int
	Lease              time.Duration
}

// applianceImages are the files a testbed boots in appliance mode.
type applianceImages struct {
	initrd string // appliance initramfs + agent archive
	efi    string // UEFI mode: the UKI with that initrd
}

// buildAppliance builds (or finds in the cache) the appliance's initramfs,
// the agent archive, their concatenation and, for UEFI, the UKI.
func buildAppliance(ctx context.Context, log *slog.Logger, vmlinuz, modDir string, nodes int, binaries []string, uefi bool) (applianceImages, error) {
	var im applianceImages
	root, err := ModuleRoot()
	if err != nil {
		return im, err
	}
	cache, err := cacheDir()
	if err != nil {
		return im, err
	}
	work := filepath.Join(cache, "appliance-work")
	unlock, err := flock(filepath.Join(cache, ".appliance.lock"))
	if err != nil {
		return im, err
	}
	defer unlock()
	a, err := initramfs.ApplianceArchive(ctx, initramfs.Options{Log: log, Root: root, Work: work, Version: "0.0.0-testbed"}, modDir)
	if err != nil {
		return im, fmt.Errorf("appliance: %w", err)
	}
	sum, err := a.Hash()
	if err != nil {
		return im, err
	}
	dir := filepath.Join(cache, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return im, err
	}
	app := filepath.Join(dir, "appliance-"+sum[:16]+".cpio.lz4")
	if _, err := os.Stat(app); err != nil {
		if err := writeAtomic(app, func(w io.Writer) error { return a.WriteLZ4(ctx, w) }); err != nil {
			return im, fmt.Errorf("write appliance initramfs: %w", err)
		}
	}
	agentBin, err := BuildGo(ctx, "./cmd/wolfpack-agent")
	if err != nil {
		return im, fmt.Errorf("build agent: %w", err)
	}
	var ag initramfs.Archive
	if err := ag.AddFile("bin/wolfpack-agent", agentBin, 0o755); err != nil {
		return im, err
	}
	if err := ag.AddData("etc/hosts", hostsFile(nodes), 0o644); err != nil {
		return im, err
	}
	if err := addGuestTools(ctx, &ag, binaries); err != nil {
		return im, err
	}
	// LZ4 as the appliance's: the kernel reads two legacy LZ4 streams one
	// after the other as one (a plain archive after an LZ4 one fails:
	// the legacy format has no end mark), and LZ4 unpacks fastest: this
	// test equipment's unpacking is part of every boot the testbed times.
	agentImg, err := cacheArchive(ctx, &ag, "agent", true)
	if err != nil {
		return im, err
	}
	h := sha256.Sum256([]byte(filepath.Base(app) + " " + filepath.Base(agentImg)))
	key := hex.EncodeToString(h[:8])
	im.initrd = filepath.Join(dir, "appliance+agent-"+key+".cpio")
	if _, err := os.Stat(im.initrd); err != nil {
		err := writeAtomic(im.initrd, func(w io.Writer) error {
			for _, p := range []string{app, agentImg} { // unpacked in turn
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				_, err = io.Copy(w, f)
				f.Close()
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return im, fmt.Errorf("join appliance and agent archives: %w", err)
		}
	}
	if !uefi {
		return im, nil
	}
	im.efi = filepath.Join(dir, "appliance+agent-"+key+".efi")
	if _, err := os.Stat(im.efi); err == nil {
		return im, nil
	}
	osrel := "NAME=\"Wolfpack appliance\"\nID=wolfpack\nVERSION_ID=\"0.0.0-testbed\"\n"
	err = initramfs.BuildUKI(ctx, initramfs.UKI{Stub: initramfs.DefaultStub, Kernel: vmlinuz, Initrd: im.initrd,
		Cmdline: initramfs.DefaultCmdline, OSRelease: osrel, Work: filepath.Join(work, "uki")}, im.efi)
	return im, err
}

func writeAtomic(path string, write func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// guestQuorumDevice is the quorum LUN's stable name in the guests.
func (tb *Testbed) guestQuorumDevice(ctx context.Context) (string, error) {
	return tb.guestDiskID(ctx, 1)
}

// GuestDataDisk is the data LUN's stable name in the appliance's guests
// (Config.DataLUNSize), the same on every node: the /dev/disk/by-id link
// the appliance's init makes.
func (tb *Testbed) GuestDataDisk(ctx context.Context) (string, error) {
	if tb.DataLUNPath() == "" {
		return "", fmt.Errorf("testbed: no data LUN")
	}
	return tb.guestDiskID(ctx, dataLUN)
}

// guestDiskID is LUN lun's /dev/disk/by-id link in the guests, which the
// appliance's init makes from the LUN's NAA designator, as Linux picks
// it for device/wwid. It reads VPD page 0x83 through the host's own
// iSCSI initiator.
func (tb *Testbed) guestDiskID(ctx context.Context, lun int) (string, error) {
	url := fmt.Sprintf("iscsi://%s/%s/%d", tb.tgt.Portal, tb.tgt.Target, lun)
	s, err := iscsi.Open(ctx, url, iscsi.Config{InitiatorName: tb.tgt.Target + ":host"})
	if err != nil {
		return "", fmt.Errorf("open LUN %d from the host: %w", lun, err)
	}
	defer s.Close()
	ds, err := scsi.DeviceIdentification(ctx, s)
	if err != nil {
		return "", fmt.Errorf("LUN %d's device identification: %w", lun, err)
	}
	var best []byte
	for _, d := range ds {
		if d.Type == scsi.DesignatorNAA && d.Association == scsi.AssocLogicalUnit && len(d.Value) > len(best) {
			best = d.Value
		}
	}
	if best == nil {
		return "", fmt.Errorf("LUN %d has no NAA designator: %v", lun, ds)
	}
	return "/dev/disk/by-id/wwn-0x" + hex.EncodeToString(best), nil
}

// makeClusterFiles writes every node's /etc/wolfpack under
// WorkDir/etc/nodeN with the host's cluster binary (create for node 1,
// which formats the quorum LUN, then join for each node from the
// bundle) and points the node files' paths at /etc/wolfpack.
func (tb *Testbed) makeClusterFiles(ctx context.Context) error {
	ap := tb.cfg.Appliance
	clusterBin, err := BuildGo(ctx, "./cmd/cluster")
	if err != nil {
		return err
	}
	dev, err := tb.guestQuorumDevice(ctx)
	if err != nil {
		return err
	}
	run := func(args ...string) error {
		cmd := exec.CommandContext(ctx, clusterBin, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("cluster %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	timing := ap.Timing
	if timing == "" {
		timing = "default"
	}
	setup := filepath.Join(tb.workDir, "etc", "create")
	args := []string{"create", ap.Cluster, "--node", "node1", "--quorum", tb.LUNURL(),
		"--initiator-name", tb.tgt.Target + ":host", "--etc", setup, "--timing", timing}
	// create and join check that each network's interface exists where
	// they run: here, the host's lo stands for the guests' ethK, which
	// guestPaths puts back.
	var nets []string
	for k := 1; k <= tb.cfg.PrivateNets; k++ {
		nets = append(nets, "--network", fmt.Sprintf("priv%d=lo", k))
	}
	args = append(args, nets...)
	for n := 1; n <= tb.cfg.Nodes; n++ {
		var addrs []string
		for k := 1; k <= tb.cfg.PrivateNets; k++ {
			addrs = append(addrs, NodeAddr(k, n).Addr().String())
		}
		args = append(args, fmt.Sprintf("node%d=%s", n, strings.Join(addrs, ",")))
	}
	if err := run(args...); err != nil {
		return err
	}
	bundle := filepath.Join(setup, "join-"+ap.Cluster+".bundle")
	for n := 1; n <= tb.cfg.Nodes; n++ {
		etc := tb.EtcDir(n)
		if err := run(append([]string{"join", bundle, "--node", fmt.Sprintf("node%d", n), "--quorum", dev, "--etc", etc, "--force"}, nets...)...); err != nil {
			return err
		}
		if err := guestPaths(filepath.Join(etc, "node.toml"), etc, ap); err != nil {
			return err
		}
	}
	return nil
}

// guestPaths rewrites a node file written under hostDir so that its paths
// name /etc/wolfpack and network k's interface is the guest's ethK (k from
// 1), and slows its timing for TCG (ap's HeartbeatThreshold and Lease).
func guestPaths(nodeFile, hostDir string, ap *Appliance) error {
	b, err := os.ReadFile(nodeFile)
	if err != nil {
		return err
	}
	f, err := config.Parse(b)
	if err != nil {
		return fmt.Errorf("%s: %w", nodeFile, err)
	}
	move := func(p *string) {
		if rest, ok := strings.CutPrefix(*p, hostDir+"/"); ok {
			*p = "/etc/wolfpack/" + rest
		}
	}
	move(&f.Cluster.KeyFile)
	move(&f.Streams.CABundle)
	move(&f.Streams.NodeCert)
	move(&f.Streams.NodeKey)
	for k := range f.Networks {
		f.Networks[k].Interface = fmt.Sprintf("eth%d", k+1)
	}
	threshold, lease := cmp.Or(ap.HeartbeatThreshold, 20), cmp.Or(ap.Lease, time.Second)
	f.Timing.HeartbeatThreshold = &threshold
	f.Timing.Lease = config.DurationOf(lease)
	return f.WriteFile(nodeFile)
}

// EtcDir is the host directory whose files become node i's /etc/wolfpack
// (through its config disk); with Appliance.Cluster, the node's files
// from cluster join are there.
func (tb *Testbed) EtcDir(i int) string {
	return filepath.Join(tb.workDir, "etc", fmt.Sprintf("node%d", i))
}

// bootConf is node n's boot.conf: its host name, NICs and disk count.
func (n *Node) bootConf() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# testbed %s, %s\nhostname=%s\ndisks=%d\n", n.tb.prefix, n.name, n.name, n.tb.disks())
	for _, ifc := range n.interfaces() {
		fmt.Fprintf(&b, "if=%s\n", ifc)
	}
	return []byte(b.String())
}

func (n *Node) interfaces() []boot.Interface {
	var ifs []boot.Interface
	for k := 0; k <= n.tb.cfg.PrivateNets; k++ {
		ifs = append(ifs, boot.Interface{Name: fmt.Sprintf("eth%d", k), MAC: nodeMAC(n.tb.idBytes, n.index, k), Addr: NodeAddr(k, n.index)})
	}
	return ifs
}

// ConfigDisk writes a config disk: a tar archive of the regular files
// under etcDir (sorted, mode kept, no owners or times) and boot.conf.
// It is what `tar -cf DISK -C DIR .` would make, reproducibly.
func ConfigDisk(path, etcDir string, bootConf []byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var files []string
	if etcDir != "" {
		err := filepath.WalkDir(etcDir, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				files = append(files, p)
			}
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("config disk from %s: %w", etcDir, err)
		}
	}
	sort.Strings(files)
	add := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: "./" + name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(data)), Format: tar.FormatUSTAR}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, p := range files {
		rel, _ := filepath.Rel(etcDir, p)
		if strings.HasSuffix(rel, ".bundle") { // the join bundle holds the CA key: no node needs it
			continue
		}
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := add(filepath.ToSlash(rel), int64(st.Mode().Perm()), b); err != nil {
			return fmt.Errorf("config disk: %w", err)
		}
	}
	if bootConf != nil {
		if err := add(boot.ConfigSettingsFile, 0o644, bootConf); err != nil {
			return fmt.Errorf("config disk: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	// A disk of whole 64 KiB: QEMU and the guest want whole sectors.
	if pad := buf.Len() % (64 << 10); pad != 0 {
		buf.Write(make([]byte, 64<<10-pad))
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// ClusterStatus asks the node's clusterd for its status (cluster status
// --json on the admin socket, through the agent).
func (n *Node) ClusterStatus(ctx context.Context) (clusterapi.Status, error) {
	var st clusterapi.Status
	res, err := n.Run(ctx, "cluster", "status", "--socket", "/run/wolfpack/clusterd.sock", "--json")
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(res.Stdout, &st); err != nil {
		return st, fmt.Errorf("%s: cluster status --json: %w", n.name, err)
	}
	return st, nil
}

// WaitMember waits until the node's clusterd says it is up in a
// membership of at least members nodes, and returns the time from its
// QEMU's start to the moment it became one: the time of the first
// "membership installed" record of at least members nodes that its
// current clusterd logged (/var/log/clusterd.log, after its last
// "starting" record), put on the host's clock with ClockOffset. Until
// the guest's console (where the appliance's init copies clusterd's log)
// shows such a record, it asks `cluster status` in the guest only every
// 3 s: each ask starts a program there, CPU that its boot needs under
// TCG. Without a record in the log that parses, the time the status said
// so.
func (n *Node) WaitMember(ctx context.Context, members int) (time.Duration, error) {
	var last error
	var console consoleWatch
	lastAsk := time.Time{}
	for {
		if console.sawMembership(n.console, members) || time.Since(lastAsk) >= 3*time.Second {
			lastAsk = time.Now()
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st, err := n.ClusterStatus(rctx)
			cancel()
			if err == nil && st.State == "up" && len(st.Members) >= members {
				seen := time.Since(n.started)
				at, err := n.memberSince(ctx, members)
				if err != nil {
					n.log.Warn("member time from the status poll", "err", err)
					return seen, nil
				}
				return at.Sub(n.started), nil
			}
			if err == nil {
				last = fmt.Errorf("state %s, members %v", st.State, st.Members)
			} else {
				last = err
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s: not a member of %d: %w (last: %v)", n.name, members, ctx.Err(), last)
		case <-n.exited:
			return 0, fmt.Errorf("%s: %w", n.name, errExited)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// consoleWatch reads a console file as it grows and looks for clusterd's
// "membership installed" records.
type consoleWatch struct {
	off     int64
	partial []byte
}

// sawMembership reads what was added to path since the last call and
// reports whether it holds a "membership installed" record of at least
// members nodes.
func (w *consoleWatch) sawMembership(path string, members int) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b, err := io.ReadAll(io.NewSectionReader(f, w.off, 1<<30))
	if err != nil || len(b) == 0 {
		return false
	}
	w.off += int64(len(b))
	data := append(w.partial, b...)
	i := bytes.LastIndexByte(data, '\n')
	w.partial = append([]byte(nil), data[i+1:]...)
	if i < 0 {
		return false
	}
	for _, line := range bytes.Split(data[:i], []byte("\n")) {
		if j := bytes.Index(line, []byte(`{"time":`)); j >= 0 { // after whatever the console put before it
			if r, ok := parseRecord(line[j:]); ok && r.Msg == "membership installed" && len(r.Members) >= members {
				return true
			}
		}
	}
	return false
}

// logRecord is what WaitMember reads of one clusterd log record.
type logRecord struct {
	Time    time.Time `json:"time"`
	Msg     string    `json:"msg"`
	Members []int     `json:"members"`
}

func parseRecord(line []byte) (logRecord, bool) {
	var r logRecord
	return r, json.Unmarshal(line, &r) == nil
}

// memberSince reads when, on the host's clock, the node's current
// clusterd installed its first membership of at least members nodes.
func (n *Node) memberSince(ctx context.Context, members int) (time.Time, error) {
	res, err := n.Run(ctx, "cat", "/var/log/clusterd.log")
	if err != nil {
		return time.Time{}, err
	}
	at, err := firstMembership(res.Stdout, members)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: /var/log/clusterd.log: %w", n.name, err)
	}
	offset, _, err := n.ClockOffset(ctx)
	if err != nil {
		return time.Time{}, err
	}
	return at.Add(-offset), nil
}

// firstMembership finds, in a clusterd log (JSON records, one per line,
// other lines skipped), the time of the first "membership installed"
// record with at least members members after the last "starting" record.
func firstMembership(log []byte, members int) (time.Time, error) {
	var found time.Time
	started := false
	for _, line := range bytes.Split(log, []byte("\n")) {
		r, ok := parseRecord(line)
		if !ok {
			continue
		}
		switch {
		case r.Msg == "starting":
			started, found = true, time.Time{}
		case started && found.IsZero() && r.Msg == "membership installed" && len(r.Members) >= members:
			found = r.Time
		}
	}
	if found.IsZero() {
		return found, fmt.Errorf("no membership of %d installed since clusterd's last start", members)
	}
	return found, nil
}

// Started is when the node's QEMU was started.
func (n *Node) Started() time.Time { return n.started }

// The OVMF firmware of Debian's ovmf package: code (read-only) and the
// variable store each VM gets a copy of.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

func (n *Node) configDiskPath() string { return filepath.Join(n.tb.workDir, n.name+".config.img") }
func (n *Node) varsPath() string       { return filepath.Join(n.tb.workDir, n.name+".OVMF_VARS.fd") }
func (n *Node) espDir() string         { return filepath.Join(n.tb.workDir, n.name+".esp") }

// prepareAppliance writes the node's config disk and, for UEFI, its
// OVMF variables and its ESP directory.
func (n *Node) prepareAppliance() error {
	ap := n.tb.cfg.Appliance
	if ap == nil {
		return nil
	}
	etc := ""
	if ap.Cluster != "" {
		etc = n.tb.EtcDir(n.index)
	}
	if err := ConfigDisk(n.configDiskPath(), etc, n.bootConf()); err != nil {
		return err
	}
	if !ap.UEFI {
		return nil
	}
	vars, err := os.ReadFile(ovmfVars)
	if err != nil {
		return fmt.Errorf("OVMF variables (install ovmf): %w", err)
	}
	if err := os.WriteFile(n.varsPath(), vars, 0o644); err != nil {
		return err
	}
	boot := filepath.Join(n.espDir(), "EFI", "BOOT")
	if err := os.MkdirAll(boot, 0o755); err != nil {
		return err
	}
	dst := filepath.Join(boot, "BOOTX64.EFI")
	_ = os.Remove(dst)
	if err := os.Link(n.tb.efi, dst); err != nil { // vvfat reads it; a copy only when the link fails
		b, err := os.ReadFile(n.tb.efi)
		if err != nil {
			return err
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
