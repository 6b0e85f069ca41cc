package boot

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// A config disk is a small raw disk (no partition table, no filesystem)
// holding a tar archive, as `tar -cf disk.img -C DIR .` makes it: the
// files of a node's /etc/wolfpack (cluster create or join --etc DIR) and,
// optionally, boot.conf with boot settings. The tar's end-of-archive
// marker ends it; whatever follows on the disk is ignored.

// ConfigFile is one file of a config disk.
type ConfigFile struct {
	Name string // relative, cleaned: "node.toml", "certs/ca.pem"
	Mode os.FileMode
	Data []byte
}

// Config is what a config disk holds.
type Config struct {
	Files    []ConfigFile // for /etc/wolfpack
	Settings *Settings    // from boot.conf, nil without one
}

// maxConfigBytes bounds what a config disk may hold in all.
const maxConfigBytes = 16 << 20

// LooksLikeTar reports whether block (the first 512 bytes of a disk) is a
// tar header: the ustar magic and a valid checksum.
func LooksLikeTar(block []byte) bool {
	if len(block) < 512 {
		return false
	}
	if !bytes.Equal(block[257:262], []byte("ustar")) {
		return false
	}
	want, err := strconv.ParseUint(strings.Trim(string(block[148:156]), " \x00"), 8, 32)
	if err != nil {
		return false
	}
	var sum uint64
	for i, b := range block[:512] {
		if i >= 148 && i < 156 {
			b = ' '
		}
		sum += uint64(b)
	}
	return sum == want
}

// ReadConfig reads a config disk's tar archive. It refuses, naming the
// entry, anything but regular files and directories, absolute names and
// names with "..", a boot.conf with a bad line, and more than 16 MiB in
// all.
func ReadConfig(r io.Reader, name string) (Config, error) {
	var c Config
	tr := tar.NewReader(r)
	total := int64(0)
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return c, fmt.Errorf("config disk %s: read tar archive: %w", name, err)
		}
		clean := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if strings.HasPrefix(h.Name, "/") || clean == ".." || strings.HasPrefix(clean, "../") {
			return c, fmt.Errorf("config disk %s: entry %q: want a name relative to /etc/wolfpack, without ..", name, h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		default:
			return c, fmt.Errorf("config disk %s: entry %q: only regular files and directories are allowed (type %q)", name, h.Name, string(h.Typeflag))
		}
		if seen[clean] {
			return c, fmt.Errorf("config disk %s: entry %q: given twice", name, h.Name)
		}
		seen[clean] = true
		total += h.Size
		if total > maxConfigBytes {
			return c, fmt.Errorf("config disk %s: more than %d bytes of files", name, maxConfigBytes)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			return c, fmt.Errorf("config disk %s: read %q: %w", name, h.Name, err)
		}
		if clean == ConfigSettingsFile {
			s, err := ParseFile(name+": "+ConfigSettingsFile, data)
			if err != nil {
				return c, fmt.Errorf("config disk %w", err)
			}
			c.Settings = &s
			continue
		}
		c.Files = append(c.Files, ConfigFile{Name: clean, Mode: os.FileMode(h.Mode).Perm(), Data: data})
	}
	if len(c.Files) == 0 && c.Settings == nil {
		return c, fmt.Errorf("config disk %s: the tar archive holds no files", name)
	}
	return c, nil
}

// Install writes the files under dir (/etc/wolfpack), each with its mode.
func (c Config) Install(dir string) error {
	for _, f := range c.Files {
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("install config file %s: %w", f.Name, err)
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o600
		}
		if err := os.WriteFile(p, f.Data, mode); err != nil {
			return fmt.Errorf("install config file %s: %w", f.Name, err)
		}
		if err := os.Chmod(p, mode); err != nil { // WriteFile's mode is masked by the umask
			return fmt.Errorf("install config file %s: %w", f.Name, err)
		}
	}
	return nil
}
