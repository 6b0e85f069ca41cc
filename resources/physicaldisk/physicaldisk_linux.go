package physicaldisk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/rtsched"
	"github.com/wolfpack-ha/wolfpack/resources"
	"github.com/wolfpack-ha/wolfpack/scsi"
	"golang.org/x/sys/unix"
)

// TypeName is the type's name in the database.
const TypeName = "physical_disk"

// Defaults and bounds.
const (
	// DefaultStopTimeout is stop_timeout_ms's default.
	DefaultStopTimeout = 10 * time.Second
	// prTimeout bounds each group of reservation commands (a takeover, a
	// check, a release), so that a Terminate waiting for a running Online
	// waits at most this long for a command in flight.
	prTimeout = 5 * time.Second
	// terminateTimeout bounds a Terminate's release of the reservation.
	terminateTimeout = 3 * time.Second
	// killWait bounds the wait for killed holders to let go of the
	// filesystem.
	killWait = 2 * time.Second
	// retryEvery is how often a busy unmount is tried again.
	retryEvery = 100 * time.Millisecond
)

// fsckPath is the PATH fsck runs with (resmon's may lack the sbin
// directories).
const fsckPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

// Type is the physical_disk type.
type Type struct{}

// Name is "physical_disk".
func (Type) Name() string { return TypeName }

// Open checks the properties and derives this node's reservation key from
// node.id. It touches neither the disk nor the mounts. Every property
// error is fatal: the same configuration fails on every node.
func (Type) Open(name string, props resources.Props, log *slog.Logger) (resources.Instance, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bad := func(prop, format string, args ...any) error {
		return resources.Fatal(fmt.Errorf("%s %s: property %s: %s", TypeName, name, prop, fmt.Sprintf(format, args...)))
	}
	d := &disk{name: name, log: log, scratch: -1}
	d.device = props.Str("device", "")
	if d.device == "" || !filepath.IsAbs(d.device) {
		return nil, bad("device", "%q is not an absolute path", d.device)
	}
	d.mountPoint = filepath.Clean(props.Str("mount_point", ""))
	if !filepath.IsAbs(d.mountPoint) || d.mountPoint == "/" {
		return nil, bad("mount_point", "%q is not an absolute path other than /", props.Str("mount_point", ""))
	}
	d.fstype = props.Str("fstype", "ext4")
	switch d.fstype {
	case "ext2", "ext3", "ext4", "xfs":
	default:
		return nil, bad("fstype", "%q is not one of ext2, ext3, ext4, xfs", d.fstype)
	}
	d.fsck = props.Str("fsck", "auto")
	switch d.fsck {
	case "auto", "force", "never":
	default:
		return nil, bad("fsck", "%q is not one of auto, force, never", d.fsck)
	}
	var err error
	if d.flags, d.data, err = parseMountOptions(props.Str("mount_options", "")); err != nil {
		return nil, bad("mount_options", "%v", err)
	}
	if _, ok := props["scratch_lba"]; ok {
		if d.scratch = props.Int("scratch_lba", -1); d.scratch < 0 {
			return nil, bad("scratch_lba", "must be a non-negative int")
		}
	}
	d.stopTimeout = time.Duration(props.Int("stop_timeout_ms", DefaultStopTimeout.Milliseconds())) * time.Millisecond
	if d.stopTimeout <= 0 {
		return nil, bad("stop_timeout_ms", "must be positive")
	}
	if d.key, err = nodeKey(props); err != nil {
		return nil, resources.Fatal(fmt.Errorf("%s %s: %w", TypeName, name, err))
	}
	return d, nil
}

type disk struct {
	name, device, mountPoint, fstype, fsck string
	flags                                  uintptr
	data                                   string
	scratch                                int64 // -1: the default
	stopTimeout                            time.Duration
	key                                    uint64
	log                                    *slog.Logger

	mu sync.Mutex // serialises Online, Offline and Terminate

	cmu    sync.Mutex
	cancel context.CancelFunc // of the running Online or Offline

	dmu  sync.Mutex
	dev  *scsi.SGIODevice // opened on first use, closed offline
	rdev uint64           // the block device's number
	capa *scsi.Capacity   // read on first use
}

// begin derives the context of an Online or Offline that Terminate cancels.
func (d *disk) begin(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	d.cmu.Lock()
	d.cancel = cancel
	d.cmu.Unlock()
	return ctx, func() {
		d.cmu.Lock()
		d.cancel = nil
		d.cmu.Unlock()
		cancel()
	}
}

