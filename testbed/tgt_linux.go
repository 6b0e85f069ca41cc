package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

const tgtSocketDir = "/var/run/tgtd"

// tgt is one tgtd serving one target with one LUN.
type tgt struct {
	log     *slog.Logger
	cmd     *exec.Cmd
	exited  chan struct{}
	ctlPort int
	portal  string // 127.0.0.1:port
	iqn     string
	lunPath string
}

func tgtSocket(ctl int) string { return filepath.Join(tgtSocketDir, "socket."+strconv.Itoa(ctl)) }

// freeTCPPort asks the kernel for a free port on 127.0.0.1.
func freeTCPPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freeCtlPort picks a tgtd control port whose socket files do not exist.
func freeCtlPort() (int, error) {
	for range 100 {
		p := 1024 + rand.IntN(32767-1024) // tgtd takes at most 32767
		if _, err := os.Lstat(tgtSocket(p)); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		if _, err := os.Lstat(tgtSocket(p) + ".lock"); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		return p, nil
	}
	return 0, errors.New("no free tgtd control port")
}

func startTgt(ctx context.Context, log *slog.Logger, workDir, id string, lunSize int64, st *state) (*tgt, error) {
	t := &tgt{log: log, iqn: "iqn.2024-01.org.wolfpack-ha.testbed:" + id, lunPath: filepath.Join(workDir, "lun1.img")}
	if err := os.WriteFile(t.lunPath, nil, 0o600); err != nil {
		return nil, fmt.Errorf("create LUN file: %w", err)
	}
	if err := os.Truncate(t.lunPath, lunSize); err != nil {
		return nil, fmt.Errorf("size LUN file: %w", err)
	}
	port, err := freeTCPPort()
	if err != nil {
		return nil, fmt.Errorf("pick iSCSI portal port: %w", err)
	}
	if t.ctlPort, err = freeCtlPort(); err != nil {
		return nil, err
	}
	t.portal = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	st.update(func(s *stateFile) { s.TgtCtlPort, s.TgtPortal, s.LUNPath = t.ctlPort, t.portal, t.lunPath })

	logf, err := os.Create(filepath.Join(workDir, "tgtd.log"))
	if err != nil {
		return nil, fmt.Errorf("create tgtd log: %w", err)
	}
	defer logf.Close()
	t.cmd = exec.Command("tgtd", "-f", "--iscsi", "portal="+t.portal, "-C", strconv.Itoa(t.ctlPort))
	t.cmd.Stdout, t.cmd.Stderr = logf, logf
	t.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := t.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start tgtd: %w", err)
	}
	st.update(func(s *stateFile) { s.TgtPid = t.cmd.Process.Pid })
	t.exited = make(chan struct{})
	go func() { _ = t.cmd.Wait(); close(t.exited) }()
	log.Debug("tgtd started", "pid", t.cmd.Process.Pid, "portal", t.portal, "ctl", t.ctlPort)

	// Ready when the control socket exists and the portal accepts connections.
	err = waitFor(ctx, 10*time.Second, t.exited, func() (bool, error) {
		if _, err := os.Stat(tgtSocket(t.ctlPort)); err != nil {
			return false, nil
		}
		c, err := net.DialTimeout("tcp", t.portal, time.Second)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	})
	if err != nil {
		return t, fmt.Errorf("wait for tgtd on %s: %w (log: %s)", t.portal, err, tail(filepath.Join(workDir, "tgtd.log"), 10))
	}
	for _, args := range [][]string{
		{"--op", "new", "--mode", "target", "--tid", "1", "-T", t.iqn},
		{"--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", t.lunPath},
		{"--op", "update", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "--params", "vendor_id=WOLFPACK,product_id=TESTBED-" + id},
		{"--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"},
	} {
		if err := t.adm(ctx, args...); err != nil {
			return t, err
		}
	}
	return t, nil
}

func (t *tgt) adm(ctx context.Context, args ...string) error {
	argv := append([]string{"-C", strconv.Itoa(t.ctlPort), "--lld", "iscsi"}, args...)
	out, err := exec.CommandContext(ctx, "tgtadm", argv...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("tgtadm %v: %w: %s", args, err, out)
	}
	return nil
}

// stop asks tgtd to exit, kills it if it does not, and removes its sockets.
func (t *tgt) stop() error {
	var errs []error
	if t.cmd != nil && t.cmd.Process != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		select {
		case <-t.exited:
		default:
			// tgtd refuses to stop while it has targets; --force ends sessions.
			if err := t.adm(ctx, "--op", "delete", "--mode", "target", "--tid", "1", "--force"); err != nil {
				t.log.Warn("delete target", "err", err)
			}
			out, err := exec.CommandContext(ctx, "tgtadm", "-C", strconv.Itoa(t.ctlPort), "--op", "delete", "--mode", "system").CombinedOutput()
			if err != nil {
				t.log.Warn("tgtadm delete system failed, killing tgtd", "err", err, "out", string(out))
			}
			select {
			case <-t.exited:
			case <-ctx.Done():
				t.log.Warn("tgtd did not exit, killing it", "pid", t.cmd.Process.Pid)
				_ = t.cmd.Process.Kill()
				<-t.exited
			}
		}
	}
	for _, p := range []string{tgtSocket(t.ctlPort), tgtSocket(t.ctlPort) + ".lock"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove tgtd socket: %w", err))
		}
	}
	if err := os.Remove(t.lunPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove LUN file: %w", err))
	}
	return errors.Join(errs...)
}
