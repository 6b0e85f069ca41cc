package testbed

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wolfpack-ha/wolfpack/initramfs"
	"github.com/wolfpack-ha/wolfpack/initramfs/boot"
	"github.com/wolfpack-ha/wolfpack/testbed/agent"
)

// Result is what a program run in a guest or in the client namespace returned.
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// ExitError reports a program that ran and exited with a non-zero status or
// was killed (ExitCode -1).
type ExitError struct {
	Argv   []string
	Signal string
	Result
}

func (e *ExitError) Error() string {
	s := fmt.Sprintf("%s: exit status %d", strings.Join(e.Argv, " "), e.ExitCode)
	if e.Signal != "" {
		s = fmt.Sprintf("%s: killed by %s", strings.Join(e.Argv, " "), e.Signal)
	}
	if msg := strings.TrimSpace(string(e.Stderr)); msg != "" {
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		s += ": " + msg
	}
	return s
}

// ErrNodeDown is returned by requests to a node whose QEMU has exited or whose
// agent connection is gone.
var ErrNodeDown = errors.New("testbed: node is down")

// Node is one VM.
type Node struct {
	tb      *Testbed
	index   int
	name    string
	log     *slog.Logger
	console string
	sock    string
	qmpSock string

	cmd    *exec.Cmd
	exited chan struct{} // closed when QEMU has exited

	conn    net.Conn
	wmu     sync.Mutex // serializes request lines
	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan agent.Response
	down    chan struct{} // closed when the agent connection is gone
	hello   chan agent.Hello

	disks    []agent.Disk
	started  time.Time     // QEMU start
	BootTime time.Duration // QEMU start to agent ready
}

// Index is the node's 1-based number.
func (n *Node) Index() int { return n.index }

// Name is the node's host name in the guest, "node<N>".
func (n *Node) Name() string { return n.name }

// Addr is the node's address on network k (0 public, 1.. private).
func (n *Node) Addr(k int) netip.Prefix { return NodeAddr(k, n.index) }

