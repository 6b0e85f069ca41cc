package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ListProcs reads every process under procDir (/proc): its pid, parent,
// name and state from PID/stat. A process that exits meanwhile is left
// out.
func ListProcs(procDir string) ([]Proc, error) {
	ents, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var procs []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		p, err := parseStat(pid, string(b))
		if err != nil {
			return nil, fmt.Errorf("list processes: %w", err)
		}
		procs = append(procs, p)
	}
	return procs, nil
}

// parseStat parses /proc/PID/stat: "PID (COMM) STATE PPID ...", where
// COMM may hold spaces and parentheses, so it ends at the last ')'.
func parseStat(pid int, stat string) (Proc, error) {
	open, end := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return Proc{}, fmt.Errorf("process %d: stat %q: no (comm)", pid, stat)
	}
	f := strings.Fields(stat[end+1:])
	if len(f) < 2 {
		return Proc{}, fmt.Errorf("process %d: stat %q: no state and parent", pid, stat)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return Proc{}, fmt.Errorf("process %d: stat %q: parent: %w", pid, stat, err)
	}
	return Proc{Pid: pid, PPid: ppid, Comm: stat[open+1 : end], State: f[0]}, nil
}
