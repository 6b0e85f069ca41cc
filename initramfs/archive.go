package initramfs

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"

	"github.com/u-root/u-root/pkg/cpio"
)

// Kind is what an archive entry is.
type Kind byte

const (
	File    Kind = 'f'
	Dir     Kind = 'd'
	Symlink Kind = 'l' // Data is the target
	CharDev Kind = 'c'
)

// Entry is one file of an archive: a host file (Src), literal content
// (Data), a directory, a symlink or a character device.
type Entry struct {
	Path         string // in the image, without a leading slash
	Kind         Kind
	Mode         uint64 // permission bits
	Data         []byte
	Src          string
	Major, Minor uint64
}

// Archive is the contents of a newc cpio archive, written in a canonical
// form: entries sorted by path (so a directory comes before what it
// holds), inode numbers 1, 2, ... in that order, mtime 0, owner 0:0. The
// same entries give the same bytes whatever order they were added in.
type Archive struct {
	entries map[string]Entry
}

// clean turns a guest path into the archive's form ("a/b"), or "" for the
// root, which the archive never holds.
func clean(p string) string {
	p = path.Clean("/" + p)
	return strings.TrimPrefix(p, "/")
}

// Add adds e and, as 0755 directories, any parent it lacks. Adding a path
// twice with the same entry is a no-op; with a different one, an error.
func (a *Archive) Add(e Entry) error {
	if a.entries == nil {
		a.entries = make(map[string]Entry)
	}
	e.Path = clean(e.Path)
	if e.Path == "" {
		return fmt.Errorf("archive entry with an empty path")
	}
	switch e.Kind {
	case File, Dir, Symlink, CharDev:
	default:
		return fmt.Errorf("archive entry %s: unknown kind %q", e.Path, e.Kind)
	}
	if d := path.Dir(e.Path); d != "." {
		if err := a.Add(Entry{Path: d, Kind: Dir, Mode: 0o755}); err != nil {
			return err
		}
	}
	if old, ok := a.entries[e.Path]; ok {
		if old.Kind == e.Kind && old.Mode == e.Mode && old.Src == e.Src && bytes.Equal(old.Data, e.Data) &&
			old.Major == e.Major && old.Minor == e.Minor {
			return nil
		}
		if old.Kind == Dir && e.Kind == Dir { // an explicit mode wins over an implied parent
			a.entries[e.Path] = e
			return nil
		}
		return fmt.Errorf("archive entry %s added twice, differently", e.Path)
	}
	a.entries[e.Path] = e
	return nil
}

// Dirs adds directories with mode 0755.
func (a *Archive) Dirs(paths ...string) error {
	for _, p := range paths {
		if err := a.Add(Entry{Path: p, Kind: Dir, Mode: 0o755}); err != nil {
			return err
		}
	}
	return nil
}

// AddFile adds host file src at guest path p.
func (a *Archive) AddFile(p, src string, mode uint64) error {
	return a.Add(Entry{Path: p, Kind: File, Src: src, Mode: mode})
}

// AddData adds a file with the given content.
func (a *Archive) AddData(p string, data []byte, mode uint64) error {
	return a.Add(Entry{Path: p, Kind: File, Data: data, Mode: mode})
}

// AddSymlink adds a symlink p pointing to target.
func (a *Archive) AddSymlink(p, target string) error {
	return a.Add(Entry{Path: p, Kind: Symlink, Data: []byte(target), Mode: 0o777})
}

// Has reports whether the archive holds guest path p.
func (a *Archive) Has(p string) bool {
	_, ok := a.entries[clean(p)]
	return ok
}

// Len is the number of entries.
func (a *Archive) Len() int { return len(a.entries) }

// Entries returns the entries sorted by path.
func (a *Archive) Entries() []Entry {
	es := make([]Entry, 0, len(a.entries))
	for _, e := range a.entries {
		es = append(es, e)
	}
	sort.Slice(es, func(i, j int) bool { return es[i].Path < es[j].Path })
	return es
}

// Hash identifies the archive by everything in it, host files' contents
// included: the same hash, the same bytes from Write.
func (a *Archive) Hash() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "wolfpack initramfs archive v1\n")
	for _, e := range a.Entries() {
		fmt.Fprintf(h, "%s %c %o %d %d %d %t\n", e.Path, e.Kind, e.Mode, e.Major, e.Minor, len(e.Data), e.Src != "")
		h.Write(e.Data)
		if e.Src != "" {
			f, err := os.Open(e.Src)
			if err != nil {
				return "", fmt.Errorf("hash archive input: %w", err)
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return "", fmt.Errorf("hash archive input %s: %w", e.Src, err)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// WriteCPIO writes the archive as an uncompressed newc cpio archive.
func (a *Archive) WriteCPIO(w io.Writer) error {
	rw := cpio.Newc.Writer(w)
	for i, e := range a.Entries() {
		info := cpio.Info{Name: e.Path, Ino: uint64(i + 1), NLink: 1}
		var data []byte
		switch e.Kind {
		case Dir:
			info.Mode = cpio.S_IFDIR | e.Mode
			info.NLink = 2
		case Symlink:
			info.Mode = cpio.S_IFLNK | e.Mode
			data = e.Data
		case CharDev:
			info.Mode = cpio.S_IFCHR | e.Mode
			info.Rmajor, info.Rminor = e.Major, e.Minor
		case File:
			info.Mode = cpio.S_IFREG | e.Mode
			data = e.Data
			if e.Src != "" {
				var err error
				if data, err = os.ReadFile(e.Src); err != nil {
					return fmt.Errorf("archive entry %s: %w", e.Path, err)
				}
			}
		}
		info.FileSize = uint64(len(data))
		if err := rw.WriteRecord(cpio.Record{ReaderAt: bytes.NewReader(data), Info: info}); err != nil {
			return fmt.Errorf("write %s: %w", e.Path, err)
		}
	}
	return cpio.WriteTrailer(rw)
}

// Write writes the archive as a gzip-compressed newc cpio archive. The
// gzip header carries no name and no time, so the bytes depend only on the
// entries, the level and the Go version's compress/flate.
func (a *Archive) Write(w io.Writer, level int) error {
	zw, err := gzip.NewWriterLevel(w, level)
	if err != nil {
		return err
	}
	if err := a.WriteCPIO(zw); err != nil {
		return err
	}
	return zw.Close()
}

// WriteLZ4 writes the archive as an LZ4-compressed newc cpio archive in
// the legacy frame format, the one the kernel's initramfs unpacker reads,
// with the lz4 program at level 9. The bytes depend on the entries and
// lz4's version. See docs/appliance.md, "Why LZ4", for the comparison
// with gzip, zstd and xz: LZ4 unpacks fastest under TCG.
func (a *Archive) WriteLZ4(ctx context.Context, w io.Writer) error {
	return a.writeFiltered(ctx, w, "lz4", "-l", "-9", "-q", "-c")
}

// writeFiltered writes the cpio archive through a compressor's stdin.
func (a *Archive) writeFiltered(ctx context.Context, w io.Writer, argv ...string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout = w
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", argv[0], err)
	}
	werr := a.WriteCPIO(in)
	cerr := in.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%s: %w: %s", argv[0], err, stderr.Bytes())
	}
	if werr != nil {
		return werr
	}
	return cerr
}
