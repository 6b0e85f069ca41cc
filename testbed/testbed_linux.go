package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi/iscsi/iscsitest"
	"github.com/wolfpack-ha/wolfpack/testbed/agent"
	"github.com/wolfpack-ha/wolfpack/testbed/internal/onsignal"
	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

// Config describes a testbed. Zero fields take the defaults noted.
type Config struct {
	Nodes       int   // VMs, default 2
	Initiators  int   // I_T nexuses per VM onto the shared LUN, default 1
	LUNSize     int64 // bytes, default 64 MiB
	PrivateNets int   // private networks besides the public one, 0..2
	Memory      int   // MiB per VM, default 128
	Logger      *slog.Logger
	// WorkDir holds console logs, sockets and the LUN file; New uses
	// t.TempDir(), Start a new directory under os.TempDir().
	WorkDir string
	// Binaries are host files (static binaries) placed in the guest's /bin.
	Binaries []string
	// DataLUNSize, if set, adds a second LUN of this many bytes, a data
	// disk: LUN 2 of the target, one more nexus per node (initiator
	// <target iqn>:node<N>-data, scsi-id DataTarget; Node.DataDisk).
	DataLUNSize int64
	// DataLUNFS, if set, is the filesystem made on the data LUN's backing
	// file on the host (mkfs.<DataLUNFS> -F) before tgtd serves it.
	DataLUNFS   string
	BootTimeout time.Duration // per VM, default 60 s (120 s for Appliance.UEFI)
	// Appliance, if set, boots the appliance instead of the agent image
	// (see Appliance). Memory defaults to 512 MiB then.
	Appliance *Appliance
}

// Testbed is a running set of VMs, their networks and the iSCSI target.
type Testbed struct {
	cfg     Config
	log     *slog.Logger
	id      string
	idBytes [2]byte
	prefix  string
	workDir string
	state   *state
	vmlinuz string
	image   string
	efi     string // Appliance.UEFI: the UKI
	tgt     *iscsitest.Tgt
	net     *network
	nodes   []*Node
	client  *Client

	ImageTime time.Duration // building (or finding) the image

	closeOnce sync.Once
	closeErr  error
}

// Require skips the test unless it can run a testbed: root, qemu, tgtd and
// the guest kernel. Tests that call it are named TestIntegration*.
func Require(t testing.TB) {
	t.Helper()
	netns.Require(t, "testbed")
	for _, prog := range []string{"qemu-system-x86_64", "tgtd", "tgtadm"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("testbed: %s not installed (run ./scripts/deps.sh)", prog)
		}
	}
	dir, err := KernelDir()
	if err != nil {
		t.Skipf("testbed: %v", err)
	}
	if _, _, err := kernelImage(dir); err != nil {
		t.Skipf("testbed: %v", err)
	}
}

