// Package iscsitest starts a real Linux SCSI target daemon (tgt's tgtd) for
// tests: its own portal on a free loopback port, its own control port, a
// sparse backing file per LUN, all removed when the test ends. Run is the
// core, usable without a testing.TB (package testbed uses it); Start wraps
// it for a test.
package iscsitest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultTarget is the target name Start uses when Options.Target is empty.
const DefaultTarget = "iqn.2024-01.org.example:quorum"

// DefaultPort is the portal's port when Options.Wrap is set and Port is zero.
const DefaultPort = 3260

// SocketDir holds tgtd's control sockets.
const SocketDir = "/var/run/tgtd"

// Options configure Start and Run.
type Options struct {
	// Target is the target's iSCSI name; empty means DefaultTarget.
	Target string
	// LUNs is the number of logical units (1..); zero means 1.
	LUNs int
	// Size is each LUN's size in bytes; zero means 64 MiB.
	Size int64
	// Sizes, if set, are the LUNs' sizes, LUN 1 first (zero: Size); it
	// overrides LUNs.
	Sizes []int64
	// Prepare, if set, is called with each LUN's backing file once it is
	// sized and before tgtd serves it, e.g. to make a filesystem on it.
	Prepare func(lun int, path string) error
	// BSOFlags, if set, is tgtadm --bsoflags for every LUN: "sync" opens
	// the backing file O_SYNC, so a write is on the medium when it is
	// answered (without it tgt answers a FUA write after
	// sync_file_range, which flushes neither the disk's cache nor the
	// file's metadata).
	BSOFlags string
	// LUNParams, if set, are tgtadm --params for every LUN, e.g.
	// "vendor_id=WOLFPACK,product_id=TESTBED".
	LUNParams string
	// Host is the address the portal listens on; empty means 127.0.0.1.
	Host string
	// Port is the portal's port; zero picks a free one (DefaultPort when
	// Wrap is set).
	Port int
	// Wrap, if set, prefixes the tgtd command line, e.g.
	// {"ip", "netns", "exec", "ns0"} to run the target in a namespace.
	// tgtadm talks to tgtd over a unix socket and runs unwrapped; Run
	// then learns from tgtadm, not by dialing, that the portal listens.
	Wrap []string
	// Digests makes the target offer CRC32C header and data digests (tgt
	// offers only None unless told).
	Digests bool
	// CHAPUser and CHAPSecret, if set, require CHAP from initiators.
	CHAPUser, CHAPSecret string
	// MutualUser and MutualSecret, if set, are the target's own
	// credentials for mutual CHAP (tgt's outgoing account).
	MutualUser, MutualSecret string
	// Dir holds the backing files (lun<N>.img, removed by Stop) and
	// tgtd.log (kept); empty means a new temporary directory, removed by
	// Stop. Start uses the test's TempDir.
	Dir string
	// OnStart, if set, is called just before tgtd starts (once per
	// attempt) with Portal, Control and Images set, e.g. to record them
	// for a later sweep should this process die.
	OnStart func(*Tgt)
}

// Tgt is a running tgtd with one target.
type Tgt struct {
	// Portal is host:port of the iSCSI portal.
	Portal string
	// Target is the target name.
	Target string
	// Control is tgtd's control port (tgtadm -C).
	Control int
	// Images are the backing files, LUN 1 first.
	Images []string

	cmd    *exec.Cmd
	log    string // tgtd's output
	tmpDir string // removed by Stop, if Run made it
	exit   chan struct{}
	once   sync.Once
	err    error
}

// Available reports why tgtd cannot be started here, or nil.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (tgtd binds ports and creates /var/run/tgtd sockets); run as root or with sudo")
	}
	for _, b := range []string{"tgtd", "tgtadm"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not found: apt-get install tgt (or make deps)", b)
		}
	}
	return nil
}

// Sockets are the files tgtd creates for control port ctl.
func Sockets(ctl int) []string {
	s := filepath.Join(SocketDir, "socket."+strconv.Itoa(ctl))
	return []string{s, s + ".lock"}
}

