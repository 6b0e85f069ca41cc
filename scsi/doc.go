// Package scsi issues SCSI commands (SPC-4, SBC-3) through a small Device
// interface: CDB builders and parameter-data parsers for the commands Wolfpack
// needs (INQUIRY, TEST UNIT READY, READ CAPACITY(16), READ(16), WRITE(16),
// SYNCHRONIZE CACHE(16), PERSISTENT RESERVE IN/OUT), fixed and descriptor
// sense data, a typed error that tells RESERVATION CONFLICT, UNIT ATTENTION
// and NOT READY apart, and the Linux SG_IO transport.
//
// The in-memory SPC-4 target in scsi/memtarget implements the same Device
// interface for unit tests and the simulator.
package scsi
