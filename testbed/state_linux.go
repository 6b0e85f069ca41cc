package testbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi/iscsi/iscsitest"
	"github.com/wolfpack-ha/wolfpack/testbed/netns"
)

// StateDir holds one file per live testbed naming what it owns, so that a
// testbed whose test process died without cleaning up can be swept later.
const StateDir = "/run/wolfpack-testbed"

type stateFile struct {
	ID          string    `json:"id"`
	Prefix      string    `json:"prefix"`
	netns.Owner           // the test process, with its start time against pid reuse
	Created     time.Time `json:"created"`
	WorkDir     string    `json:"work_dir"`
	Netns       string    `json:"netns,omitempty"`
	TgtPid      int       `json:"tgt_pid,omitempty"`
	TgtCtlPort  int       `json:"tgt_ctl_port,omitempty"`
	TgtPortal   string    `json:"tgt_portal,omitempty"`
	LUNPaths    []string  `json:"lun_paths,omitempty"`
	QemuPids    []int     `json:"qemu_pids,omitempty"`
}

type state struct {
	mu   sync.Mutex
	path string
	s    stateFile
}

func newState(id, prefix, workDir string) (*state, error) {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", StateDir, err)
	}
	st := &state{path: filepath.Join(StateDir, prefix+".json"), s: stateFile{
		ID: id, Prefix: prefix, Owner: netns.Self(),
		Created: time.Now(), WorkDir: workDir,
	}}
	f, err := os.OpenFile(st.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("claim testbed id %s: %w", id, err)
	}
	f.Close()
	return st, st.write()
}

func (st *state) update(f func(*stateFile)) {
	st.mu.Lock()
	f(&st.s)
	st.mu.Unlock()
	_ = st.write() // best effort: it only helps a later sweep
}

func (st *state) write() error {
	st.mu.Lock()
	b, err := json.MarshalIndent(st.s, "", "  ")
	st.mu.Unlock()
	if err != nil {
		return err
	}
	tmp := st.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write testbed state: %w", err)
	}
	return os.Rename(tmp, st.path)
}

func (st *state) remove() error {
	if err := os.Remove(st.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove testbed state: %w", err)
	}
	return nil
}

func procCmdline(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}

// Processes lists the pids of live QEMU and tgtd processes that belong to the
// testbed with this prefix (QEMU by its -name, tgtd by its control port).
func processes(prefix string, tgtCtl int) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		argv := procCmdline(pid)
		if len(argv) == 0 {
			continue
		}
		switch filepath.Base(argv[0]) {
		case "qemu-system-x86_64":
			for _, a := range argv {
				if strings.HasPrefix(a, prefix+"-node") {
					pids = append(pids, pid)
					break
				}
			}
		case "tgtd":
			for i := 0; i+1 < len(argv); i++ {
				if argv[i] == "-C" && argv[i+1] == strconv.Itoa(tgtCtl) && tgtCtl != 0 {
					pids = append(pids, pid)
				}
			}
		}
	}
	return pids
}

// sweepStale removes what testbeds of dead test processes left behind.
func sweepStale(log *slog.Logger) {
	entries, err := os.ReadDir(StateDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(StateDir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var s stateFile
		if err := json.Unmarshal(b, &s); err != nil || s.Prefix == "" {
			log.Warn("unreadable testbed state file", "path", path, "err", err)
			continue
		}
		if s.Owner.Alive() {
			continue // still owned by a live process
		}
		log.Info("sweeping leftovers of a dead testbed", "prefix", s.Prefix, "owner_pid", s.Owner.Pid, "created", s.Created)
		if err := sweep(s); err != nil {
			log.Warn("sweep incomplete", "prefix", s.Prefix, "err", err)
			continue
		}
		_ = os.Remove(path)
	}
}

func sweep(s stateFile) error {
	var errs []error
	for _, pid := range processes(s.Prefix, s.TgtCtlPort) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %d: %w", pid, err))
		}
	}
	if err := removeNetwork(s.Prefix, s.Netns); err != nil {
		errs = append(errs, err)
	}
	var files []string
	if s.TgtCtlPort != 0 {
		files = append(files, iscsitest.Sockets(s.TgtCtlPort)...)
	}
	files = append(files, s.LUNPaths...)
	if s.WorkDir != "" {
		socks, _ := filepath.Glob(filepath.Join(s.WorkDir, "node*.agent"))
		qmps, _ := filepath.Glob(filepath.Join(s.WorkDir, "node*.qmp"))
		files = append(append(files, socks...), qmps...)
	}
	for _, p := range files {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
