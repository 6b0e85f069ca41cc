package db

import (
	"bytes"
	"testing"
)

// FuzzTxUnmarshal: a transaction that decodes re-encodes to the same bytes;
// applying any input to a database never panics, and one that fails
// changes nothing but the sequence number.
func FuzzTxUnmarshal(f *testing.F) {
	for _, tx := range sampleTxs() {
		b, _ := tx.MarshalBinary()
		f.Add(b)
	}
	f.Add(encode(f, Create(KindResource, "r", P{"group": str("web"), "type": str("ip"), "depends_on": ListValue("web-srv")})))
	f.Add(encode(f, Set(KindResource, "web-ip", P{"depends_on": ListValue("web-srv")})))
	f.Add(encode(f, Delete(KindGroup, "web"), Delete(KindResource, "web-srv"), Delete(KindResource, "web-fs"), Delete(KindResource, "web-ip")))
	f.Add(encode(f, Create(KindResource, "n", P{"group": str("web"), "type": str("network_name"), "name": str("www"), "mode": str("dns"),
		"dns_server": str("10.0.0.53"), "dns_zone": str("example"), "depends_on": ListValue("web-ip")})))
	f.Add(encode(f, Set(KindResourceType, "ip", P{"agent": str("generic_application")})))
	f.Add(encode(f, Set(KindGroup, "web", P{"failback": str("window"), "failback_window_start": IntValue(22), "failback_window_end": IntValue(6),
		"owner": str("n1"), "failovers": ListValue("1700000000000")})))
	f.Add([]byte{})
	f.Add([]byte("WPTX\x01\x00\x00\x00"))
	d := base(f)
	start := d.Snapshot()
	f.Fuzz(func(t *testing.T, b []byte) {
		var tx Tx
		if err := tx.UnmarshalBinary(b); err == nil {
			out, err := tx.MarshalBinary()
			if err != nil {
				t.Fatalf("decoded transaction does not encode: %v", err)
			}
			if !bytes.Equal(out, b) {
				t.Fatalf("round trip:\n in % x\nout % x", b, out)
			}
		}
		if err := d.Restore(start); err != nil {
			t.Fatal(err)
		}
		if err := d.Apply(d.Seq()+1, b); err != nil {
			if !bytes.Equal(d.Snapshot(), withSeq(start, d.Seq())) {
				t.Fatalf("failed transaction (%v) changed the database", err)
			}
			return
		}
		again := New()
		if err := again.Restore(d.Snapshot()); err != nil {
			t.Fatalf("the database after a transaction does not restore: %v", err)
		}
	})
}

// FuzzRestore: Restore never panics; a snapshot it accepts encodes back to
// itself, and one it refuses leaves the database unchanged. With fixCRC the
// input's last four bytes are replaced by its CRC32C first, so that the
// fuzzer reaches the decoder and the invariant checks behind the checksum.
func FuzzRestore(f *testing.F) {
	for _, fix := range []bool{false, true} {
		f.Add(base(f).Snapshot(), fix)
		f.Add(New().Snapshot(), fix)
		f.Add(large(f, 3).Snapshot(), fix)
		f.Add(schemaBase(f).Snapshot(), fix)
		f.Add([]byte("WPDB\x01\x00\x00\x00"), fix)
	}
	d := base(f)
	mustApply(f, d, Set(KindCluster, ClusterObject, P{"mark": str("before")}))
	before := d.Snapshot()
	f.Fuzz(func(t *testing.T, b []byte, fixCRC bool) {
		if fixCRC && len(b) >= 4 {
			b = bytes.Clone(b)
			be.PutUint32(b[len(b)-4:], crc32Checksum(b[:len(b)-4]))
		}
		if err := d.Restore(b); err != nil {
			if !bytes.Equal(d.Snapshot(), before) {
				t.Fatalf("refused snapshot (%v) changed the database", err)
			}
			return
		}
		if !bytes.Equal(d.Snapshot(), b) {
			t.Fatalf("accepted snapshot encodes differently")
		}
		if err := d.Restore(before); err != nil {
			t.Fatal(err)
		}
	})
}
