package loadgen

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcTicks is a process's user and system time in clock ticks (USER_HZ,
// 100 a second: fields 14 and 15 of /proc/<pid>/stat), 0 if it is gone.
func ProcTicks(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return u + s
}

// ProcMem is a process's resident memory (VmRSS) and its peak (VmHWM) in
// MiB; zeros if it is gone.
func ProcMem(pid int) (rss, hwm float64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for l := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = v / 1024
		case "VmHWM:":
			hwm = v / 1024
		}
	}
	return rss, hwm
}

// ProcSwitches is the number of context switches of all a process's
// threads so far (voluntary_ctxt_switches and nonvoluntary_ctxt_switches
// of every /proc/<pid>/task/<tid>/status), 0 if it is gone: how often it
// woke up. Threads that already exited are not counted.
func ProcSwitches(pid int) uint64 {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var n uint64
	for _, t := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		for l := range strings.SplitSeq(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) == 2 && (f[0] == "voluntary_ctxt_switches:" || f[0] == "nonvoluntary_ctxt_switches:") {
				v, _ := strconv.ParseUint(f[1], 10, 64)
				n += v
			}
		}
	}
	return n
}

// LoadAvg returns the machine's 1, 5 and 15 minute load averages as
// /proc/loadavg writes them ("?" if unreadable), for a benchmark's log.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
