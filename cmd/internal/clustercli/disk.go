package clustercli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/wolfpack-ha/wolfpack/scsi"
)

const diskUsage = `usage: cluster disk <action> [flags] DEVICE

Inspect and manage SCSI-3 persistent reservations on a shared LUN.
` + deviceHelp + `
Keys are 8-byte hex numbers, as
sg_persist takes them (0x prefix optional). Types: we, ea, we-ro, ea-ro,
we-ar, ea-ar (or their SPC-4 codes 1, 3, 5, 6, 7, 8).

actions:
  show          identity, capacity, registered keys, reservation, capabilities
  keys          registered keys (PERSISTENT RESERVE IN, READ KEYS)
  reservation   the reservation holder and type (READ RESERVATION)
  status        full status per registration (READ FULL STATUS, if supported)
  register      --key K [--old-key K | --ignore-existing]: register this path's key
  unregister    --key K: remove this path's registration
  reserve       --key K --type T: take the reservation
  release       --key K --type T: give the reservation up
  preempt       --key K --victim K --type T [--abort]: remove another key (and
                take its reservation if it holds it); --abort also aborts its tasks
  clear         --key K: remove every registration and the reservation
  format        [--force]: write an empty quorum disk (see 'cluster quorum -h');
                refuses a LUN that holds data unless --force
  check         can this path read and write the LUN? (rewrites the last block
                with its own contents, FUA; exits 1 if either fails)

flags (every action):
  --json        machine-readable output (errors too, on stdout)
  --timeout D   per-action time limit (default 30s)
` + initiatorHelp

// diskFlags are the flags every disk action accepts; each action uses the
// ones it needs and rejects none (so scripts can pass a uniform set).
type diskFlags struct {
	json           bool
	timeout        time.Duration
	key, oldKey    string
	victim         string
	typ            string
	ignoreExisting bool
	abort          bool
	initiatorName  string
	count          int
	force          bool
}

