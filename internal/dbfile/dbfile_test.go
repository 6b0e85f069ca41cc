package dbfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "clusdb")
	snap := bytes.Repeat([]byte("snapshot"), 1000)
	if err := Save(path, 42, snap); err != nil {
		t.Fatal(err)
	}
	seq, got, err := Load(path)
	if err != nil || seq != 42 || !bytes.Equal(got, snap) {
		t.Fatalf("Load: seq %d, %d bytes, %v", seq, len(got), err)
	}
	// A second save replaces the first and leaves no temporary file.
	if err := Save(path, 43, []byte("newer")); err != nil {
		t.Fatal(err)
	}
	seq, got, err = Load(path)
	if err != nil || seq != 43 || string(got) != "newer" {
		t.Fatalf("Load after a second save: seq %d, %q, %v", seq, got, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want only the file", len(ents))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	// An empty snapshot is a valid file.
	if err := Save(path, 0, nil); err != nil {
		t.Fatal(err)
	}
	if seq, got, err := Load(path); err != nil || seq != 0 || len(got) != 0 {
		t.Fatalf("empty snapshot: %d %q %v", seq, got, err)
	}
}

func TestLoadMissing(t *testing.T) {
	_, _, err := Load(filepath.Join(t.TempDir(), "none"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestSaveFails(t *testing.T) {
	err := Save(filepath.Join(t.TempDir(), "no", "such", "dir", "clusdb"), 1, nil)
	if err == nil || !strings.Contains(err.Error(), "create temporary file") {
		t.Fatalf("save into a missing directory: %v", err)
	}
}

// TestDamaged: a torn write (the file cut at any length), a flipped bit, a
// foreign file and trailing data are each refused with their own error.
func TestDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clusdb")
	good, err := Encode(7, []byte("a snapshot of the cluster database"))
	if err != nil {
		t.Fatal(err)
	}
	load := func(b []byte) error {
		t.Helper()
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, _, err := Load(path)
		return err
	}
	for n := 0; n < len(good); n++ {
		err := load(good[:n])
		if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), path) {
			t.Fatalf("cut at %d: %v, want ErrTruncated naming the path", n, err)
		}
	}
	for i := range good {
		if i == 4 || i == 5 || i == 6 || i == 7 || i >= 16 && i < 24 || i >= 28 && i < 32 {
			continue // version, reserved, length: their own errors
		}
		b := bytes.Clone(good)
		b[i] ^= 0x20
		err := load(b)
		want := ErrChecksum
		if i < 4 {
			want = ErrMagic
		}
		if !errors.Is(err, want) {
			t.Fatalf("bit flip at %d: %v, want %v", i, err, want)
		}
	}
	for _, tc := range []struct {
		mod  func([]byte) []byte
		want error
		msg  string
	}{
		{func(b []byte) []byte { b[5] = 2; return b }, ErrVersion, "unknown version: 2, want 1"},
		{func(b []byte) []byte { b[29] = 1; return b }, ErrCorrupt, "reserved"},
		{func(b []byte) []byte { return append(b, 0) }, ErrCorrupt, "1 bytes after the 34-byte snapshot"},
		{func(b []byte) []byte { b[16] = 0x80; return b }, ErrCorrupt, "snapshot length"},
		{func(b []byte) []byte { return []byte("{\"cluster\": \"x\"}") }, ErrMagic, "not a database file"},
	} {
		err := load(tc.mod(bytes.Clone(good)))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("got %v, want %v containing %q", err, tc.want, tc.msg)
		}
	}
}

// FuzzDecode: Decode never panics, and what it accepts encodes back to the
// same bytes.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{"", "x", "a snapshot"} {
		b, _ := Encode(uint64(len(s)), []byte(s))
		f.Add(b)
	}
	f.Add([]byte("WPDF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		seq, snap, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := Encode(seq, snap)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("round trip: %v\n in % x\nout % x", err, b, again)
		}
	})
}

func BenchmarkSave2MB(b *testing.B) {
	path := filepath.Join(b.TempDir(), "clusdb")
	snap := bytes.Repeat([]byte{0x5a}, 2<<20)
	b.SetBytes(int64(len(snap)))
	for b.Loop() {
		if err := Save(path, 1, snap); err != nil {
			b.Fatal(err)
		}
	}
}
