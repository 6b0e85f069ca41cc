package boot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DiskIDs returns the /dev/disk/by-id names udev would give the block
// device name (e.g. "sdb"), read from sysfs: for a SCSI disk, from its
// device/wwid (the kernel's pick of VPD page 0x83): "naa.X" gives
// wwn-0xX and scsi-3X, "eui.X" gives wwn-0xX and scsi-2X, "t10.X"
// gives scsi-1X (blanks as '_'); for a virtio disk with a serial,
// virtio-SERIAL.
func DiskIDs(sysfs, name string) []string {
	dev := filepath.Join(sysfs, "block", name, "device")
	var ids []string
	if b, err := os.ReadFile(filepath.Join(dev, "wwid")); err == nil {
		w := strings.TrimSpace(string(b))
		kind, v, _ := strings.Cut(w, ".")
		v = strings.Join(strings.Fields(v), "_")
		switch kind {
		case "naa":
			ids = append(ids, "wwn-0x"+v, "scsi-3"+v)
		case "eui":
			ids = append(ids, "wwn-0x"+v, "scsi-2"+v)
		case "t10":
			ids = append(ids, "scsi-1"+v)
		}
	}
	if b, err := os.ReadFile(filepath.Join(sysfs, "block", name, "serial")); err == nil { // virtio-blk
		if s := strings.Join(strings.Fields(string(b)), "_"); s != "" {
			ids = append(ids, "virtio-"+s)
		}
	}
	return ids
}

// MakeDiskLinks creates /dev/disk/by-id/ID -> ../../NAME for every whole
// disk under sysfs/block with an id (DiskIDs). When two disks have one id
// (two paths to one LUN), the first name in sorted order keeps it. It
// returns the links it made.
func MakeDiskLinks(sysfs, devDir string) (map[string]string, error) {
	ents, err := os.ReadDir(filepath.Join(sysfs, "block"))
	if err != nil {
		return nil, fmt.Errorf("list block devices: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	dir := filepath.Join(devDir, "disk/by-id")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	made := map[string]string{}
	for _, n := range names {
		for _, id := range DiskIDs(sysfs, n) {
			link := filepath.Join(dir, id)
			if _, ok := made[id]; ok {
				continue
			}
			if cur, err := os.Readlink(link); err == nil && cur == "../../"+n {
				made[id] = n
				continue
			}
			_ = os.Remove(link)
			if err := os.Symlink("../../"+n, link); err != nil {
				return made, fmt.Errorf("create %s: %w", link, err)
			}
			made[id] = n
		}
	}
	return made, nil
}

// ErrNoConfigDisk is returned by FindConfigDisk when no disk holds a tar
// archive.
var ErrNoConfigDisk = errors.New("no config disk (a disk holding a tar archive) found")

// FindConfigDisk returns the first virtio or SCSI disk (vd*, sd*, in
// sorted order) whose first block is a tar header, trying again until
// deadline while there is none.
func FindConfigDisk(sysfs, devDir string, deadline time.Time) (string, error) {
	for {
		ents, _ := os.ReadDir(filepath.Join(sysfs, "block"))
		var names []string
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "vd") || strings.HasPrefix(e.Name(), "sd") {
				names = append(names, e.Name())
			}
		}
		sort.Slice(names, func(i, j int) bool { // virtio first: that is where a config disk is meant to be
			vi, vj := strings.HasPrefix(names[i], "vd"), strings.HasPrefix(names[j], "vd")
			if vi != vj {
				return vi
			}
			return names[i] < names[j]
		})
		for _, n := range names {
			p := filepath.Join(devDir, n)
			if ok, _ := hasTar(p); ok {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			return "", ErrNoConfigDisk
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func hasTar(dev string) (bool, error) {
	f, err := os.Open(dev)
	if err != nil {
		return false, err
	}
	defer f.Close()
	b := make([]byte, 512)
	if _, err := io.ReadFull(f, b); err != nil {
		return false, err
	}
	return LooksLikeTar(b), nil
}

// ReadConfigDisk reads the config disk dev (waiting until deadline for it
// to appear: for its node, and for its driver behind the node, which
// answers ENXIO until the disk is ready, as with asynchronous probing or
// a slow USB stick).
func ReadConfigDisk(dev string, deadline time.Time) (Config, error) {
	for {
		f, err := os.Open(dev)
		if err == nil {
			defer f.Close()
			b := make([]byte, 512)
			if _, err := io.ReadFull(f, b); err != nil {
				return Config{}, fmt.Errorf("config disk %s: %w", dev, err)
			}
			if !LooksLikeTar(b) {
				return Config{}, fmt.Errorf("config disk %s: no tar archive at its start (make one with tar -cf)", dev)
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return Config{}, fmt.Errorf("config disk %s: %w", dev, err)
			}
			return ReadConfig(f, dev)
		}
		if !(errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENXIO)) || time.Now().After(deadline) {
			return Config{}, fmt.Errorf("config disk: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