// Pid is the process id of the node's QEMU.
func (n *Node) Pid() int {
	if n.cmd == nil || n.cmd.Process == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// AgentSocket is the host end of the node's agent serial port.
func (n *Node) AgentSocket() string { return n.sock }

// QMPSocket is the QEMU monitor socket of the node.
func (n *Node) QMPSocket() string { return n.qmpSock }

// ConsolePath is the file that holds the guest console output.
func (n *Node) ConsolePath() string { return n.console }

// ConsoleTail returns the last lines of the guest console.
func (n *Node) ConsoleTail(lines int) string { return tail(n.console, lines) }

// Disks lists the guest's SCSI generic devices as found at boot.
func (n *Node) Disks() []agent.Disk { return n.disks }

// Disk returns the guest path of nexus i (1-based), e.g. /dev/sg1, found by
// its SCSI address H:0:i:0; "" if there is none.
func (n *Node) Disk(i int) string {
	for _, d := range n.disks {
		if d.Target == i && d.Channel == 0 && d.LUN == 0 {
			return d.SG
		}
	}
	return ""
}

// DataDisk returns the guest's data disk (Config.DataLUNSize): its
// block device (Block, e.g. /dev/sdb) and its sg device.
func (n *Node) DataDisk() (agent.Disk, bool) {
	for _, d := range n.disks {
		if d.Target == DataTarget && d.Channel == 0 && d.LUN == 0 {
			return d, true
		}
	}
	return agent.Disk{}, false
}

func (n *Node) qemuArgs(tb *Testbed) []string {
	id := tb.prefix + "-" + n.name
	args := []string{
		"-name", id + ",process=" + id,
		"-accel", "tcg",
		// q35: on the older i440fx machine the guest kernel evaluates
		// ACPI's PCI interrupt links for every virtio device it enables,
		// about 0.3 s each under TCG (1.4 s of the appliance's 5 devices);
		// on q35 the same probes take 30 ms in all (docs/appliance.md,
		// "Boot time").
		"-machine", "q35",
		"-m", strconv.Itoa(tb.cfg.Memory),
		"-smp", "1",
		"-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
		"-chardev", "file,id=console,path=" + n.console,
		"-serial", "chardev:console",
		"-chardev", "socket,id=agent,path=" + n.sock + ",server=on,wait=off",
		"-serial", "chardev:agent",
		"-qmp", "unix:" + n.qmpSock + ",server=on,wait=off",
		"-device", "virtio-scsi-pci,id=scsi0",
	}
	if tb.cfg.Appliance != nil {
		// Entropy for the guest's kernel: TCG's CPU has no RDRAND, and
		// without a source the appliance's programs wait in getrandom
		// (docs/appliance.md, "Boot time").
		args = append(args, "-device", "virtio-rng-pci")
	}
	// no_timer_check: see initramfs.DefaultCmdline (a busy host made a
	// guest panic with "IO-APIC + timer doesn't work").
	cmdline := []string{"console=ttyS0", "quiet", "panic=-1", "no_timer_check", "8250.nr_uarts=2",
		"wolfpack.hostname=" + n.name, "wolfpack.disks=" + strconv.Itoa(tb.disks())}
	switch ap := tb.cfg.Appliance; {
	case ap == nil:
		args = append(args, "-kernel", tb.vmlinuz, "-initrd", tb.image)
	case ap.UEFI:
		// OVMF from its read-only code and a copy of its variables; the
		// ESP first in the boot order (no time spent on network boot).
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+n.varsPath(),
			"-drive", "if=none,id=esp,format=raw,readonly=on,file=fat:"+n.espDir(),
			"-device", "virtio-blk-pci,drive=esp,bootindex=0")
	default:
		args = append(args, "-kernel", tb.vmlinuz, "-initrd", tb.image)
		cmdline = append(cmdline, "wolfpack.config=/dev/vda", initramfs.BootOptions)
	}
	if tb.cfg.Appliance != nil {
		args = append(args,
			"-drive", "if=none,id=config,format=raw,readonly=on,file="+n.configDiskPath(),
			"-device", "virtio-blk-pci,drive=config,serial=wolfpack-config")
	}
	host, port, _ := net.SplitHostPort(tb.tgt.Portal)
	if tb.cfg.DataLUNSize > 0 {
		args = append(args,
			"-blockdev", fmt.Sprintf("driver=iscsi,node-name=data,transport=tcp,portal=%s:%s,target=%s,lun=%d,initiator-name=%s:node%d-data",
				host, port, tb.tgt.Target, dataLUN, tb.tgt.Target, n.index),
			"-device", fmt.Sprintf("scsi-block,drive=data,bus=scsi0.0,channel=0,scsi-id=%d,lun=0", DataTarget))
	}
	for m := 1; m <= tb.cfg.Initiators; m++ {
		node := fmt.Sprintf("lun%d", m)
		args = append(args,
			"-blockdev", fmt.Sprintf("driver=iscsi,node-name=%s,transport=tcp,portal=%s:%s,target=%s,lun=1,initiator-name=%s",
				node, host, port, tb.tgt.Target, tb.InitiatorName(n.index, m)),
			"-device", fmt.Sprintf("scsi-block,drive=%s,bus=scsi0.0,channel=0,scsi-id=%d,lun=0", node, m))
	}
	for k := 0; k <= tb.cfg.PrivateNets; k++ {
		args = append(args,
			"-netdev", fmt.Sprintf("tap,id=net%d,ifname=%s,script=no,downscript=no", k, tapName(tb.prefix, n.index, k)),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=net%d,mac=%s,romfile=", k, nodeMAC(tb.idBytes, n.index, k)))
		ifc := boot.Interface{Name: fmt.Sprintf("eth%d", k), MAC: nodeMAC(tb.idBytes, n.index, k), Addr: NodeAddr(k, n.index)}
		cmdline = append(cmdline, "wolfpack.if="+ifc.String())
	}
	if tb.cfg.Appliance != nil && tb.cfg.Appliance.UEFI {
		return args // the UKI's own command line; the node's settings are on its config disk
	}
	return append(args, "-append", strings.Join(cmdline, " "))
}

// boot starts QEMU and waits until the agent is ready and the disks are there.
func (n *Node) boot(ctx context.Context) error {
	tb := n.tb
	for _, p := range []string{n.sock, n.qmpSock} {
		if len(p) >= 108 {
			return fmt.Errorf("socket path %s too long for AF_UNIX: use a shorter WorkDir", p)
		}
		_ = os.Remove(p)
	}
	if err := n.prepareAppliance(); err != nil {
		return fmt.Errorf("boot %s: %w", n.name, err)
	}
	args := n.qemuArgs(tb)
	logf, err := os.Create(filepath.Join(tb.workDir, n.name+".qemu.log"))
	if err != nil {
		return fmt.Errorf("create qemu log: %w", err)
	}
	defer logf.Close()
	n.cmd = exec.Command("qemu-system-x86_64", args...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	n.log.Debug("starting qemu", "args", strings.Join(args, " "))
	start := time.Now()
	n.started = start
	if err := n.cmd.Start(); err != nil {
		return fmt.Errorf("start qemu for %s: %w", n.name, err)
	}
	pid := n.cmd.Process.Pid
	tb.state.update(func(s *stateFile) { s.QemuPids = append(s.QemuPids, pid) })
	n.exited = make(chan struct{})
	go func() {
		err := n.cmd.Wait()
		n.log.Debug("qemu exited", "err", err)
		close(n.exited)
	}()

	fail := func(what string, err error) error {
		return fmt.Errorf("boot %s: %s: %w\nqemu: %s\nconsole:\n%s", n.name, what, err,
			tail(filepath.Join(tb.workDir, n.name+".qemu.log"), 5), n.ConsoleTail(30))
	}
	err = waitFor(ctx, 10*time.Second, n.exited, func() (bool, error) {
		c, err := net.Dial("unix", n.sock)
		if err != nil {
			return false, nil
		}
		n.conn = c
		return true, nil
	})
	if err != nil {
		return fail("connect to agent socket", err)
	}
	go n.readLoop()

	timer := time.NewTimer(tb.cfg.BootTimeout)
	defer timer.Stop()
	var hello agent.Hello
	select {
	case hello = <-n.hello:
	case <-n.exited:
		return fail("wait for agent", errExited)
	case <-n.down:
		return fail("wait for agent", ErrNodeDown)
	case <-timer.C:
		return fail("wait for agent", fmt.Errorf("no hello within %v", tb.cfg.BootTimeout))
	case <-ctx.Done():
		return fail("wait for agent", ctx.Err())
	}
	n.BootTime = time.Since(start)
	for _, w := range hello.Warnings {
		n.log.Warn("guest setup", "warning", w)
	}
	res, err := n.Run(ctx, agent.BuiltinDisks)
	if err != nil {
		return fail("list disks", err)
	}
	if err := json.Unmarshal(res.Stdout, &n.disks); err != nil {
		return fail("list disks", err)
	}
	for m := 1; m <= tb.cfg.Initiators; m++ {
		if n.Disk(m) == "" {
			return fail("find disks", fmt.Errorf("no SCSI device at target %d: %+v", m, n.disks))
		}
	}
	if d, ok := n.DataDisk(); tb.cfg.DataLUNSize > 0 && (!ok || d.Block == "") {
		return fail("find disks", fmt.Errorf("no data disk at target %d: %+v", DataTarget, n.disks))
	}
	n.log.Info("node ready", "boot", n.BootTime.Round(time.Millisecond), "guest_uptime", hello.Uptime, "disks", len(n.disks))
	return nil
}

func (n *Node) readLoop() {
	defer func() {
		n.mu.Lock()
		close(n.down)
		for id, ch := range n.pending {
			close(ch)
			delete(n.pending, id)
		}
		n.mu.Unlock()
	}()
	br := bufio.NewReaderSize(n.conn, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return
		}
		var kind struct {
			Ready bool   `json:"ready"`
			Reply uint64 `json:"reply"`
		}
		if json.Unmarshal(line, &kind) != nil {
			n.log.Debug("unparsable agent line", "line", string(line))
			continue
		}
		switch {
		case kind.Ready:
			var h agent.Hello
			_ = json.Unmarshal(line, &h)
			select {
			case n.hello <- h:
			default:
			}
		case kind.Reply != 0:
			var r agent.Response
			if err := json.Unmarshal(line, &r); err != nil {
				n.log.Warn("bad reply", "err", err)
				continue
			}
			n.mu.Lock()
			ch := n.pending[r.Reply]
			delete(n.pending, r.Reply)
			n.mu.Unlock()
			if ch != nil {
				ch <- r
			}
		}
	}
}

func (n *Node) send(req agent.Request) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	n.wmu.Lock()
	defer n.wmu.Unlock()
	if n.conn == nil {
		return ErrNodeDown
	}
	_ = n.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := n.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("send request to %s: %w", n.name, err)
	}
	return nil
}