func runDisk(ctx context.Context, args []string, stdout, stderr io.Writer, open opener) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, diskUsage)
		return usagef("disk: missing action")
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, diskUsage)
		return nil
	}
	action := args[0]
	act, ok := diskActions[action]
	if !ok {
		fmt.Fprint(stderr, diskUsage)
		return usagef("disk: unknown action %q", action)
	}

	var f diskFlags
	fs := flag.NewFlagSet("cluster disk "+action, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&f.json, "json", false, "")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "")
	fs.StringVar(&f.key, "key", "", "")
	fs.StringVar(&f.oldKey, "old-key", "", "")
	fs.StringVar(&f.victim, "victim", "", "")
	fs.StringVar(&f.typ, "type", "", "")
	fs.BoolVar(&f.ignoreExisting, "ignore-existing", false, "")
	fs.BoolVar(&f.abort, "abort", false, "")
	fs.BoolVar(&f.force, "force", false, "")
	fs.StringVar(&f.initiatorName, "initiator-name", "", "")
	fs.IntVar(&f.count, "count", 1000, "")
	pos, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, diskUsage)
		return nil
	}
	if err != nil {
		return usagef("disk %s: %v", action, err)
	}
	if len(pos) != 1 {
		return usagef("disk %s: want exactly one DEVICE, got %d arguments", action, len(pos))
	}
	if f.timeout <= 0 {
		return usagef("disk %s: --timeout must be positive, got %s", action, f.timeout)
	}
	dev := pos[0]
	req, err := act.parse(&f)
	if err != nil {
		return usagef("disk %s: %v", action, err)
	}
	d, err := openLUN(open, dev, f.initiatorName)
	if err != nil {
		return lunError(stdout, f.json, "disk "+action, dev, err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	out, err := act.do(ctx, d, req)
	if err != nil {
		return report(stdout, f.json, dev, action, err)
	}
	if f.json {
		err = writeJSON(stdout, withDevice(dev, action, out))
	} else if h, ok := out.(interface{ human(dev string) string }); ok {
		_, err = fmt.Fprint(stdout, h.human(dev))
	} else {
		_, err = fmt.Fprintf(stdout, "%s: %s: done\n", dev, action)
	}
	if err != nil {
		return err
	}
	if c, ok := out.(checkResult); ok && !c.ok() {
		return errReported
	}
	return nil
}

// parseInterspersed parses flags that may come before or after positional
// arguments ("cluster disk keys /dev/sg0 --json").
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// request is a parsed, validated action argument set.
type request struct {
	key, oldKey, victim uint64
	typ                 scsi.ReservationType
	ignoreExisting      bool
	abort               bool
	count               int
	force               bool
}

type diskAction struct {
	parse func(*diskFlags) (request, error)
	do    func(context.Context, scsi.Device, request) (any, error)
}

var diskActions = map[string]diskAction{
	"show":        {parse: none, do: doShow},
	"keys":        {parse: none, do: doKeys},
	"reservation": {parse: none, do: doReservation},
	"status":      {parse: none, do: doStatus},
	"check":       {parse: none, do: doCheck},
	// bench is not in the usage: a measurement for BENCHMARKS.md, run the
	// same way on every transport (see docs/iscsi.md).
	"bench": {parse: func(f *diskFlags) (request, error) {
		if f.count < 1 || f.count > 1000000 {
			return request{}, fmt.Errorf("--count %d: want 1..1000000", f.count)
		}
		return request{count: f.count}, nil
	}, do: doBench},
	"register": {parse: func(f *diskFlags) (request, error) {
		r, err := needKey(f)
		if err != nil {
			return r, err
		}
		if f.oldKey != "" && f.ignoreExisting {
			return r, errors.New("--old-key and --ignore-existing exclude each other")
		}
		if f.oldKey != "" {
			if r.oldKey, err = parseKey("--old-key", f.oldKey); err != nil {
				return r, err
			}
		}
		r.ignoreExisting = f.ignoreExisting
		return r, nil
	}, do: func(ctx context.Context, d scsi.Device, r request) (any, error) {
		if r.ignoreExisting {
			return actionResult{Key: keyString(r.key)}, scsi.RegisterAndIgnore(ctx, d, r.key)
		}
		return actionResult{Key: keyString(r.key)}, scsi.Register(ctx, d, r.oldKey, r.key)
	}},
	"unregister": {parse: needKey, do: func(ctx context.Context, d scsi.Device, r request) (any, error) {
		return actionResult{Key: keyString(r.key)}, scsi.Register(ctx, d, r.key, 0)
	}},
	"reserve": {parse: needKeyType, do: func(ctx context.Context, d scsi.Device, r request) (any, error) {
		return actionResult{Key: keyString(r.key), Type: r.typ.ShortName()}, scsi.Reserve(ctx, d, r.key, r.typ)
	}},
	"release": {parse: needKeyType, do: func(ctx context.Context, d scsi.Device, r request) (any, error) {
		return actionResult{Key: keyString(r.key), Type: r.typ.ShortName()}, scsi.Release(ctx, d, r.key, r.typ)
	}},
	"clear": {parse: needKey, do: func(ctx context.Context, d scsi.Device, r request) (any, error) {
		return actionResult{Key: keyString(r.key)}, scsi.Clear(ctx, d, r.key)
	}},
	"preempt": {parse: func(f *diskFlags) (request, error) {
		r, err := needKeyType(f)
		if err != nil {
			return r, err
		}
		if f.victim == "" {
			return r, errors.New("--victim is required")
		}
		if r.victim, err = parseKey("--victim", f.victim); err != nil {
			return r, err
		}
		r.abort = f.abort
		return r, nil
	}, do: func(ctx context.Context, d scsi.Device, r request) (any, error) {
		res := actionResult{Key: keyString(r.key), Victim: keyString(r.victim), Type: r.typ.ShortName(), ServiceAction: "PREEMPT"}
		if !r.abort {
			return res, scsi.Preempt(ctx, d, r.key, r.victim, r.typ)
		}
		res.ServiceAction = "PREEMPT AND ABORT"
		fellBack, err := scsi.PreemptAbortOrPreempt(ctx, d, r.key, r.victim, r.typ)
		if fellBack {
			res.ServiceAction = "PREEMPT"
			res.Note = "the target refused PREEMPT AND ABORT (INVALID FIELD IN CDB); used PREEMPT"
		}
		return res, err
	}},
}

func none(*diskFlags) (request, error) { return request{}, nil }

func needKey(f *diskFlags) (request, error) {
	if f.key == "" {
		return request{}, errors.New("--key is required")
	}
	k, err := parseKey("--key", f.key)
	if err != nil {
		return request{}, err
	}
	if k == 0 {
		return request{}, errors.New("--key 0 is not a reservation key (0 means unregistered)")
	}
	return request{key: k}, nil
}

func needKeyType(f *diskFlags) (request, error) {
	r, err := needKey(f)
	if err != nil {
		return r, err
	}
	if f.typ == "" {
		return r, errors.New("--type is required (we, ea, we-ro, ea-ro, we-ar, ea-ar)")
	}
	if r.typ, err = scsi.ParseReservationType(f.typ); err != nil {
		return r, fmt.Errorf("--type: %w", err)
	}
	return r, nil
}

// parseKey reads a reservation key in hex, as sg_persist does.
func parseKey(flagName, s string) (uint64, error) {
	h := strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if h == "" || len(h) > 16 {
		return 0, fmt.Errorf("%s %q: want a hex number of 1 to 16 digits", flagName, s)
	}
	k, err := strconv.ParseUint(h, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want a hex number of 1 to 16 digits", flagName, s)
	}
	return k, nil
}

func keyString(k uint64) string { return fmt.Sprintf("0x%016x", k) }

type actionResult struct {
	Key           string `json:"key,omitempty"`
	Victim        string `json:"victim,omitempty"`
	Type          string `json:"type,omitempty"`
	ServiceAction string `json:"service_action,omitempty"`
	Note          string `json:"note,omitempty"`
}

func (r actionResult) human(dev string) string {
	if r.Note != "" {
		return fmt.Sprintf("%s: done (%s)\n", dev, r.Note)
	}
	return fmt.Sprintf("%s: done\n", dev)
}

type keysResult struct {
	Generation uint32   `json:"generation"`
	Keys       []string `json:"keys"`
}

func (r keysResult) human(dev string) string {
	var b strings.Builder
	n := len(r.Keys)
	switch n {
	case 0:
		fmt.Fprintf(&b, "%s: generation %d, no registered keys\n", dev, r.Generation)
	case 1:
		fmt.Fprintf(&b, "%s: generation %d, 1 registered key\n", dev, r.Generation)
	default:
		fmt.Fprintf(&b, "%s: generation %d, %d registered keys\n", dev, r.Generation, n)
	}
	for _, k := range r.Keys {
		fmt.Fprintf(&b, "  %s\n", k)
	}
	return b.String()
}

func doKeys(ctx context.Context, d scsi.Device, _ request) (any, error) {
	ks, err := scsi.ReadKeys(ctx, d)
	if err != nil {
		return nil, err
	}
	r := keysResult{Generation: ks.Generation, Keys: []string{}}
	for _, k := range ks.Keys {
		r.Keys = append(r.Keys, keyString(k))
	}
	return r, nil
}

type reservationResult struct {
	Generation uint32 `json:"generation"`
	Reserved   bool   `json:"reserved"`
	Key        string `json:"key,omitempty"`
	Type       string `json:"type,omitempty"`
	TypeName   string `json:"type_name,omitempty"`
}

func (r reservationResult) human(dev string) string {
	if !r.Reserved {
		return fmt.Sprintf("%s: generation %d, no reservation\n", dev, r.Generation)
	}
	return fmt.Sprintf("%s: generation %d, reserved by %s, type %s (%s)\n", dev, r.Generation, r.Key, r.TypeName, r.Type)
}

func doReservation(ctx context.Context, d scsi.Device, _ request) (any, error) {
	rs, err := scsi.ReadReservation(ctx, d)
	if err != nil {
		return nil, err
	}
	r := reservationResult{Generation: rs.Generation, Reserved: rs.Held}
	if rs.Held {
		r.Key, r.Type, r.TypeName = keyString(rs.Key), rs.Type.ShortName(), rs.Type.String()
	}
	return r, nil
}

type statusEntry struct {
	Key                string `json:"key"`
	Holder             bool   `json:"holder"`
	Type               string `json:"type,omitempty"`
	AllTargetPorts     bool   `json:"all_target_ports"`
	RelativeTargetPort uint16 `json:"relative_target_port"`
	TransportID        string `json:"transport_id"`
}

type statusResult struct {
	Generation    uint32        `json:"generation"`
	Registrations []statusEntry `json:"registrations"`
}

func (r statusResult) human(dev string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: generation %d, %d registrations\n", dev, r.Generation, len(r.Registrations))
	for _, e := range r.Registrations {
		h := ""
		if e.Holder {
			h = ", holder, type " + e.Type
		}
		fmt.Fprintf(&b, "  %s port %d%s  %s\n", e.Key, e.RelativeTargetPort, h, e.TransportID)
	}
	return b.String()
}

func doStatus(ctx context.Context, d scsi.Device, _ request) (any, error) {
	fs, err := scsi.ReadFullStatus(ctx, d)
	if err != nil {
		return nil, err
	}
	r := statusResult{Generation: fs.Generation, Registrations: []statusEntry{}}
	for _, e := range fs.Descriptors {
		se := statusEntry{Key: keyString(e.Key), Holder: e.Holder, AllTargetPorts: e.AllTgPt,
			RelativeTargetPort: e.RelativeTargetPort, TransportID: printableTransportID(e.TransportID)}
		if e.Holder {
			se.Type = e.Type.ShortName()
		}
		r.Registrations = append(r.Registrations, se)
	}
	return r, nil
}

// printableTransportID shows an iSCSI TransportID's name (SPC-4 7.6.4.6) and
// other formats in hex.
func printableTransportID(b []byte) string {
	if len(b) > 4 && b[0]&0x0f == 5 {
		return strings.TrimRight(string(b[4:]), "\x00")
	}
	return fmt.Sprintf("%x", b)
}

type showResult struct {
	Vendor       string            `json:"vendor"`
	Product      string            `json:"product"`
	Revision     string            `json:"revision"`
	Serial       string            `json:"serial,omitempty"`
	BlockSize    uint32            `json:"block_size"`
	Blocks       uint64            `json:"blocks"`
	Keys         keysResult        `json:"keys"`
	Reservation  reservationResult `json:"reservation"`
	Capabilities *capabilityResult `json:"capabilities,omitempty"`
	Notes        []string          `json:"notes,omitempty"`
}

type capabilityResult struct {
	Types            []string `json:"types"`
	PersistThroughPL bool     `json:"persist_through_power_loss_capable"`
	AllTargetPorts   bool     `json:"all_target_ports_capable"`
	SpecifyInitiator bool     `json:"specify_initiator_ports_capable"`
	CompatibleResHdl bool     `json:"compatible_reservation_handling"`
}

func (r showResult) human(dev string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s %s %s", dev, r.Vendor, r.Product, r.Revision)
	if r.Serial != "" {
		fmt.Fprintf(&b, ", serial %s", r.Serial)
	}
	fmt.Fprintf(&b, "\n  capacity     %d blocks of %d bytes (%s)\n", r.Blocks, r.BlockSize, humanize.IBytes(r.Blocks*uint64(r.BlockSize)))
	if len(r.Keys.Keys) == 0 {
		fmt.Fprintf(&b, "  keys         none (generation %d)\n", r.Keys.Generation)
	} else {
		fmt.Fprintf(&b, "  keys         %s (generation %d)\n", strings.Join(r.Keys.Keys, " "), r.Keys.Generation)
	}
	if r.Reservation.Reserved {
		fmt.Fprintf(&b, "  reservation  %s, %s (%s)\n", r.Reservation.Key, r.Reservation.TypeName, r.Reservation.Type)
	} else {
		fmt.Fprintf(&b, "  reservation  none\n")
	}
	if c := r.Capabilities; c != nil {
		fmt.Fprintf(&b, "  types        %s\n", strings.Join(c.Types, " "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note         %s\n", n)
	}
	return b.String()
}

func doShow(ctx context.Context, d scsi.Device, _ request) (any, error) {
	var r showResult
	inq, err := scsi.Inquiry(ctx, d)
	if err != nil {
		return nil, err
	}
	r.Vendor, r.Product, r.Revision = inq.Vendor, inq.Product, inq.Revision
	if sn, err := scsi.UnitSerialNumber(ctx, d); err == nil {
		r.Serial = sn
	} else {
		r.Notes = append(r.Notes, "no unit serial number: "+err.Error())
	}
	c, err := scsi.ReadCapacity16(ctx, d)
	if err != nil {
		return nil, err
	}
	r.BlockSize, r.Blocks = c.BlockSize, c.Blocks()
	k, err := doKeys(ctx, d, request{})
	if err != nil {
		return nil, err
	}
	r.Keys = k.(keysResult)
	rs, err := doReservation(ctx, d, request{})
	if err != nil {
		return nil, err
	}
	r.Reservation = rs.(reservationResult)
	if caps, err := scsi.ReportCapabilities(ctx, d); err == nil {
		cr := &capabilityResult{PersistThroughPL: caps.PTPLC, AllTargetPorts: caps.ATPC,
			SpecifyInitiator: caps.SIPC, CompatibleResHdl: caps.CRH, Types: []string{}}
		for _, t := range caps.Types() {
			cr.Types = append(cr.Types, t.ShortName())
		}
		r.Capabilities = cr
	} else {
		r.Notes = append(r.Notes, "REPORT CAPABILITIES failed: "+err.Error())
	}
	return r, nil
}

type checkResult struct {
	LBA   uint64 `json:"lba"`
	Read  string `json:"read"`
	Write string `json:"write"`
}

func (c checkResult) ok() bool { return c.Read == "ok" && c.Write == "ok" }

func (c checkResult) human(dev string) string {
	s := fmt.Sprintf("%s: read %s, write %s (block %d)\n", dev, c.Read, c.Write, c.LBA)
	if errors.Is(errFromCheck(c.Write), scsi.ErrReservationConflict) {
		s += "  writes are fenced: this path is not allowed to write under the current reservation\n"
	}
	return s
}

func errFromCheck(s string) error {
	if strings.Contains(s, scsi.StatusReservationConflict.String()) {
		return scsi.ErrReservationConflict
	}
	return nil
}

// doCheck reads the LUN's last block and writes the same bytes back with FUA:
// a write that changes nothing, to learn whether this path may write.
func doCheck(ctx context.Context, d scsi.Device, _ request) (any, error) {
	c, err := scsi.ReadCapacity16(ctx, d)
	if err != nil {
		return nil, err
	}
	r := checkResult{LBA: c.LastLBA, Read: "ok", Write: "ok"}
	buf := make([]byte, c.BlockSize)
	if err := scsi.Read16(ctx, d, c.LastLBA, 1, buf); err != nil {
		r.Read, r.Write = conditionString(err), "not tried"
		return r, nil
	}
	if err := scsi.Write16(ctx, d, c.LastLBA, 1, buf, true); err != nil {
		r.Write = conditionString(err)
	}
	return r, nil
}

// conditionString names a SCSI condition for output: the status, and the
// sense for CHECK CONDITION.
func conditionString(err error) string {
	var se *scsi.SenseError
	if errors.As(err, &se) {
		if se.Status == scsi.StatusCheckCondition {
			return fmt.Sprintf("%s %s %02x/%02x", se.Status, se.Key, se.ASC, se.ASCQ)
		}
		return se.Status.String()
	}
	return err.Error()
}

func withDevice(dev, action string, out any) map[string]any {
	m := map[string]any{"device": dev, "action": action, "ok": true}
	if c, ok := out.(checkResult); ok {
		m["ok"] = c.ok()
	}
	b, _ := json.Marshal(out)
	var fields map[string]any
	_ = json.Unmarshal(b, &fields)
	for k, v := range fields {
		m[k] = v
	}
	return m
}

type errorJSON struct {
	Device   string `json:"device"`
	Action   string `json:"action"`
	OK       bool   `json:"ok"`
	Error    string `json:"error"`
	Status   string `json:"status,omitempty"`
	SenseKey string `json:"sense_key,omitempty"`
	ASC      string `json:"asc,omitempty"`
	ASCQ     string `json:"ascq,omitempty"`
}

// report writes a failed action: in JSON on stdout (and errReported), or as
// an error naming the device for main to print.
func report(stdout io.Writer, asJSON bool, dev, action string, err error) error {
	if !asJSON {
		return fmt.Errorf("%s: %s: %w", dev, action, err)
	}
	e := errorJSON{Device: dev, Action: action, Error: err.Error()}
	var se *scsi.SenseError
	if errors.As(err, &se) {
		e.Status = se.Status.String()
		if se.Status == scsi.StatusCheckCondition {
			e.SenseKey = se.Key.String()
			e.ASC, e.ASCQ = fmt.Sprintf("0x%02x", se.ASC), fmt.Sprintf("0x%02x", se.ASCQ)
		}
	}
	if werr := writeJSON(stdout, e); werr != nil {
		return werr
	}
	return errReported
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// diskBenchOp is the latency distribution of one command repeated.
type diskBenchOp struct {
	Count  int     `json:"count"`
	P50us  float64 `json:"p50_us"`
	P99us  float64 `json:"p99_us"`
	MeanUs float64 `json:"mean_us"`
	IOPS   float64 `json:"iops"` // one command at a time: count / elapsed
}

type diskBenchResult struct {
	LBA          uint64      `json:"lba"`
	Write4KFUA   diskBenchOp `json:"write_4k_fua"`
	PRINReadKeys diskBenchOp `json:"prin_read_keys"`
}

func (r diskBenchResult) human(dev string) string {
	line := func(name string, o diskBenchOp) string {
		return fmt.Sprintf("  %-22s %6d ops  p50 %8.1f us  p99 %8.1f us  mean %8.1f us  %8.0f IOPS\n", name, o.Count, o.P50us, o.P99us, o.MeanUs, o.IOPS)
	}
	return fmt.Sprintf("%s: block %d\n", dev, r.LBA) + line("WRITE(16) 4 KiB FUA", r.Write4KFUA) + line("PRIN READ KEYS", r.PRINReadKeys)
}

// doBench times --count 4 KiB WRITE(16)s with FUA and --count PERSISTENT
// RESERVE IN (READ KEYS), one at a time. The writes put back the LUN's
// last 4 KiB as they were read, so the LUN's contents do not change (a
// path fenced by a reservation fails on the first write).
func doBench(ctx context.Context, d scsi.Device, r request) (any, error) {
	c, err := scsi.ReadCapacity16(ctx, d)
	if err != nil {
		return nil, err
	}
	if c.BlockSize == 0 || 4096%c.BlockSize != 0 || c.LastLBA+1 < uint64(4096/c.BlockSize) {
		return nil, fmt.Errorf("bench: block size %d and %d blocks do not fit a 4 KiB write", c.BlockSize, c.LastLBA+1)
	}
	blocks := uint32(4096 / c.BlockSize)
	lba := c.LastLBA + 1 - uint64(blocks)
	buf := make([]byte, 4096)
	if err := scsi.Read16(ctx, d, lba, blocks, buf); err != nil {
		return nil, err
	}
	keys := make([]byte, 8192)
	write := &scsi.Command{CDB: scsi.Write16CDB(lba, blocks, true), Dir: scsi.DirToDevice, Data: buf}
	prin := &scsi.Command{CDB: scsi.PRINCDB(scsi.PRINReadKeys, uint16(len(keys))), Dir: scsi.DirFromDevice, Data: keys}
	res := diskBenchResult{LBA: lba}
	for _, b := range []struct {
		op  string
		cmd *scsi.Command
		out *diskBenchOp
	}{{"WRITE(16)", write, &res.Write4KFUA}, {"PERSISTENT RESERVE IN", prin, &res.PRINReadKeys}} {
		// The first command may meet a UNIT ATTENTION; Run retries it.
		if _, err := scsi.Run(ctx, d, b.op, b.cmd); err != nil {
			return nil, err
		}
		lat := make([]time.Duration, r.count)
		start := time.Now()
		for i := range lat {
			t0 := time.Now()
			if _, err := scsi.Run(ctx, d, b.op, b.cmd); err != nil {
				return nil, err
			}
			lat[i] = time.Since(t0)
		}
		elapsed := time.Since(start)
		slices.Sort(lat)
		us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
		*b.out = diskBenchOp{Count: r.count, P50us: us(lat[len(lat)/2]), P99us: us(lat[len(lat)*99/100]),
			MeanUs: us(elapsed) / float64(r.count), IOPS: float64(r.count) / elapsed.Seconds()}
	}
	return res, nil
}