// Start starts tgtd for t with the options, or skips t with a hint when
// tgtd cannot run here (not root, tgt not installed) or the test is short.
// Everything is stopped and removed by t.Cleanup.
func Start(t testing.TB, o Options) *Tgt {
	t.Helper()
	if testing.Short() {
		t.Skip("tgtd integration test skipped in -short mode")
	}
	if err := Available(); err != nil {
		t.Skipf("tgtd integration test skipped: %v", err)
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	tg, err := Run(t.Context(), o)
	if err != nil {
		t.Fatalf("start tgtd: %v", err)
	}
	t.Cleanup(func() {
		if err := tg.Stop(); err != nil {
			t.Errorf("stop tgtd: %v", err)
		}
		if t.Failed() {
			t.Logf("tgtd output:\n%s", tg.Output())
		}
	})
	return tg
}

// Run starts tgtd with the options and sets up its target, retrying a few
// times on clashes (control or portal port). The caller must Stop it; tgtd
// also dies with the thread that started it (PDEATHSIG).
func Run(ctx context.Context, o Options) (tg *Tgt, err error) {
	if o.Target == "" {
		o.Target = DefaultTarget
	}
	if o.LUNs <= 0 {
		o.LUNs = 1
	}
	if o.Size <= 0 {
		o.Size = 64 << 20
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	tmpDir := ""
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "iscsitest-"); err != nil {
			return nil, err
		}
		tmpDir = o.Dir
	}
	if len(o.Sizes) > 0 {
		o.LUNs = len(o.Sizes)
	}
	var images []string
	removeImages := func() {
		for _, img := range images {
			os.Remove(img)
		}
		if tmpDir != "" {
			os.RemoveAll(tmpDir)
		}
	}
	for lun := 1; lun <= o.LUNs; lun++ {
		img := filepath.Join(o.Dir, fmt.Sprintf("lun%d.img", lun))
		size := o.Size
		if lun <= len(o.Sizes) && o.Sizes[lun-1] > 0 {
			size = o.Sizes[lun-1]
		}
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			removeImages()
			return nil, fmt.Errorf("create backing file: %w", err)
		}
		images = append(images, img)
		if err := os.Truncate(img, size); err != nil {
			removeImages()
			return nil, fmt.Errorf("size backing file: %w", err)
		}
		if o.Prepare != nil {
			if err := o.Prepare(lun, img); err != nil {
				removeImages()
				return nil, fmt.Errorf("prepare LUN %d: %w", lun, err)
			}
		}
	}
	var errs []error
	for attempt := 0; attempt < 5 && tg == nil && ctx.Err() == nil; attempt++ {
		tg, err = start(ctx, o, images)
		if err != nil {
			errs = append(errs, fmt.Errorf("attempt %d: %w", attempt+1, err))
		}
	}
	if tg == nil {
		removeImages()
		return nil, errors.Join(append(errs, ctx.Err())...)
	}
	tg.tmpDir = tmpDir
	steps := [][]string{{"--op", "new", "--mode", "target", "--tid", "1", "-T", o.Target}}
	for lun, img := range tg.Images {
		step := []string{"--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", strconv.Itoa(lun + 1), "-b", img}
		if o.BSOFlags != "" {
			step = append(step, "--bsoflags", o.BSOFlags)
		}
		steps = append(steps, step)
		if o.LUNParams != "" {
			steps = append(steps, []string{"--op", "update", "--mode", "logicalunit", "--tid", "1", "--lun", strconv.Itoa(lun + 1), "--params", o.LUNParams})
		}
	}
	steps = append(steps, []string{"--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"})
	if o.Digests {
		for _, k := range []string{"HeaderDigest", "DataDigest"} {
			steps = append(steps, []string{"--op", "update", "--mode", "target", "--tid", "1", "--name", k, "--value", "CRC32C,None"})
		}
	}
	if o.CHAPUser != "" {
		steps = append(steps,
			[]string{"--op", "new", "--mode", "account", "--user", o.CHAPUser, "--password", o.CHAPSecret},
			[]string{"--op", "bind", "--mode", "account", "--tid", "1", "--user", o.CHAPUser})
	}
	if o.MutualUser != "" {
		steps = append(steps,
			[]string{"--op", "new", "--mode", "account", "--user", o.MutualUser, "--password", o.MutualSecret},
			[]string{"--op", "bind", "--mode", "account", "--tid", "1", "--user", o.MutualUser, "--outgoing"})
	}
	for _, s := range steps {
		if err := tg.Admin(append([]string{"--lld", "iscsi"}, s...)...); err != nil {
			return nil, errors.Join(err, tg.Stop())
		}
	}
	return tg, nil
}

