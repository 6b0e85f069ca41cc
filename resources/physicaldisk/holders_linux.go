package physicaldisk

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// holders lists the processes (other than this one) that hold something
// under dir: their working directory or root, an open file, or a mapped
// file. It reads /proc; processes that exit meanwhile, or whose entries it
// may not read, are skipped.
func holders(dir string) []int {
	dir = resolve(dir)
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if holds(filepath.Join("/proc", e.Name()), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	path = strings.TrimSuffix(path, " (deleted)")
	return path == dir || strings.HasPrefix(path, dir+"/") || dir == "/"
}

func holds(proc, dir string) bool {
	for _, l := range []string{"cwd", "root"} {
		if p, err := os.Readlink(filepath.Join(proc, l)); err == nil && under(p, dir) {
			return true
		}
	}
	fds, _ := os.ReadDir(filepath.Join(proc, "fd"))
	for _, fd := range fds {
		if p, err := os.Readlink(filepath.Join(proc, "fd", fd.Name())); err == nil && under(p, dir) {
			return true
		}
	}
	f, err := os.Open(filepath.Join(proc, "maps"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode pathname
		fields := strings.SplitN(sc.Text(), " ", 6)
		if len(fields) == 6 {
			if p := strings.TrimLeft(fields[5], " "); strings.HasPrefix(p, "/") && under(p, dir) {
				return true
			}
		}
	}
	return false
}