// Do sends one request to the agent and waits for the reply. The context's
// deadline becomes the request's timeout; cancelling it kills the program.
func (n *Node) Do(ctx context.Context, req agent.Request) (agent.Response, error) {
	ch := make(chan agent.Response, 1)
	n.mu.Lock()
	select {
	case <-n.down:
		n.mu.Unlock()
		return agent.Response{}, fmt.Errorf("%s %v: %w", n.name, req.Argv, ErrNodeDown)
	default:
	}
	n.nextID++
	req.ID = n.nextID
	n.pending[req.ID] = ch
	n.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok && req.TimeoutMS == 0 {
		req.TimeoutMS = max(time.Until(dl).Milliseconds(), 1)
	}
	if err := n.send(req); err != nil {
		n.mu.Lock()
		delete(n.pending, req.ID)
		n.mu.Unlock()
		return agent.Response{}, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return agent.Response{}, fmt.Errorf("%s %v: %w", n.name, req.Argv, ErrNodeDown)
		}
		return r, nil
	case <-ctx.Done():
		n.mu.Lock()
		delete(n.pending, req.ID)
		n.mu.Unlock()
		_ = n.send(agent.Request{ID: req.ID, Cancel: true})
		return agent.Response{}, fmt.Errorf("%s %v: %w", n.name, req.Argv, ctx.Err())
	}
}

