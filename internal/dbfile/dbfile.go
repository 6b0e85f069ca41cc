// Package dbfile keeps a node's last copy of the cluster database on its
// local disk (docs/database.md, "The local copy"), as WSFC keeps ClusDB: a
// snapshot of package gup/db and the GUP sequence number it was taken at,
// so that a node that cannot reach the cluster can still show its last
// known configuration, and a joining node knows how far behind it is.
//
// Save replaces the file atomically (a temporary file in the same
// directory, fsync, rename, fsync of the directory): after a crash the file
// holds the old copy or the new one, never a mixture. Load checks the
// header and the CRC32C and names what is wrong with a damaged file.
//
// The file, big endian:
//
//	0   magic "WPDF"              4
//	4   version (1)               2
//	6   reserved (0)              2
//	8   sequence number           8
//	16  snapshot length           8
//	24  CRC32C of bytes 0-23 and of the snapshot  4
//	28  reserved (0)              4
//	32  snapshot
package dbfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// Version is the file format version Save writes and Load reads.
const Version = 1

// HeaderLen is the length of the header before the snapshot.
const HeaderLen = 32

// MaxSnapshotLen bounds the snapshot a file may hold.
const MaxSnapshotLen = 1 << 30

// Errors Load and Decode return for a damaged file; each wraps ErrCorrupt.
// A missing file is none of these: Load's error then satisfies
// errors.Is(err, fs.ErrNotExist).
var (
	ErrCorrupt   = errors.New("dbfile: corrupt")
	ErrTruncated = fmt.Errorf("%w: truncated", ErrCorrupt)
	ErrMagic     = fmt.Errorf("%w: not a database file (bad magic)", ErrCorrupt)
	ErrVersion   = fmt.Errorf("%w: unknown version", ErrCorrupt)
	ErrChecksum  = fmt.Errorf("%w: CRC32C mismatch", ErrCorrupt)
)

var (
	magic      = [4]byte{'W', 'P', 'D', 'F'}
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
	be         = binary.BigEndian
)

// Encode returns the file's bytes for snapshot taken at seq.
func Encode(seq uint64, snapshot []byte) ([]byte, error) {
	if len(snapshot) > MaxSnapshotLen {
		return nil, fmt.Errorf("dbfile: snapshot of %d bytes (max %d)", len(snapshot), MaxSnapshotLen)
	}
	b := make([]byte, HeaderLen, HeaderLen+len(snapshot))
	header(b, seq, snapshot)
	return append(b, snapshot...), nil
}

func header(h []byte, seq uint64, snapshot []byte) {
	copy(h, magic[:])
	be.PutUint16(h[4:], Version)
	be.PutUint64(h[8:], seq)
	be.PutUint64(h[16:], uint64(len(snapshot)))
	c := crc32.Update(crc32.Checksum(h[:24], castagnoli), castagnoli, snapshot)
	be.PutUint32(h[24:], c)
}

// Decode parses a file's bytes. The snapshot it returns aliases b.
func Decode(b []byte) (seq uint64, snapshot []byte, err error) {
	if len(b) < 4 {
		return 0, nil, fmt.Errorf("%w: %d bytes, want a header of %d", ErrTruncated, len(b), HeaderLen)
	}
	if [4]byte(b[:4]) != magic {
		return 0, nil, fmt.Errorf("%w: % x, want %q", ErrMagic, b[:4], magic[:])
	}
	if len(b) < HeaderLen {
		return 0, nil, fmt.Errorf("%w: %d bytes, want a header of %d", ErrTruncated, len(b), HeaderLen)
	}
	if v := be.Uint16(b[4:]); v != Version {
		return 0, nil, fmt.Errorf("%w: %d, want %d", ErrVersion, v, Version)
	}
	if be.Uint16(b[6:]) != 0 || be.Uint32(b[28:]) != 0 {
		return 0, nil, fmt.Errorf("%w: reserved header bytes set", ErrCorrupt)
	}
	seq, n := be.Uint64(b[8:]), be.Uint64(b[16:])
	if n > MaxSnapshotLen {
		return 0, nil, fmt.Errorf("%w: snapshot length %d (max %d)", ErrCorrupt, n, MaxSnapshotLen)
	}
	body := b[HeaderLen:]
	if uint64(len(body)) < n {
		return 0, nil, fmt.Errorf("%w: %d snapshot bytes of %d", ErrTruncated, len(body), n)
	}
	if uint64(len(body)) > n {
		return 0, nil, fmt.Errorf("%w: %d bytes after the %d-byte snapshot", ErrCorrupt, uint64(len(body))-n, n)
	}
	c := crc32.Update(crc32.Checksum(b[:24], castagnoli), castagnoli, body)
	if stored := be.Uint32(b[24:]); c != stored {
		return 0, nil, fmt.Errorf("%w: computed %08x, stored %08x", ErrChecksum, c, stored)
	}
	return seq, body, nil
}

// Load reads the file at path. A missing file gives an error for which
// errors.Is(err, fs.ErrNotExist) holds; a damaged one, an error wrapping
// ErrCorrupt (ErrTruncated, ErrMagic, ErrVersion, ErrChecksum) and naming
// the path.
func Load(path string) (seq uint64, snapshot []byte, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, fmt.Errorf("dbfile: read %s: %w", path, err)
	}
	seq, snapshot, err = Decode(b)
	if err != nil {
		return 0, nil, fmt.Errorf("dbfile %s: %w", path, err)
	}
	return seq, snapshot, nil
}

// Save writes snapshot, taken at seq, to path atomically: a temporary file
// in the same directory (mode 0600: the database may hold secrets),
// written and fsynced, renamed over path, and the directory fsynced so
// that the rename is durable. An error before the rename leaves path as it
// was and removes the temporary file; one after it (the directory's fsync)
// means the new copy is in place but may not survive a crash.
func Save(path string, seq uint64, snapshot []byte) (err error) {
	if len(snapshot) > MaxSnapshotLen {
		return fmt.Errorf("dbfile: save %s: snapshot of %d bytes (max %d)", path, len(snapshot), MaxSnapshotLen)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("dbfile: save %s: create temporary file: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	var h [HeaderLen]byte
	header(h[:], seq, snapshot)
	if _, err := f.Write(h[:]); err != nil {
		return fmt.Errorf("dbfile: save %s: write %s: %w", path, tmp, err)
	}
	if _, err := f.Write(snapshot); err != nil {
		return fmt.Errorf("dbfile: save %s: write %s: %w", path, tmp, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("dbfile: save %s: fsync %s: %w", path, tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("dbfile: save %s: close %s: %w", path, tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("dbfile: save %s: rename %s: %w", path, tmp, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("dbfile: save %s: open directory to fsync: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("dbfile: save %s: fsync directory %s: %w", path, dir, err)
	}
	return nil
}
