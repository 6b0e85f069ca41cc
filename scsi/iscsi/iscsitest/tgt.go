// Package iscsitest starts a real Linux SCSI target daemon (tgt's tgtd) for
// tests: its own portal on a free loopback port, its own control port, a
// sparse backing file per LUN, all removed when the test ends.
package iscsitest

import (
	"bytes"
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
	"testing"
	"time"
)

// DefaultTarget is the target name Start uses when Options.Target is empty.
const DefaultTarget = "iqn.2024-01.org.example:quorum"

// DefaultPort is the portal's port when Options.Wrap is set and Port is zero.
const DefaultPort = 3260

// Options configure Start.
type Options struct {
	// Target is the target's iSCSI name; empty means DefaultTarget.
	Target string
	// LUNs is the number of logical units (1..); zero means 1.
	LUNs int
	// Size is each LUN's size in bytes; zero means 64 MiB.
	Size int64
	// Host is the address the portal listens on; empty means 127.0.0.1.
	Host string
	// Port is the portal's port; zero picks a free one (DefaultPort when
	// Wrap is set).
	Port int
	// Wrap, if set, prefixes the tgtd command line, e.g.
	// {"ip", "netns", "exec", "ns0"} to run the target in a namespace.
	// tgtadm talks to tgtd over a unix socket and runs unwrapped; Start
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

	cmd  *exec.Cmd
	out  *lockedBuffer
	exit chan struct{}
	once sync.Once
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
	dir := t.TempDir()
	var tg *Tgt
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		tg, err = start(t, o, dir)
		if err == nil {
			break
		}
		t.Logf("starting tgtd (attempt %d): %v", attempt+1, err)
	}
	if err != nil {
		t.Fatalf("start tgtd: %v", err)
	}
	t.Cleanup(func() {
		if err := tg.Stop(); err != nil {
			t.Errorf("stop tgtd: %v", err)
		}
		if t.Failed() {
			t.Logf("tgtd output:\n%s", tg.out.String())
		}
	})
	for lun := 1; lun <= o.LUNs; lun++ {
		img := filepath.Join(dir, fmt.Sprintf("lun%d.img", lun))
		f, err := os.Create(img)
		if err == nil {
			err = f.Truncate(o.Size)
			f.Close()
		}
		if err != nil {
			t.Fatalf("create backing file: %v", err)
		}
		tg.Images = append(tg.Images, img)
	}
	steps := [][]string{{"--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", "1", "-T", o.Target}}
	for lun, img := range tg.Images {
		steps = append(steps, []string{"--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", strconv.Itoa(lun + 1), "-b", img})
	}
	steps = append(steps, []string{"--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"})
	if o.Digests {
		for _, k := range []string{"HeaderDigest", "DataDigest"} {
			steps = append(steps, []string{"--lld", "iscsi", "--op", "update", "--mode", "target", "--tid", "1", "--name", k, "--value", "CRC32C,None"})
		}
	}
	if o.CHAPUser != "" {
		steps = append(steps,
			[]string{"--lld", "iscsi", "--op", "new", "--mode", "account", "--user", o.CHAPUser, "--password", o.CHAPSecret},
			[]string{"--lld", "iscsi", "--op", "bind", "--mode", "account", "--tid", "1", "--user", o.CHAPUser})
	}
	if o.MutualUser != "" {
		steps = append(steps,
			[]string{"--lld", "iscsi", "--op", "new", "--mode", "account", "--user", o.MutualUser, "--password", o.MutualSecret},
			[]string{"--lld", "iscsi", "--op", "bind", "--mode", "account", "--tid", "1", "--user", o.MutualUser, "--outgoing"})
	}
	for _, s := range steps {
		if err := tg.Admin(s...); err != nil {
			t.Fatal(err)
		}
	}
	return tg
}

func start(t testing.TB, o Options, dir string) (*Tgt, error) {
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
	ctl := 1000 + rand.IntN(31000) // tgtd accepts up to 32767
	if _, err := os.Stat(fmt.Sprintf("/var/run/tgtd/socket.%d", ctl)); err == nil {
		return nil, fmt.Errorf("control port %d in use", ctl)
	}
	portal := net.JoinHostPort(o.Host, strconv.Itoa(port))
	args := append(append([]string(nil), o.Wrap...), "tgtd", "-f", "--iscsi", "portal="+portal, "-C", strconv.Itoa(ctl))
	cmd := exec.Command(args[0], args[1:]...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	tg := &Tgt{Portal: portal, Target: o.Target, Control: ctl, cmd: cmd, out: out, exit: make(chan struct{})}
	go func() { cmd.Wait(); close(tg.exit) }()
	// Wait for the control socket, then for the portal.
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-tg.exit:
			return nil, fmt.Errorf("tgtd exited at start: %s", out.String())
		default:
		}
		if tg.Admin("--op", "show", "--mode", "system") == nil {
			if len(o.Wrap) > 0 {
				// This process may not reach the portal (another
				// network namespace): ask tgtd whether it listens.
				if out, err := exec.Command("tgtadm", "-C", strconv.Itoa(ctl), "--lld", "iscsi", "--op", "show", "--mode", "portal").CombinedOutput(); err == nil && bytes.Contains(out, []byte("Portal: "+portal)) {
					return tg, nil
				}
			} else if c, err := net.DialTimeout("tcp", portal, time.Second); err == nil {
				c.Close()
				return tg, nil
			}
		}
		if time.Now().After(deadline) {
			tg.Stop()
			return nil, fmt.Errorf("tgtd not ready after 10 s: %s", out.String())
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

// Stop stops tgtd: `tgtadm --op delete --mode system`, then SIGKILL if it
// is still alive after 5 s. It is safe to call more than once.
func (tg *Tgt) Stop() error {
	var err error
	tg.once.Do(func() {
		// tgt refuses to delete a system that still has targets, and a
		// target with live sessions unless forced.
		if e := tg.Admin("--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1", "--force"); e != nil {
			_ = tg.Admin("--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", "1")
		}
		if e := tg.Admin("--op", "delete", "--mode", "system"); e != nil {
			err = e
		}
		select {
		case <-tg.exit:
		case <-time.After(5 * time.Second):
			tg.cmd.Process.Kill()
			<-tg.exit
			if err == nil {
				err = errors.New("tgtd did not exit after delete system; killed")
			}
		}
		os.Remove(fmt.Sprintf("/var/run/tgtd/socket.%d", tg.Control))
		os.Remove(fmt.Sprintf("/var/run/tgtd/socket.%d.lock", tg.Control))
	})
	return err
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