// Run runs a program in the guest and returns its output. A program that
// exits non-zero gives an *ExitError with the Result; other errors mean it
// could not be run (not found, timed out, node down).
func (n *Node) Run(ctx context.Context, argv ...string) (Result, error) {
	r, err := n.Do(ctx, agent.Request{Argv: argv})
	if err != nil {
		return Result{ExitCode: -1}, err
	}
	res := Result{Stdout: r.Stdout, Stderr: r.Stderr, ExitCode: r.Exit}
	if r.Error != "" {
		return res, fmt.Errorf("%s %v: %s", n.name, argv, r.Error)
	}
	if r.Exit != 0 || r.Signal != "" {
		return res, &ExitError{Argv: argv, Signal: r.Signal, Result: res}
	}
	return res, nil
}

// Start starts a program in the background in the guest, its output going to
// /var/log/<name>.log there, and returns its pid.
func (n *Node) Start(ctx context.Context, argv ...string) (int, error) {
	r, err := n.Do(ctx, agent.Request{Argv: argv, Background: true})
	if err != nil {
		return 0, err
	}
	if r.Error != "" {
		return 0, fmt.Errorf("%s: start %v: %s", n.name, argv, r.Error)
	}
	return r.Pid, nil
}

// Freeze stops the VM's CPUs (QMP stop): the guest neither runs nor answers,
// and resumes where it was on Thaw.
func (n *Node) Freeze() error { return n.qmp("stop") }

// Thaw resumes a frozen VM (QMP cont).
func (n *Node) Thaw() error { return n.qmp("cont") }

// PressPowerButton presses the VM's ACPI power button (QMP
// system_powerdown), as an operator's shutdown from the hypervisor does;
// QEMU exits (Exited) once the guest has powered itself off.
func (n *Node) PressPowerButton() error { return n.qmp("system_powerdown") }

// Kill kills the VM's QEMU with SIGKILL, like pulling the power, and waits for it.
func (n *Node) Kill() error {
	if n.cmd == nil || n.cmd.Process == nil {
		return nil
	}
	select {
	case <-n.exited:
		return nil
	default:
	}
	if err := n.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", n.name, err)
	}
	<-n.exited
	return nil
}

// Exited is closed when the node's QEMU has exited.
func (n *Node) Exited() <-chan struct{} { return n.exited }

func (n *Node) qmp(command string) error {
	c, err := net.DialTimeout("unix", n.qmpSock, 5*time.Second)
	if err != nil {
		return fmt.Errorf("%s: qmp %s: %w", n.name, command, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	dec := json.NewDecoder(c)
	var greeting map[string]any
	if err := dec.Decode(&greeting); err != nil {
		return fmt.Errorf("%s: qmp greeting: %w", n.name, err)
	}
	for _, cmd := range []string{"qmp_capabilities", command} {
		if _, err := fmt.Fprintf(c, `{"execute":%q}`+"\n", cmd); err != nil {
			return fmt.Errorf("%s: qmp %s: %w", n.name, cmd, err)
		}
		for { // skip asynchronous events until the reply
			var msg struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Class string `json:"class"`
					Desc  string `json:"desc"`
				} `json:"error"`
				Event string `json:"event"`
			}
			if err := dec.Decode(&msg); err != nil {
				return fmt.Errorf("%s: qmp %s: %w", n.name, cmd, err)
			}
			if msg.Error != nil {
				return fmt.Errorf("%s: qmp %s: %s: %s", n.name, cmd, msg.Error.Class, msg.Error.Desc)
			}
			if msg.Return != nil {
				break
			}
		}
	}
	return nil
}

// stop kills QEMU and closes the agent connection.
func (n *Node) stop() error {
	err := n.Kill()
	n.wmu.Lock()
	if n.conn != nil {
		n.conn.Close()
	}
	n.wmu.Unlock()
	for _, p := range []string{n.sock, n.qmpSock} {
		if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("remove %s: %w", p, rerr))
		}
	}
	return err
}