// open returns the SG_IO path to the device, opening it on first use. A
// device that is missing or not a block device is a hard failure: this
// node cannot reach the disk, another may.
func (d *disk) open() (*scsi.SGIODevice, uint64, error) {
	d.dmu.Lock()
	defer d.dmu.Unlock()
	if d.dev != nil {
		return d.dev, d.rdev, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(d.device, &st); err != nil {
		return nil, 0, resources.Hard(fmt.Errorf("device %s: %w", d.device, err))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return nil, 0, resources.Hard(fmt.Errorf("device %s is not a block device", d.device))
	}
	dev, err := scsi.OpenSGIO(d.device)
	if err != nil {
		return nil, 0, resources.Hard(err)
	}
	d.dev, d.rdev = dev, st.Rdev
	return dev, st.Rdev, nil
}

func (d *disk) closeDevice() {
	d.dmu.Lock()
	defer d.dmu.Unlock()
	if d.dev != nil {
		if err := d.dev.Close(); err != nil {
			d.log.Warn("close device", "device", d.device, "err", err)
		}
		d.dev, d.capa = nil, nil
	}
}

// Online takes the disk (the reservation, fencing every other
// registrant), drops the block device's cached blocks (another node wrote
// the disk since this one last read it), checks the filesystem as fsck
// says, and mounts it.
func (d *disk) Online(ctx context.Context) error {
	ctx, done := d.begin(ctx)
	defer done()
	d.mu.Lock()
	defer d.mu.Unlock()
	dev, rdev, err := d.open()
	if err != nil {
		return err
	}
	m, mounted, err := mountedOn(d.mountPoint)
	if err != nil {
		return err
	}
	if mounted && m.dev != rdev {
		return resources.Hard(fmt.Errorf("mount point %s already has %s (%s) mounted", d.mountPoint, m.source, m.fstype))
	}
	pctx, cancel := context.WithTimeout(ctx, prTimeout)
	err = takeOver(pctx, dev, d.key, d.log)
	cancel()
	if err != nil {
		return fmt.Errorf("take disk %s: %w", d.device, err)
	}
	if mounted { // by an earlier resmon: the reservation was all that was missing
		d.log.Info("already mounted", "device", d.device, "mount_point", d.mountPoint)
		return nil
	}
	if err := flushBuffers(d.device); err != nil {
		return err
	}
	if err := d.check(ctx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mount %s: %w", d.mountPoint, err)
	}
	if err := os.MkdirAll(d.mountPoint, 0o755); err != nil {
		return resources.Hard(fmt.Errorf("create mount point: %w", err))
	}
	if err := unix.Mount(d.device, d.mountPoint, d.fstype, d.flags, d.data); err != nil {
		err = fmt.Errorf("mount %s on %s (%s, %q): %w", d.device, d.mountPoint, d.fstype, d.data, os.NewSyscallError("mount", err))
		if errors.Is(err, unix.ENODEV) { // the kernel here lacks the filesystem
			return resources.Hard(err)
		}
		return err
	}
	d.log.Info("mounted", "device", d.device, "mount_point", d.mountPoint, "fstype", d.fstype)
	return nil
}

// flushBuffers writes back and drops the block device's cached blocks
// (BLKFLSBUF), so that fsck and the mount read what the disk holds now.
func flushBuffers(device string) error {
	f, err := os.Open(device)
	if err != nil {
		return resources.Hard(fmt.Errorf("flush buffers of %s: %w", device, err))
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0); err != nil {
		return fmt.Errorf("flush buffers of %s: %w", device, os.NewSyscallError("ioctl BLKFLSBUF", err))
	}
	return nil
}

// check runs the filesystem check fsck asks for: for ext*, fsck.<fstype>
// -p (preen: what is safe to repair without a human) or, forced, -f -p;
// for xfs, nothing unless forced (the log is replayed at mount), then
// xfs_repair.
func (d *disk) check(ctx context.Context) error {
	var prog string
	var args []string
	switch {
	case d.fsck == "never", d.fsck == "auto" && d.fstype == "xfs":
		return nil
	case d.fstype == "xfs":
		prog, args = "xfs_repair", []string{d.device}
	case d.fsck == "force":
		prog, args = "fsck."+d.fstype, []string{"-f", "-p", d.device}
	default:
		prog, args = "fsck."+d.fstype, []string{"-p", d.device}
	}
	path, err := lookSbin(prog)
	if err != nil {
		return resources.Hard(fmt.Errorf("check the filesystem: %w", err))
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = []string{fsckPath}
	cmd.WaitDelay = time.Second
	t0 := time.Now()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = rtsched.Start(cmd, d.log) // at normal scheduling, not resmon's
	if err == nil {
		err = cmd.Wait()
	}
	status := cmd.ProcessState.ExitCode()
	d.log.Info("filesystem checked", "command", path+" "+strings.Join(args, " "), "status", status,
		"took", time.Since(t0).Round(time.Millisecond), "output", trim(out.String(), 2000))
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && status >= 0:
		if d.fstype == "xfs" {
			return resources.Fatal(fmt.Errorf("%s: exit status %d: the filesystem needs repair by hand", prog, status))
		}
		return fsckError(prog, status)
	case err != nil:
		return fmt.Errorf("check the filesystem: %s: %w", prog, err)
	}
	return nil
}

// lookSbin finds prog in the sbin and bin directories, then in PATH.
func lookSbin(prog string) (string, error) {
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, prog)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return exec.LookPath(prog)
}

