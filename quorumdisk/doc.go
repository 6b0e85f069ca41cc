// Package quorumdisk implements the quorum LUN (docs/quorum-disk.md;
// docs/design.md, "Quorum arbitration" and "The recovery log and the
// database"): its on-disk layout (superblock, per-node disk heartbeat slots
// and poison-pill mailboxes, two alternating checkpoint areas, a ring of
// recovery log records, every structure versioned and CRC32C-checked), the
// recovery log, and the disk heartbeat slots. Quorum arbitration with
// SCSI-3 persistent reservations (SPC-4 5.12) is not here: it is the node
// core's arbiter in internal/core. The byte layout is documented in
// docs/quorum-disk.md.
package quorumdisk
