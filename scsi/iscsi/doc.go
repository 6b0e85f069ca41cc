// Package iscsi is a userspace iSCSI initiator (RFC 7143) that implements
// scsi.Device, so that a process in any network namespace can reach a LUN on
// an iSCSI target (such as Debian's tgt) and use real SCSI-3 persistent
// reservations without a kernel initiator.
//
// A Session is one iSCSI session of one TCP connection (MaxConnections=1,
// ErrorRecoveryLevel=0) to one logical unit. Open parses an address the way
// users write it,
//
//	iscsi://127.0.0.1:3260/iqn.2024-01.org.example:quorum/1
//
// logs in (AuthMethod None or CHAP with MD5, RFC 1994; operational text
// negotiation), and then carries SCSI commands from any number of goroutines:
// each command is tagged with its own Initiator Task Tag, one reader
// goroutine per connection demultiplexes Data-In, R2T, SCSI Response,
// NOP-In, Task Management and Logout responses, and CmdSN is kept inside the
// target's ExpCmdSN..MaxCmdSN window.
//
// # Connection loss
//
// When the connection fails (read or write error, protocol violation, header
// digest error, keepalive timeout), every command in flight on it fails. The
// next Execute logs in again with the same InitiatorName and ISID. If the
// target acknowledged every command of the old connection, the login first
// asks for connection reinstatement with the old TSIH (RFC 7143 6.3.4, valid
// at ErrorRecoveryLevel 0): when the target has not yet noticed the loss (a
// partition rather than a reset) the session and so the I_T nexus survive.
// To keep the target from noticing, the old socket stays open (parked, no
// longer read or written) until that login: when the path heals, the
// target's retransmissions are acknowledged rather than answered with an
// RST, on which tgt would free the session. A connection with commands
// unacknowledged is closed with an RST at once instead, so that none of them
// reaches the target late. Otherwise it logs in with TSIH 0 (session reinstatement, 6.3.5). SPC-4
// keeps registrations per initiator port (name + ISID), but tgt keys them on
// its session handle: after a new session they no longer admit this
// initiator. Config.OnReconnect reports which of the two happened. The
// initiator reconnects at once and does not wait DefaultTime2Wait.
//
// A command is retried transparently on the new connection only
// when retrying cannot change the outcome (see Idempotent: READ, INQUIRY,
// READ CAPACITY, TEST UNIT READY, PERSISTENT RESERVE IN, REPORT LUNS, MODE
// SENSE) or when it provably never left the initiator. Any other command
// (WRITE, PERSISTENT RESERVE OUT, ...) whose completion was lost fails with
// an error matching ErrOutcomeUnknown: it may or may not have been executed.
//
// # Limits
//
// The PDU codec (PDU, Codec, ParseText) is plain data and never trusts a
// length it reads: data segments are capped at the negotiated
// MaxRecvDataSegmentLength (at most MaxDataSegmentHardLimit), AHS at its
// 1020-byte field maximum, text values and key counts at fixed bounds.
package iscsi
