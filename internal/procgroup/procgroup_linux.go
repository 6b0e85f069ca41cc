package procgroup

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Record is one running group: its id (the leader's pid) and the leader's
// start time in clock ticks since boot.
type Record struct {
	Pgid      int
	StartTime uint64
}

// StartTime reads the start time of process pid (clock ticks after boot,
// /proc/PID/stat field 22).
func StartTime(pid int) (uint64, error) {
	st, err := stat(pid)
	if err != nil {
		return 0, err
	}
	return st.start, nil
}

type procStat struct {
	pgrp  int
	start uint64
}

// stat reads the fields used here from /proc/PID/stat. The command name
// (field 2) may hold spaces and parentheses: the fields after it start
// after the last ')'.
func stat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): field n is f[n-3].
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	pgrp, err1 := strconv.Atoi(f[5-3])
	start, err2 := strconv.ParseUint(f[22-3], 10, 64)
	if err1 != nil || err2 != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: bad pgrp or starttime field", pid)
	}
	return procStat{pgrp: pgrp, start: start}, nil
}

// path is the resource's file: its name escaped so that any name ("a/b",
// "..") stays one file in dir.
func path(dir, resource string) string {
	return filepath.Join(dir, "app-"+url.PathEscape(resource))
}

// Save records that resource runs in the group led by pgid, which must be
// running (its start time is read now). The file is written whole, then
// renamed into place.
func Save(dir, resource string, pgid int) error {
	start, err := StartTime(pgid)
	if err != nil {
		return fmt.Errorf("procgroup: record %s: %w", resource, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("procgroup: record %s: %w", resource, err)
	}
	p := path(dir, resource)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %d\n", pgid, start), 0o600); err != nil {
		return fmt.Errorf("procgroup: record %s: %w", resource, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("procgroup: record %s: %w", resource, err)
	}
	return nil
}

// Load reads resource's record; ok is false when there is none.
func Load(dir, resource string) (r Record, ok bool, err error) {
	b, err := os.ReadFile(path(dir, resource))
	if errors.Is(err, os.ErrNotExist) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("procgroup: read the record of %s: %w", resource, err)
	}
	if _, err := fmt.Sscanf(string(b), "%d %d", &r.Pgid, &r.StartTime); err != nil || r.Pgid <= 1 {
		return Record{}, false, fmt.Errorf("procgroup: the record of %s (%s) is not \"pgid starttime\": %q", resource, path(dir, resource), b)
	}
	return r, true, nil
}

// Remove deletes resource's record (none is not an error).
func Remove(dir, resource string) error {
	if err := os.Remove(path(dir, resource)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("procgroup: remove the record of %s: %w", resource, err)
	}
	return nil
}

// KillOrphan kills the process group recorded for resource, if it is still
// the one recorded, and removes the record. It returns the number of
// processes signalled (-1: the whole group, by its leader).
//
// The leader alive with the recorded start time: SIGKILL to the group. A
// process with the leader's pid but another start time is a recycled pid:
// nothing is killed. The leader gone: its pid cannot be reused while any
// process of its group lives (the kernel keeps a pid in use as a process
// group id), so the processes still in group pgid that started no earlier
// than the leader are killed one by one. The one case this cannot tell
// apart: the whole group ended, the pid was recycled by a process that led
// a group of its own and exited, leaving members, all between the crash and
// this call.
func KillOrphan(dir, resource string) (int, error) {
	r, ok, err := Load(dir, resource)
	if err != nil || !ok {
		return 0, err
	}
	n, err := kill(r)
	if err != nil {
		return n, fmt.Errorf("procgroup: kill the group of %s (pgid %d): %w", resource, r.Pgid, err)
	}
	return n, Remove(dir, resource)
}

func kill(r Record) (int, error) {
	st, err := stat(r.Pgid)
	switch {
	case err == nil && st.start == r.StartTime:
		if err := syscall.Kill(-r.Pgid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			return 0, err
		}
		return -1, nil
	case err == nil:
		return 0, nil // recycled pid
	case !errors.Is(err, os.ErrNotExist):
		return 0, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := stat(pid); err == nil && st.pgrp == r.Pgid && st.start >= r.StartTime {
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				n++
			}
		}
	}
	return n, nil
}