func trim(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Offline unmounts the filesystem, trying again while it is busy; after
// stop_timeout_ms it kills the processes that hold it and unmounts again.
// Then it releases the reservation and unregisters.
func (d *disk) Offline(ctx context.Context) error {
	ctx, done := d.begin(ctx)
	defer done()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.unmount(ctx, true); err != nil {
		return err
	}
	return d.release(ctx)
}

// Terminate is Offline without grace: it kills the holders at once and
// detaches the filesystem (a lazy unmount) if it is still busy, then
// releases the reservation with a short bound. A running Online or
// Offline is cancelled first; Terminate waits for it at most as long as a
// reservation command in flight (prTimeout).
func (d *disk) Terminate() {
	d.cmu.Lock()
	if d.cancel != nil {
		d.cancel()
	}
	d.cmu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), terminateTimeout)
	defer cancel()
	if err := d.unmount(ctx, false); err != nil {
		d.log.Error("terminate: unmount", "mount_point", d.mountPoint, "err", err)
	}
	if err := d.release(ctx); err != nil {
		d.log.Warn("terminate: release", "err", err)
	}
}

// release gives up the reservation and closes the device.
func (d *disk) release(ctx context.Context) error {
	defer d.closeDevice()
	dev, _, err := d.open()
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, prTimeout)
	defer cancel()
	if err := release(pctx, dev, d.key); err != nil {
		return fmt.Errorf("release disk %s: %w", d.device, err)
	}
	d.log.Info("released", "key", keyString(d.key))
	return nil
}

// unmount unmounts the disk's filesystem from the mount point, if it is
// mounted there. While busy: with grace, it tries again until
// stop_timeout_ms (or ctx) ends; then it kills the holders and tries again
// for a moment; without grace, it kills them at once and, as the last
// resort, detaches the filesystem.
func (d *disk) unmount(ctx context.Context, grace bool) error {
	m, mounted, err := mountedOn(d.mountPoint)
	if err != nil {
		return err
	}
	if !mounted {
		return nil
	}
	// Whether it is this disk's filesystem: by device number, or by name
	// when the device node is gone.
	var st unix.Stat_t
	if err := unix.Stat(d.device, &st); err == nil && m.dev != st.Rdev || err != nil && m.source != d.device {
		d.log.Warn("not unmounting another filesystem", "mount_point", d.mountPoint, "source", m.source)
		return nil
	}
	busy := func() (bool, error) {
		err := unix.Unmount(d.mountPoint, 0)
		switch {
		case err == nil:
			d.log.Info("unmounted", "mount_point", d.mountPoint)
			return false, nil
		case errors.Is(err, unix.EBUSY):
			return true, nil
		case errors.Is(err, unix.EINVAL): // no longer a mount point
			return false, nil
		}
		return false, fmt.Errorf("unmount %s: %w", d.mountPoint, os.NewSyscallError("umount2", err))
	}
	if grace {
		stop, cancel := context.WithTimeout(ctx, d.stopTimeout)
		b, err := retry(stop, busy)
		cancel()
		if !b || err != nil {
			return err
		}
		d.log.Warn("filesystem still busy: killing its holders", "mount_point", d.mountPoint, "stop_timeout", d.stopTimeout)
	} else if b, err := busy(); !b || err != nil {
		return err
	}
	d.killHolders()
	wait, cancel := context.WithTimeout(context.Background(), killWait)
	b, err := retry(wait, busy)
	cancel()
	if !b || err != nil {
		return err
	}
	if grace {
		return fmt.Errorf("unmount %s: still busy after its holders were killed", d.mountPoint)
	}
	if err := unix.Unmount(d.mountPoint, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach %s: %w", d.mountPoint, os.NewSyscallError("umount2", err))
	}
	d.log.Warn("filesystem detached (lazy unmount): still busy", "mount_point", d.mountPoint)
	return nil
}

