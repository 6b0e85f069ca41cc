// Package quorumdisk implements the quorum LUN (DESIGN.md §5.3, §5.4): its
// on-disk layout (superblock, per-node disk heartbeat slots and poison-pill
// mailboxes, two alternating checkpoint areas, a ring of recovery log
// records, every structure versioned and CRC32C-checked), the recovery log,
// and quorum arbitration with SCSI-3 persistent reservations (SPC-4 5.12) as
// a deterministic state machine (Arbiter) with a Driver that runs it on a
// scsi.Device. The byte layout is documented in docs/quorum-disk.md.
package quorumdisk