func start(ctx context.Context, o Options, images []string) (*Tgt, error) {
	port := o.Port
	if port == 0 && len(o.Wrap) > 0 {
		// A wrapped tgtd (another network namespace) cannot be probed
		// for a free port from here; a fresh namespace has them all.
		port = DefaultPort
	}
	if port == 0 {
		var err error
		if port, err = freePort(o.Host); err != nil {
			return nil, err
		}
	}
	ctl := 1024 + rand.IntN(32767-1024) // tgtd accepts up to 32767
	for _, s := range Sockets(ctl) {
		if _, err := os.Lstat(s); !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("control port %d in use", ctl)
		}
	}
	tg := &Tgt{Portal: net.JoinHostPort(o.Host, strconv.Itoa(port)), Target: o.Target, Control: ctl, Images: images,
		log: filepath.Join(o.Dir, "tgtd.log"), exit: make(chan struct{})}
	if o.OnStart != nil {
		o.OnStart(tg)
	}
	logf, err := os.Create(tg.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := append(append([]string(nil), o.Wrap...), "tgtd", "-f", "--iscsi", "portal="+tg.Portal, "-C", strconv.Itoa(ctl))
	tg.cmd = exec.Command(args[0], args[1:]...)
	tg.cmd.Stdout, tg.cmd.Stderr, tg.cmd.Dir = logf, logf, o.Dir
	tg.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := tg.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { tg.cmd.Wait(); close(tg.exit) }()
	// Wait for the control socket, then for the portal.
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-tg.exit:
			tg.removeSockets()
			return nil, fmt.Errorf("tgtd exited at start: %s", tg.Output())
		default:
		}
		if tg.Admin("--op", "show", "--mode", "system") == nil {
			if len(o.Wrap) > 0 {
				// This process may not reach the portal (another
				// network namespace): ask tgtd whether it listens.
				if out, err := exec.Command("tgtadm", "-C", strconv.Itoa(ctl), "--lld", "iscsi", "--op", "show", "--mode", "portal").CombinedOutput(); err == nil && bytes.Contains(out, []byte("Portal: "+tg.Portal)) {
					return tg, nil
				}
			} else if c, err := net.DialTimeout("tcp", tg.Portal, time.Second); err == nil {
				c.Close()
				return tg, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			tg.stop()
			return nil, fmt.Errorf("tgtd not ready after %v (%v): %s", 10*time.Second, ctx.Err(), tg.Output())
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded by deadline
	}
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr returns the iscsi:// address of lun (1-based, as tgt numbers them).
func (tg *Tgt) Addr(lun int) string {
	return fmt.Sprintf("iscsi://%s/%s/%d", tg.Portal, tg.Target, lun)
}

// Pid is tgtd's process id.
func (tg *Tgt) Pid() int { return tg.cmd.Process.Pid }

// Output is what tgtd has written to stdout and stderr (Dir/tgtd.log).
func (tg *Tgt) Output() string {
	b, _ := os.ReadFile(tg.log)
	return string(b)
}

// Admin runs tgtadm against this tgtd.
func (tg *Tgt) Admin(args ...string) error {
	full := append([]string{"-C", strconv.Itoa(tg.Control)}, args...)
	out, err := exec.Command("tgtadm", full...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tgtadm %s: %v: %s", strings.Join(full, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Show returns `tgtadm --op show --mode target` output (sessions, I_T
// nexus, LUNs), for debugging.
func (tg *Tgt) Show() string {
	out, _ := exec.Command("tgtadm", "-C", strconv.Itoa(tg.Control), "--lld", "iscsi", "--op", "show", "--mode", "target").CombinedOutput()
	return string(out)
}

// Stop stops tgtd: it deletes the target (--force ends sessions), then
// `tgtadm --op delete --mode system`, then SIGKILL if tgtd is still alive
// after 5 s; it removes the control sockets and the backing files. It is
// safe to call more than once and returns the first result.
func (tg *Tgt) Stop() error {
	tg.once.Do(func() {
		errs := []error{tg.stop()}
		for _, img := range tg.Images {
			if err := os.Remove(img); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
		if tg.tmpDir != "" {
			errs = append(errs, os.RemoveAll(tg.tmpDir))
		}
		tg.err = errors.Join(errs...)
	})
	return tg.err
}

func (tg *Tgt) stop() error {
	var errs []error
	select {
	case <-tg.exit:
		errs = append(errs, fmt.Errorf("tgtd had exited before Stop: %v", tg.cmd.ProcessState))
	default:
		// tgt refuses to delete a system that still has targets, and a
		// target with live sessions unless forced.
		if e := tg.Admin("--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1", "--force"); e != nil {
			_ = tg.Admin("--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1")
		}
		errs = append(errs, tg.Admin("--op", "delete", "--mode", "system"))
		select {
		case <-tg.exit:
		case <-time.After(5 * time.Second):
			tg.cmd.Process.Kill()
			<-tg.exit
			errs = append(errs, errors.New("tgtd did not exit after delete system; killed"))
		}
	}
	return errors.Join(append(errs, tg.removeSockets())...)
}

func (tg *Tgt) removeSockets() error {
	var errs []error
	for _, s := range Sockets(tg.Control) {
		if err := os.Remove(s); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