// retry calls f until it reports not busy, fails, or ctx ends (then it
// reports busy).
func retry(ctx context.Context, f func() (bool, error)) (bool, error) {
	t := time.NewTicker(retryEvery)
	defer t.Stop()
	for {
		if b, err := f(); !b || err != nil {
			return b, err
		}
		select {
		case <-ctx.Done():
			return true, nil
		case <-t.C:
		}
	}
}

func (d *disk) killHolders() {
	for _, pid := range holders(d.mountPoint) {
		err := syscall.Kill(pid, syscall.SIGKILL)
		d.log.Warn("killed a holder of the filesystem", "pid", pid, "err", err)
	}
}

// LooksAlive: the reservation is still this node's (READ RESERVATION and
// READ KEYS) and the filesystem is mounted.
func (d *disk) LooksAlive() error {
	dev, rdev, err := d.open()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), prTimeout)
	defer cancel()
	if err := checkHeld(ctx, dev, d.key); err != nil {
		return fmt.Errorf("disk %s: %w", d.device, err)
	}
	m, mounted, err := mountedOn(d.mountPoint)
	switch {
	case err != nil:
		return err
	case !mounted || m.dev != rdev:
		return fmt.Errorf("%s is not mounted on %s", d.device, d.mountPoint)
	}
	return nil
}

// IsAlive reads the scratch block through SG_IO and writes it back with
// its own content (FUA), so a RESERVATION CONFLICT shows; where there is
// no block to write, it reads and checks the reservation instead.
func (d *disk) IsAlive(ctx context.Context) error {
	dev, _, err := d.open()
	if err != nil {
		return err
	}
	c, err := d.capacity(ctx, dev)
	if err != nil {
		return err
	}
	lba, write := d.scratchBlock(c)
	if lba >= c.Blocks() {
		return resources.Fatal(fmt.Errorf("scratch_lba %d: the disk has %d blocks", lba, c.Blocks()))
	}
	buf := make([]byte, c.BlockSize)
	if err := scsi.Read16(ctx, dev, lba, 1, buf); err != nil {
		return fmt.Errorf("disk %s: read block %d: %w", d.device, lba, err)
	}
	if !write {
		pctx, cancel := context.WithTimeout(ctx, prTimeout)
		defer cancel()
		return checkHeld(pctx, dev, d.key)
	}
	if err := scsi.Write16(ctx, dev, lba, 1, buf, true); err != nil {
		return fmt.Errorf("disk %s: write block %d: %w", d.device, lba, err)
	}
	return nil
}

// scratchBlock is the block IsAlive reads and whether it writes it:
// scratch_lba if set; else, for ext*, LBA 0 when a block is at most 1024
// bytes (the boot block, which ext never writes: with larger blocks LBA 0
// holds the superblock too); else LBA 0, read only.
func (d *disk) scratchBlock(c scsi.Capacity) (uint64, bool) {
	if d.scratch >= 0 {
		return uint64(d.scratch), true
	}
	return 0, strings.HasPrefix(d.fstype, "ext") && c.BlockSize <= 1024
}

func (d *disk) capacity(ctx context.Context, dev scsi.Device) (scsi.Capacity, error) {
	d.dmu.Lock()
	c := d.capa
	d.dmu.Unlock()
	if c != nil {
		return *c, nil
	}
	got, err := scsi.ReadCapacity16(ctx, dev)
	if err != nil {
		return scsi.Capacity{}, fmt.Errorf("disk %s: %w", d.device, err)
	}
	if got.BlockSize == 0 {
		return scsi.Capacity{}, fmt.Errorf("disk %s: block size 0", d.device)
	}
	d.dmu.Lock()
	d.capa = &got
	d.dmu.Unlock()
	return got, nil
}

// Close releases the device; the resource is offline.
func (d *disk) Close() { d.closeDevice() }