// New starts a testbed for a test, skipping it when Require would, and closes
// it in t.Cleanup. When the test failed, the tail of each console is logged.
func New(t testing.TB, cfg Config) *Testbed {
	t.Helper()
	Require(t)
	if cfg.WorkDir == "" {
		cfg.WorkDir = t.TempDir()
	}
	limit := 3 * time.Minute
	if cfg.Appliance != nil { // a first build compiles u-root's commands: minutes on a busy machine
		limit = 8 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	tb, err := Start(ctx, cfg)
	if tb != nil {
		t.Cleanup(func() {
			if t.Failed() {
				tb.LogConsoles(t, 40)
			}
			if err := tb.Close(); err != nil {
				t.Errorf("close testbed: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("start testbed: %v", err)
	}
	return tb
}

// Start creates a testbed: tgtd with the LUN, the image, the networks, and
// the VMs, booted in parallel. It returns when every agent answers and every
// guest sees its disks. On error everything is torn down again and, so that
// the caller can still read the consoles, the partial testbed is returned too.
func Start(ctx context.Context, cfg Config) (*Testbed, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 2
	}
	if cfg.Initiators == 0 {
		cfg.Initiators = 1
	}
	if cfg.LUNSize == 0 {
		cfg.LUNSize = 64 << 20
	}
	if cfg.Memory == 0 {
		cfg.Memory = 128
		if cfg.Appliance != nil {
			cfg.Memory = 512
		}
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 60 * time.Second
		if cfg.Appliance != nil && cfg.Appliance.UEFI {
			cfg.BootTimeout = 120 * time.Second
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Nodes < 1 || cfg.Nodes > 9:
		return nil, fmt.Errorf("testbed: Nodes %d out of range 1..9", cfg.Nodes)
	case cfg.Initiators < 1 || cfg.Initiators > 9:
		return nil, fmt.Errorf("testbed: Initiators %d out of range 1..9", cfg.Initiators)
	case cfg.PrivateNets < 0 || cfg.PrivateNets > 2:
		return nil, fmt.Errorf("testbed: PrivateNets %d out of range 0..2", cfg.PrivateNets)
	case cfg.Appliance != nil && cfg.Appliance.Cluster != "" && cfg.PrivateNets < 1:
		return nil, fmt.Errorf("testbed: Appliance.Cluster needs PrivateNets 1 or 2")
	case cfg.DataLUNSize < 0 || cfg.DataLUNSize == 0 && cfg.DataLUNFS != "":
		return nil, fmt.Errorf("testbed: DataLUNSize %d with DataLUNFS %q", cfg.DataLUNSize, cfg.DataLUNFS)
	}
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "wolfpack-testbed-")
		if err != nil {
			return nil, fmt.Errorf("testbed: create work dir: %w", err)
		}
		cfg.WorkDir = d
	}
	kdir, err := KernelDir()
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	vmlinuz, modDir, err := kernelImage(kdir)
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	sweepStale(cfg.Logger)

	tb := &Testbed{cfg: cfg, workDir: cfg.WorkDir, vmlinuz: vmlinuz}
	for range 100 {
		if _, err := rand.Read(tb.idBytes[:]); err != nil {
			return nil, err
		}
		tb.id = hex.EncodeToString(tb.idBytes[:])
		tb.prefix = "wp" + tb.id
		if links, _ := netns.LinksWithPrefix(tb.prefix); len(links) > 0 {
			continue
		}
		if tb.state, err = newState(tb.id, tb.prefix, tb.workDir); err == nil {
			break
		}
	}
	if tb.state == nil {
		return nil, fmt.Errorf("testbed: no free id: %w", err)
	}
	tb.log = cfg.Logger.With("testbed", tb.prefix)
	tb.client = &Client{netns: tb.prefix + "-client"}
	onsignal.Register(tb, onsignal.Kind{Package: "testbed", Noun: "testbed"})
	if err := tb.start(ctx, modDir); err != nil {
		if cerr := tb.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("and tearing down: %w", cerr))
		}
		return tb, fmt.Errorf("testbed %s: %w", tb.prefix, err)
	}
	return tb, nil
}

func (tb *Testbed) start(ctx context.Context, modDir string) error {
	t0 := time.Now()
	imageDone := make(chan error, 1)
	go func() {
		var err error
		if ap := tb.cfg.Appliance; ap != nil {
			var im applianceImages
			im, err = buildAppliance(ctx, tb.log, tb.vmlinuz, modDir, tb.cfg.Nodes, tb.cfg.Binaries, ap.UEFI)
			tb.image, tb.efi = im.initrd, im.efi
		} else {
			tb.image, err = buildImage(ctx, modDir, tb.cfg.Nodes, tb.cfg.Binaries)
		}
		tb.ImageTime = time.Since(t0)
		imageDone <- err
	}()
	sizes := []int64{tb.cfg.LUNSize}
	if tb.cfg.DataLUNSize > 0 {
		sizes = append(sizes, tb.cfg.DataLUNSize)
	}
	var err error
	tb.tgt, err = iscsitest.Run(ctx, iscsitest.Options{
		Target: "iqn.2024-01.org.wolfpack-ha.testbed:" + tb.id, Sizes: sizes, Dir: tb.workDir,
		LUNParams: "vendor_id=WOLFPACK,product_id=TESTBED-" + tb.id,
		Prepare: func(lun int, path string) error {
			tb.state.update(func(s *stateFile) { s.LUNPaths = append(s.LUNPaths, path) })
			if lun != dataLUN || tb.cfg.DataLUNFS == "" {
				return nil
			}
			mkfs := "mkfs." + tb.cfg.DataLUNFS
			out, err := exec.CommandContext(ctx, mkfs, "-F", "-q", path).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%s -F %s: %w: %s", mkfs, path, err, out)
			}
			return nil
		},
		OnStart: func(t *iscsitest.Tgt) { // recorded before tgtd starts, for a later sweep
			tb.state.update(func(s *stateFile) { s.TgtCtlPort, s.TgtPortal = t.Control, t.Portal })
		},
	})
	if err != nil {
		<-imageDone
		return fmt.Errorf("start iSCSI target: %w", err)
	}
	tb.state.update(func(s *stateFile) { s.TgtPid = tb.tgt.Pid() })
	tb.net, err = setupNetwork(ctx, tb.log, tb.prefix, tb.cfg.Nodes, tb.cfg.PrivateNets, tb.state)
	if err != nil {
		<-imageDone
		return fmt.Errorf("set up networks: %w", err)
	}
	if err := <-imageDone; err != nil {
		return fmt.Errorf("build image: %w", err)
	}
	if ap := tb.cfg.Appliance; ap != nil && ap.Cluster != "" {
		if err := tb.makeClusterFiles(ctx); err != nil {
			return fmt.Errorf("make the cluster's node files: %w", err)
		}
	}
	tb.log.Info("host side ready", "image", filepath.Base(tb.image), "image_time", tb.ImageTime.Round(time.Millisecond),
		"portal", tb.tgt.Portal, "setup", time.Since(t0).Round(time.Millisecond))

	for i := 1; i <= tb.cfg.Nodes; i++ {
		name := fmt.Sprintf("node%d", i)
		tb.nodes = append(tb.nodes, &Node{
			tb: tb, index: i, name: name, log: tb.log.With("node", name),
			console: filepath.Join(tb.workDir, name+".console"),
			sock:    filepath.Join(tb.workDir, name+".agent"),
			qmpSock: filepath.Join(tb.workDir, name+".qmp"),
			pending: make(map[uint64]chan agent.Response),
			down:    make(chan struct{}),
			hello:   make(chan agent.Hello, 1),
		})
	}
	errs := make([]error, len(tb.nodes))
	var wg sync.WaitGroup
	for i, n := range tb.nodes {
		wg.Go(func() { errs[i] = n.boot(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Close kills the VMs and tgtd and removes the networks, sockets and LUN
// file. Console logs stay in WorkDir. Calling it again returns the first result.
func (tb *Testbed) Close() error {
	tb.closeOnce.Do(func() {
		var errs []error
		for _, n := range tb.nodes {
			if err := n.stop(); err != nil {
				errs = append(errs, err)
			}
		}
		if tb.tgt != nil {
			if err := tb.tgt.Stop(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := removeNetwork(tb.prefix, tb.client.netns); err != nil {
			errs = append(errs, err)
		}
		// Anything the steps above missed (e.g. a QEMU that was still starting).
		for _, pid := range processes(tb.prefix, tb.tgtCtlPort()) {
			errs = append(errs, fmt.Errorf("process %d still alive after teardown, killing it", pid))
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if len(errs) == 0 {
			if err := tb.state.remove(); err != nil {
				errs = append(errs, err)
			}
		}
		onsignal.Unregister(tb)
		tb.closeErr = errors.Join(errs...)
		tb.log.Info("closed", "err", tb.closeErr)
	})
	return tb.closeErr
}

func (tb *Testbed) tgtCtlPort() int {
	if tb.tgt == nil {
		return 0
	}
	return tb.tgt.Control
}

// LogConsoles logs the last lines of every node's console to t.
func (tb *Testbed) LogConsoles(t testing.TB, lines int) {
	t.Helper()
	for _, n := range tb.nodes {
		t.Logf("console of %s (%s):\n%s", n.name, n.console, n.ConsoleTail(lines))
	}
}

// ID is the testbed's id; every host object it creates is named "wp"+ID+...
func (tb *Testbed) ID() string { return tb.id }

// Prefix is "wp"+ID, the prefix of the testbed's links and namespace.
func (tb *Testbed) Prefix() string { return tb.prefix }

// WorkDir holds the console logs, sockets and LUN file.
func (tb *Testbed) WorkDir() string { return tb.workDir }

// Nodes lists the VMs.
func (tb *Testbed) Nodes() []*Node { return tb.nodes }

// Node returns VM i, 1-based.
func (tb *Testbed) Node(i int) *Node { return tb.nodes[i-1] }

// Client is the client network namespace on the public network.
func (tb *Testbed) Client() *Client { return tb.client }

// LUNPath is the host file behind the shared LUN.
func (tb *Testbed) LUNPath() string { return tb.tgt.Images[0] }

// dataLUN is the data disk's LUN number on the target.
const dataLUN = 2

// DataTarget is the data disk's SCSI target id in the guests (H:0:10:0).
const DataTarget = 10

// disks is how many SCSI devices each guest has.
func (tb *Testbed) disks() int {
	if tb.cfg.DataLUNSize > 0 {
		return tb.cfg.Initiators + 1
	}
	return tb.cfg.Initiators
}

// DataLUNPath is the host file behind the data LUN ("" without one).
func (tb *Testbed) DataLUNPath() string {
	if len(tb.tgt.Images) < dataLUN {
		return ""
	}
	return tb.tgt.Images[dataLUN-1]
}

// TargetIQN is the iSCSI name of the target; the LUN is LUN 1.
func (tb *Testbed) TargetIQN() string { return tb.tgt.Target }

// Portal is the target's host:port on 127.0.0.1.
func (tb *Testbed) Portal() string { return tb.tgt.Portal }

// LUNURL is the libiscsi URL of the LUN, for iscsi-inq and friends on the host.
func (tb *Testbed) LUNURL() string { return "iscsi://" + tb.tgt.Portal + "/" + tb.tgt.Target + "/1" }

// InitiatorName is the iSCSI initiator name of node's nexus m.
func (tb *Testbed) InitiatorName(node, m int) string {
	return fmt.Sprintf("%s:node%d-i%d", tb.tgt.Target, node, m)
}

// TgtCtlPort is the control port of tgtd, for tgtadm -C.
func (tb *Testbed) TgtCtlPort() int { return tb.tgtCtlPort() }
