// Package memtarget is an in-memory SCSI logical unit (SPC-4, SBC-3) with
// SPC-4 persistent reservations, reached through the scsi.Device interface:
// a real implementation for unit tests and the deterministic cluster
// simulator, not a mock.
//
// A Target is one logical unit of Config.Blocks blocks; Target.Nexus gives
// the path of one I_T nexus, named after its initiator port. It implements
// TEST UNIT READY, REQUEST SENSE, INQUIRY (standard data, VPD pages 0x00,
// 0x80, 0x83), REPORT LUNS, READ CAPACITY(10/16), READ(10/16),
// WRITE(10/16), SYNCHRONIZE CACHE(10/16), PERSISTENT RESERVE IN (READ
// KEYS, READ RESERVATION, REPORT CAPABILITIES, READ FULL STATUS) and
// PERSISTENT RESERVE OUT (REGISTER, REGISTER AND IGNORE EXISTING KEY,
// RESERVE, RELEASE, CLEAR, PREEMPT, PREEMPT AND ABORT) with all six
// reservation types, the access rules of SPC-4 5.12.1 Table 60 and SBC-3
// Table 13, PRgeneration (SPC-4 6.15.2) and the unit attentions of SPC-4
// 5.12. Errors are CHECK CONDITION with fixed-format sense data. A unit
// attention is reported once, on the next command of its nexus, and that
// command is not executed; INQUIRY and REPORT LUNS neither report nor
// clear it, REQUEST SENSE returns and clears it (SAM-5 5.14). A new nexus
// starts with POWER ON, RESET (29/00) pending, as on tgt.
//
// Not supported: REGISTER AND MOVE, REPLACE LOST RESERVATION, SPEC_I_PT,
// ALL_TG_PT and APTPL (REPORT CAPABILITIES says so), protection
// information, descriptor-format sense, SPC-2 RESERVE/RELEASE. Commands
// run one at a time to completion, so PREEMPT AND ABORT has no task to
// abort and acts as PREEMPT.
//
// # tgt compatibility
//
// The shared LUN of the real testbeds comes from Debian 12's tgt 1.0.85
// (usr/spc.c, usr/target.c). Where its visible behaviour differs from
// SPC-4, memtarget follows SPC-4 unless Config.Compat is CompatTgt, which
// reproduces tgt. Both modes agree on everything else: statuses and keys
// for well-formed REGISTER, RESERVE, RELEASE by the holder, CLEAR and
// PREEMPT; READ KEYS order; READ RESERVATION (key zero for the
// all-registrants types); REPORT CAPABILITIES (00 08 00 80 ea 01 00 00: no
// CRH, SIP_C, ATP_C or PTPL_C, type mask valid for the six types); which
// commands conflict; the unit attention reported before any reservation
// check; 29/00 on a new nexus. The differences:
//
//  1. PREEMPT AND ABORT: tgt does not implement it (commented out of its
//     service action table): CHECK CONDITION, INVALID FIELD IN CDB (24/00).
//     SPC-4 mode: as PREEMPT.
//  2. READ FULL STATUS: tgt answers INVALID FIELD IN CDB; SPC-4 mode
//     implements it (iSCSI TransportIDs naming the initiator).
//  3. Nexuses whose registration a PREEMPT removes get REGISTRATIONS
//     PREEMPTED (2a/05) in SPC-4 mode, RESERVATIONS PREEMPTED (2a/03) from
//     tgt. In both, if PREEMPT changes the reservation's type or scope, the
//     other remaining registrants get RESERVATIONS RELEASED (2a/04).
//  4. RELEASE by the holder: SPC-4 queues 2a/04 to the other registrants
//     for the registrants-only and all-registrants types and to nobody for
//     Write Exclusive and Exclusive Access. tgt does the reverse: nothing
//     for types 5-8; for types 1 and 3 it calls ua_sense_add_other_it_nexus
//     once per other registrant R, which queues 2a/04 to every nexus except
//     R: the releasing nexus and unregistered nexuses get it too, and with
//     n other registrants each nexus gets n or n-1 copies.
//  5. The holder unregistering (REGISTER with a zero service action key)
//     releases the reservation. SPC-4: 2a/04 to the other registrants for
//     the registrants-only types only. tgt: the same per-registrant fan-out
//     as in 4, for every type, and PRgeneration is incremented twice.
//  6. RESERVE does not check the RESERVATION KEY on tgt: a registered nexus
//     reserves with any key. SPC-4: RESERVATION CONFLICT.
//  7. RELEASE with a wrong RESERVATION KEY when there is no reservation or
//     the nexus is not the holder: GOOD on tgt, RESERVATION CONFLICT in
//     SPC-4 mode.
//  8. PREEMPT with a zero SERVICE ACTION RESERVATION KEY and no
//     all-registrants reservation: SPC-4 mode answers INVALID FIELD IN
//     PARAMETER LIST (26/00). tgt answers INVALID FIELD IN CDB (24/00) when
//     a reservation exists, and GOOD (PRgeneration incremented, nothing
//     else) when none does. tgt does not check the TYPE of a PREEMPT that
//     takes a reservation over; SPC-4 mode answers 24/00 for a bad one.
//  9. PERSISTENT RESERVE OUT parameter list length other than 24: PARAMETER
//     LIST LENGTH ERROR (1a/00) in SPC-4 mode, INVALID FIELD IN CDB on tgt.
//     SPEC_I_PT, ALL_TG_PT or APTPL set: INVALID FIELD IN PARAMETER LIST
//     (26/00) in SPC-4 mode, INVALID FIELD IN CDB on tgt.
//  10. PERSISTENT RESERVE IN with an allocation length below 8: tgt
//     answers INVALID FIELD IN CDB; SPC-4 mode truncates.
//  11. Unit attention queue: tgt queues every condition, duplicates
//     included, and reports them oldest first; SPC-4 mode does not queue a
//     condition already pending.
//
// Items 1, 3, 4, 5 (the attentions), 6, 7 and 8 (24/00) were also checked
// against tgtd 1.0.85 over iSCSI with libiscsi, including the attention
// counts of item 4 (releasing nexus 2, other registrants 1 each,
// unregistered nexus 2, with three registrants). tgt keeps the registration
// of a nexus whose session logged out, and each such stale registrant adds
// one more RESERVATIONS RELEASED to every nexus in items 4 and 5.
//
// A Target starts no goroutines, reads no clock and draws no random
// numbers; commands from all nexuses are serialised by one mutex. Fault
// hooks (SetFault, PowerCycle) and inspection (Registrations, Reservation,
// Generation, PendingAttentions) serve the simulator.
package memtarget
