package iscsitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// ReaderInitiator is the iSCSI name ReadKeysIndependently logs in as.
const ReaderInitiator = "iqn.2024-01.dev.wolfpack:independent-reader"

// ReadKeysIndependently reads the persistent reservation keys registered
// on the logical unit at addr (iscsi://host[:port]/target/lun) and the
// PRgeneration, with an initiator that shares no code with this module's:
// libiscsi (the initiator QEMU uses), through its C API, from a short
// Python script (ctypes). wrap prefixes the command, e.g. netns.Wrap(ns)
// to reach a portal inside a network namespace; nil runs it here.
//
// Why this reader: a test that checks our initiator's PREEMPT with our
// initiator's READ KEYS would pass if both were wrong the same way. The
// obvious independent tools do not reach an iSCSI target here: sg_persist
// (sg3-utils) needs a SCSI device node, and the kernel initiator
// (open-iscsi) that would make one needs the iscsi_tcp module, which a
// container, or a network namespace without its own iscsid, does not
// have; libiscsi-bin's tools (iscsi-ls, iscsi-inq, iscsi-readcapacity16,
// iscsi-swp, iscsi-perf, iscsi-test-cu) inquire, read capacity, set the
// write-protect bit, measure or run conformance tests, but none prints
// registered keys; and `tgtadm --mode target --op show` lists sessions
// and LUNs but no registrations. So the script drives libiscsi's own
// iscsi_persistent_reserve_in_sync (READ KEYS, SPC-4 6.16.2) and decodes
// the answer with libiscsi's scsi_datain_unmarshall; it needs python3 and
// libiscsi7 (a dependency of libiscsi-bin).
func ReadKeysIndependently(ctx context.Context, wrap []string, addr string) (generation uint32, keys []uint64, err error) {
	// iscsi://portal/target/lun, as Addr writes it.
	rest, _ := strings.CutPrefix(addr, "iscsi://")
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return 0, nil, fmt.Errorf("read keys with libiscsi: address %q: want iscsi://host:port/target/lun", addr)
	}
	if _, err := strconv.ParseUint(parts[2], 10, 16); err != nil {
		return 0, nil, fmt.Errorf("read keys with libiscsi: address %q: lun: %w", addr, err)
	}
	argv := append(append([]string(nil), wrap...), "python3", "-c", readKeysScript, ReaderInitiator, parts[0], parts[1], parts[2])
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return 0, nil, fmt.Errorf("read keys of %s with libiscsi: %w: %s", addr, err, bytes.TrimSpace(stderr.Bytes()))
	}
	var out struct {
		Generation uint32   `json:"generation"`
		Keys       []uint64 `json:"keys"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return 0, nil, fmt.Errorf("read keys of %s with libiscsi: %w: %q", addr, err, stdout.Bytes())
	}
	return out.Generation, out.Keys, nil
}

// readKeysScript: argv initiator portal target lun; prints
// {"generation": N, "keys": [...]} or fails with a message on stderr.
const readKeysScript = `
import ctypes, json, sys
from ctypes import c_void_p, c_char_p, c_int, c_uint32, c_uint64

def fail(msg):
    sys.stderr.write(msg + "\n")
    sys.exit(1)

lib = ctypes.CDLL("libiscsi.so.7")
for name, res, args in [
    ("iscsi_create_context", c_void_p, [c_char_p]),
    ("iscsi_set_targetname", c_int, [c_void_p, c_char_p]),
    ("iscsi_set_session_type", c_int, [c_void_p, c_int]),
    ("iscsi_full_connect_sync", c_int, [c_void_p, c_char_p, c_int]),
    ("iscsi_get_error", c_char_p, [c_void_p]),
    ("iscsi_persistent_reserve_in_sync", c_void_p, [c_void_p, c_int, c_int, c_int]),
    ("scsi_datain_unmarshall", c_void_p, [c_void_p]),
    ("scsi_free_scsi_task", None, [c_void_p]),
    ("iscsi_logout_sync", c_int, [c_void_p]),
    ("iscsi_destroy_context", c_int, [c_void_p]),
]:
    f = getattr(lib, name)
    f.restype, f.argtypes = res, args

initiator, portal, target, lun = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = lib.iscsi_create_context(initiator.encode())
if not ctx:
    fail("iscsi_create_context failed")
lib.iscsi_set_targetname(ctx, target.encode())
lib.iscsi_set_session_type(ctx, 2)  # ISCSI_SESSION_NORMAL
if lib.iscsi_full_connect_sync(ctx, portal.encode(), lun) != 0:
    fail("log in to %s %s: %s" % (portal, target, lib.iscsi_get_error(ctx).decode()))
# A new I_T nexus may first get a UNIT ATTENTION (CHECK CONDITION): ask again.
for attempt in range(4):
    task = lib.iscsi_persistent_reserve_in_sync(ctx, lun, 0, 8 + 8 * 1024)  # READ KEYS
    if not task:
        fail("PERSISTENT RESERVE IN: %s" % lib.iscsi_get_error(ctx).decode())
    status = c_int.from_address(task).value  # struct scsi_task starts with int status
    if status == 0:
        break
    lib.scsi_free_scsi_task(task)
else:
    fail("PERSISTENT RESERVE IN: SCSI status %d" % status)
rk = lib.scsi_datain_unmarshall(task)
if not rk:
    fail("PERSISTENT RESERVE IN: cannot decode the answer")
# struct scsi_persistent_reserve_in_read_keys:
# uint32 prgeneration, uint32 additional_length, int num_keys, uint64 keys[].
gen = c_uint32.from_address(rk).value
length = c_uint32.from_address(rk + 4).value
n = c_int.from_address(rk + 8).value
if n != length // 8:
    fail("READ KEYS: %d keys for additional length %d: libiscsi's struct layout is not the expected one" % (n, length))
keys = [c_uint64.from_address(rk + 16 + 8 * i).value for i in range(n)]
lib.scsi_free_scsi_task(task)
lib.iscsi_logout_sync(ctx)
lib.iscsi_destroy_context(ctx)
print(json.dumps({"generation": gen, "keys": keys}))
`
