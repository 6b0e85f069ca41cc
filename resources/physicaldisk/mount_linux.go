package physicaldisk

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mountFlags are the options mount(8) turns into flags; every other
// option goes to the filesystem as data.
var mountFlags = map[string]struct {
	set   uintptr
	clear uintptr
}{
	"defaults":    {},
	"ro":          {set: unix.MS_RDONLY},
	"rw":          {clear: unix.MS_RDONLY},
	"nosuid":      {set: unix.MS_NOSUID},
	"suid":        {clear: unix.MS_NOSUID},
	"nodev":       {set: unix.MS_NODEV},
	"dev":         {clear: unix.MS_NODEV},
	"noexec":      {set: unix.MS_NOEXEC},
	"exec":        {clear: unix.MS_NOEXEC},
	"sync":        {set: unix.MS_SYNCHRONOUS},
	"async":       {clear: unix.MS_SYNCHRONOUS},
	"dirsync":     {set: unix.MS_DIRSYNC},
	"noatime":     {set: unix.MS_NOATIME},
	"atime":       {clear: unix.MS_NOATIME},
	"nodiratime":  {set: unix.MS_NODIRATIME},
	"diratime":    {clear: unix.MS_NODIRATIME},
	"relatime":    {set: unix.MS_RELATIME},
	"norelatime":  {clear: unix.MS_RELATIME},
	"strictatime": {set: unix.MS_STRICTATIME},
	"lazytime":    {set: unix.MS_LAZYTIME},
	"nolazytime":  {clear: unix.MS_LAZYTIME},
}

// parseMountOptions splits comma-separated options into mount(2) flags
// and the filesystem's data string.
func parseMountOptions(s string) (flags uintptr, data string, err error) {
	var rest []string
	for _, o := range strings.Split(s, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if f, ok := mountFlags[o]; ok {
			flags = flags&^f.clear | f.set
			continue
		}
		switch o {
		case "remount", "bind", "rbind", "move", "shared", "rshared", "private", "rprivate",
			"slave", "rslave", "unbindable", "runbindable": // as gup/db refuses them
			return 0, "", fmt.Errorf("option %q is not for a filesystem mount", o)
		}
		rest = append(rest, o)
	}
	return flags, strings.Join(rest, ","), nil
}

// mountAt is what /proc/self/mountinfo says is mounted on a directory.
type mountAt struct {
	dev    uint64 // st_dev of the mounted filesystem (major:minor)
	fstype string
	source string
}

// mountedOn returns the topmost mount on dir, if any.
func mountedOn(dir string) (mountAt, bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return mountAt{}, false, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	dir = resolve(dir)
	var m mountAt
	found := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 2 || unescape(fields[4]) != dir {
			continue
		}
		maj, min, _ := strings.Cut(fields[2], ":")
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(min, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		m, found = mountAt{dev: unix.Mkdev(uint32(ma), uint32(mi)), fstype: tail[0], source: unescape(tail[1])}, true
	}
	if err := sc.Err(); err != nil {
		return mountAt{}, false, fmt.Errorf("read mounts: %w", err)
	}
	return m, found, nil
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// resolve is dir with its symbolic links resolved, as the kernel reports
// paths (mountinfo, /proc links); dir itself if that fails.
func resolve(dir string) string {
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		return r
	}
	return filepath.Clean(dir)
}
