package clustercli

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/wolfpack-ha/wolfpack/internal/core"
	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/internal/quorumio"
	"github.com/wolfpack-ha/wolfpack/quorumdisk"
	"github.com/wolfpack-ha/wolfpack/regroup"
	"github.com/wolfpack-ha/wolfpack/scsi"
)

// `cluster disk format [--force]` is `cluster quorum format` with the
// default tag and id.
func init() {
	diskActions["format"] = diskAction{
		parse: func(f *diskFlags) (request, error) { return request{force: f.force}, nil },
		do: func(ctx context.Context, d scsi.Device, r request) (any, error) {
			return formatQuorum(ctx, d, quorumdisk.FormatOptions{Force: r.force})
		},
	}
}

const quorumUsage = `usage: cluster quorum <action> [flags] DEVICE

The quorum disk (docs/quorum-disk.md): its layout, recovery log and
reservation arbitration, on a shared LUN.
` + deviceHelp + `

actions:
  format   [--force] [--cluster-tag T] [--cluster-id HEX]: write an empty quorum
           disk; refuses a LUN holding a quorum disk, a partition table or a
           filesystem unless --force, and says which it found
  show     the superblock, layout and log state
  replay   the newest checkpoint and every record after it
  hold     --node N [--members N,M] [--append-every D] [--hold D]: arbitrate
           for the quorum disk, replay the log, append a record every D and
           re-check the reservation every --check-interval; one JSON line per
           event. Exits 0 after --hold, 3 when another node owns the disk,
           4 on lost quorum (the node must self-fence)
  bench    --node N [--appends N] [--payload B]: arbitrate, then time appends

flags (every action):
  --json               machine-readable output (hold always writes JSON lines)
  --timeout D          time limit for format, show, replay (default 30s)
  --check-interval D   QuorumCheckInterval (default 1s)
  --form-delay D       a forming node's wait before it preempts another holder,
                       as clusterd's (default 1.5s; more than a check interval,
                       so a live holder removes the challenger's key first)
` + initiatorHelp

// statusError is an error with an exit status for scripts: quorum hold's
// 3 lost the arbitration, 4 lost quorum (the JSON line written before it
// says which); the object commands' 3 refused, 4 no such object.
type statusError struct {
	code int
	err  error
}

func (e statusError) Error() string { return e.err.Error() }
func (e statusError) Unwrap() error { return e.err }
func (e statusError) ExitCode() int { return e.code }

type quorumFlags struct {
	json          bool
	timeout       time.Duration
	force         bool
	clusterTag    string
	clusterID     string
	node          uint
	members       string
	appendEvery   time.Duration
	hold          time.Duration
	checkInterval time.Duration
	formDelay     time.Duration
	appends       int
	payload       int
	initiatorName string
}

func runQuorum(ctx context.Context, args []string, stdout, stderr io.Writer, open opener) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, quorumUsage)
		return usagef("quorum: missing action")
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, quorumUsage)
		return nil
	}
	action := args[0]
	var f quorumFlags
	fs := flag.NewFlagSet("cluster quorum "+action, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(&f.json, "json", false, "")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "")
	fs.BoolVar(&f.force, "force", false, "")
	fs.StringVar(&f.clusterTag, "cluster-tag", "", "")
	fs.StringVar(&f.clusterID, "cluster-id", "", "")
	fs.UintVar(&f.node, "node", 0, "")
	fs.StringVar(&f.members, "members", "", "")
	fs.DurationVar(&f.appendEvery, "append-every", 0, "")
	fs.DurationVar(&f.hold, "hold", 0, "")
	fs.DurationVar(&f.checkInterval, "check-interval", time.Second, "")
	fs.DurationVar(&f.formDelay, "form-delay", 0, "")
	fs.IntVar(&f.appends, "appends", 1000, "")
	fs.IntVar(&f.payload, "payload", 128, "")
	fs.StringVar(&f.initiatorName, "initiator-name", "", "")
	pos, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, quorumUsage)
		return nil
	}
	if err != nil {
		return usagef("quorum %s: %v", action, err)
	}
	if len(pos) != 1 {
		return usagef("quorum %s: want exactly one DEVICE, got %d arguments", action, len(pos))
	}
	dev := pos[0]
	var do func(context.Context, scsi.Device) (any, error)
	switch action {
	case "format":
		opts := quorumdisk.FormatOptions{Force: f.force}
		if f.clusterTag != "" {
			t, err := parseKey("--cluster-tag", f.clusterTag)
			if err != nil || t == 0 || t > 0xffffffff {
				return usagef("quorum format: --cluster-tag %q: want a non-zero hex number of up to 8 digits", f.clusterTag)
			}
			opts.ClusterTag = uint32(t)
		}
		if f.clusterID != "" {
			b, err := hex.DecodeString(strings.ReplaceAll(f.clusterID, "-", ""))
			if err != nil || len(b) != 16 {
				return usagef("quorum format: --cluster-id %q: want 16 bytes in hex (a UUID)", f.clusterID)
			}
			copy(opts.ClusterID[:], b)
		}
		do = func(ctx context.Context, d scsi.Device) (any, error) { return formatQuorum(ctx, d, opts) }
	case "show":
		do = showQuorum
	case "replay":
		do = replayQuorum
	case "hold", "bench":
		if f.node < 1 || f.node > quorumdisk.MaxNodes {
			return usagef("quorum %s: --node must be 1..%d", action, quorumdisk.MaxNodes)
		}
		members, err := parseMembers(f.members)
		if err != nil {
			return usagef("quorum %s: %v", action, err)
		}
		d, err := openLUN(open, dev, f.initiatorName)
		if err != nil {
			return lunError(stdout, true, "quorum "+action, dev, err)
		}
		defer d.Close()
		if action == "bench" {
			return benchQuorum(ctx, d, dev, &f, members, stdout, stderr)
		}
		return holdQuorum(ctx, d, dev, &f, members, stdout, stderr)
	default:
		fmt.Fprint(stderr, quorumUsage)
		return usagef("quorum: unknown action %q", action)
	}
	d, err := openLUN(open, dev, f.initiatorName)
	if err != nil {
		return lunError(stdout, f.json, "quorum "+action, dev, err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	out, err := do(ctx, d)
	if err != nil {
		return report(stdout, f.json, dev, action, err)
	}
	if f.json {
		return writeJSON(stdout, withDevice(dev, action, out))
	}
	_, err = fmt.Fprint(stdout, out.(interface{ human(dev string) string }).human(dev))
	return err
}

func parseMembers(s string) ([]uint32, error) {
	var ids []uint32
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil || n < 1 || n > quorumdisk.MaxNodes {
			return nil, fmt.Errorf("--members: %q is not a node id 1..%d", f, quorumdisk.MaxNodes)
		}
		ids = append(ids, uint32(n))
	}
	return ids, nil
}

func openQuorum(ctx context.Context, d scsi.Device) (*quorumdisk.Disk, error) {
	bd, err := quorumdisk.NewSCSIBlocks(ctx, d)
	if err != nil {
		return nil, err
	}
	qd, err := quorumdisk.Open(ctx, bd)
	if err != nil {
		return nil, fmt.Errorf("open quorum disk: %w", err)
	}
	return qd, nil
}

type layoutJSON struct {
	BlockSize        uint32    `json:"block_size"`
	DeviceBlocks     uint64    `json:"device_blocks"`
	SlotsLBA         uint64    `json:"slots_lba"`
	Slots            uint32    `json:"slots"`
	CheckpointLBA    [2]uint64 `json:"checkpoint_lba"`
	CheckpointBlocks uint32    `json:"checkpoint_blocks"`
	LogLBA           uint64    `json:"log_lba"`
	LogBlocks        uint64    `json:"log_blocks"`
}

type superJSON struct {
	Version    uint16     `json:"version"`
	ClusterID  string     `json:"cluster_id"`
	ClusterTag string     `json:"cluster_tag"`
	FormatID   string     `json:"format_id"`
	Formatted  string     `json:"formatted"`
	Layout     layoutJSON `json:"layout"`
}

func superOf(sb quorumdisk.Superblock) superJSON {
	l := sb.Layout
	return superJSON{Version: sb.Version, ClusterID: hex.EncodeToString(sb.ClusterID[:]),
		ClusterTag: fmt.Sprintf("0x%08x", sb.ClusterTag), FormatID: fmt.Sprintf("0x%016x", sb.FormatID),
		Formatted: time.Unix(0, sb.FormatTime).UTC().Format(time.RFC3339),
		Layout: layoutJSON{BlockSize: l.BlockSize, DeviceBlocks: l.DeviceBlocks, SlotsLBA: l.SlotsLBA, Slots: l.SlotCount,
			CheckpointLBA: l.CheckpointLBA, CheckpointBlocks: l.CheckpointBlocks, LogLBA: l.LogLBA, LogBlocks: l.LogBlocks}}
}

type formatResult struct {
	Superblock superJSON `json:"superblock"`
	Overwrote  []string  `json:"overwrote,omitempty"`
}

func (r formatResult) human(dev string) string {
	l := r.Superblock.Layout
	s := fmt.Sprintf("%s: formatted quorum disk, cluster id %s, tag %s, %d-byte blocks, log of %d blocks (%s)\n",
		dev, r.Superblock.ClusterID, r.Superblock.ClusterTag, l.BlockSize, l.LogBlocks, humanize.IBytes(l.LogBlocks*uint64(l.BlockSize)))
	for _, o := range r.Overwrote {
		s += "  overwrote " + o + "\n"
	}
	return s
}

func formatQuorum(ctx context.Context, d scsi.Device, opts quorumdisk.FormatOptions) (any, error) {
	bd, err := quorumdisk.NewSCSIBlocks(ctx, d)
	if err != nil {
		return nil, err
	}
	sigs, err := quorumdisk.Detect(ctx, bd)
	if err != nil {
		return nil, err
	}
	var r formatResult
	for _, s := range sigs {
		r.Overwrote = append(r.Overwrote, s.String())
	}
	qd, err := quorumdisk.Format(ctx, bd, opts)
	if errors.Is(err, quorumdisk.ErrInUse) {
		return nil, fmt.Errorf("%w (`cluster quorum format --force` overwrites it)", err)
	}
	if err != nil {
		return nil, err
	}
	r.Superblock = superOf(qd.Superblock())
	return r, nil
}

type showQuorumResult struct {
	Superblock     superJSON `json:"superblock"`
	CheckpointSeq  uint64    `json:"checkpoint_seq"`
	CheckpointLSN  uint64    `json:"checkpoint_lsn"`
	CheckpointArea int       `json:"checkpoint_area"`
	SnapshotBytes  int       `json:"snapshot_bytes"`
	Records        int       `json:"records"`
	LastLSN        uint64    `json:"last_lsn"`
	LogEnd         string    `json:"log_end"`
	Heartbeats     []slotRow `json:"heartbeats"`
}

type slotRow struct {
	Node        uint32 `json:"node"`
	Counter     uint64 `json:"counter"`
	Incarnation uint64 `json:"incarnation"`
	Epoch       uint64 `json:"epoch"`
	Time        string `json:"time"`
}

func (r showQuorumResult) human(dev string) string {
	var b strings.Builder
	s := r.Superblock
	fmt.Fprintf(&b, "%s: Wolfpack quorum disk v%d, cluster %s (tag %s), formatted %s\n", dev, s.Version, s.ClusterID, s.ClusterTag, whenString(s.Formatted))
	l := s.Layout
	fmt.Fprintf(&b, "  layout      %d-byte blocks: slots at %d (%d), checkpoints at %d and %d (%d blocks each), log at %d (%d blocks, %s)\n",
		l.BlockSize, l.SlotsLBA, l.Slots, l.CheckpointLBA[0], l.CheckpointLBA[1], l.CheckpointBlocks, l.LogLBA, l.LogBlocks,
		humanize.IBytes(l.LogBlocks*uint64(l.BlockSize)))
	fmt.Fprintf(&b, "  checkpoint  #%d in area %c at LSN %d (%s)\n", r.CheckpointSeq, 'A'+r.CheckpointArea, r.CheckpointLSN, humanize.IBytes(uint64(r.SnapshotBytes)))
	fmt.Fprintf(&b, "  log         %d records after it, last LSN %d; ends: %s\n", r.Records, r.LastLSN, r.LogEnd)
	for _, h := range r.Heartbeats {
		fmt.Fprintf(&b, "  node %-2d     heartbeat %d, incarnation %d, epoch %d, %s\n", h.Node, h.Counter, h.Incarnation, h.Epoch, whenString(h.Time))
	}
	return b.String()
}

func showQuorum(ctx context.Context, d scsi.Device) (any, error) {
	qd, err := openQuorum(ctx, d)
	if err != nil {
		return nil, err
	}
	rp, err := qd.ReadLog(ctx)
	if err != nil {
		return nil, err
	}
	hs, err := qd.ReadHeartbeats(ctx)
	if err != nil {
		return nil, err
	}
	r := showQuorumResult{Superblock: superOf(qd.Superblock()), CheckpointSeq: rp.Checkpoint.Seq, CheckpointLSN: rp.Checkpoint.LSN,
		CheckpointArea: rp.Area, SnapshotBytes: len(rp.Snapshot), Records: len(rp.Records), LastLSN: rp.LastLSN(), LogEnd: rp.End,
		Heartbeats: []slotRow{}}
	for _, h := range hs {
		if h.Node != 0 {
			r.Heartbeats = append(r.Heartbeats, slotRow{Node: h.Node, Counter: h.Counter, Incarnation: h.Incarnation, Epoch: h.Epoch,
				Time: time.Unix(0, h.Time).UTC().Format(time.RFC3339Nano)})
		}
	}
	return r, nil
}

type recordJSON struct {
	LSN     uint64 `json:"lsn"`
	Epoch   uint64 `json:"epoch"`
	GUPSeq  uint64 `json:"gup_seq"`
	Type    uint16 `json:"type"`
	Payload string `json:"payload"`
}

type replayResult struct {
	CheckpointSeq uint64       `json:"checkpoint_seq"`
	CheckpointLSN uint64       `json:"checkpoint_lsn"`
	Snapshot      string       `json:"snapshot"`
	Records       []recordJSON `json:"records"`
	LastLSN       uint64       `json:"last_lsn"`
	End           string       `json:"end"`
}

func (r replayResult) human(dev string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: checkpoint #%d at LSN %d, %d records, last LSN %d\n", dev, r.CheckpointSeq, r.CheckpointLSN, len(r.Records), r.LastLSN)
	for _, rec := range r.Records {
		fmt.Fprintf(&b, "  LSN %-6d epoch %-4d gup %-6d type %d  %s\n", rec.LSN, rec.Epoch, rec.GUPSeq, rec.Type, rec.Payload)
	}
	fmt.Fprintf(&b, "  end: %s\n", r.End)
	return b.String()
}

// whenString is an RFC 3339 time for people: the time and how long ago
// it was ("2026-11-29 10:00:00 UTC (3 minutes ago)").
func whenString(rfc3339 string) string {
	t, err := time.Parse(time.RFC3339Nano, rfc3339)
	if err != nil {
		return rfc3339
	}
	return t.UTC().Format(time.DateTime) + " UTC (" + humanize.Time(t) + ")"
}

func printable(p []byte) string {
	for _, c := range p {
		if c < 0x20 || c > 0x7e {
			return "hex:" + hex.EncodeToString(p)
		}
	}
	return string(p)
}

func replayQuorum(ctx context.Context, d scsi.Device) (any, error) {
	qd, err := openQuorum(ctx, d)
	if err != nil {
		return nil, err
	}
	rp, err := qd.ReadLog(ctx)
	if err != nil {
		return nil, err
	}
	r := replayResult{CheckpointSeq: rp.Checkpoint.Seq, CheckpointLSN: rp.Checkpoint.LSN, Snapshot: printable(rp.Snapshot),
		Records: []recordJSON{}, LastLSN: rp.LastLSN(), End: rp.End}
	for _, rec := range rp.Records {
		r.Records = append(r.Records, recordJSON{LSN: rec.LSN, Epoch: rec.Epoch, GUPSeq: rec.GUPSeq, Type: uint16(rec.Type), Payload: printable(rec.Payload)})
	}
	return r, nil
}

// lineWriter writes one JSON object per line, stamped with the time since
// the command started.
type lineWriter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (lw *lineWriter) since() int64 { return time.Since(lw.start).Milliseconds() }

func (lw *lineWriter) event(name string, kv ...any) {
	m := map[string]any{"event": name, "t_ms": lw.since()}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	b, _ := json.Marshal(m)
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.w.Write(append(b, '\n'))
}

// errLost and errLostQuorum end a holder: another node owns the disk, or
// this node owned it and lost it (it must self-fence).
var (
	errLost       = errors.New("lost the arbitration")
	errLostQuorum = errors.New("lost quorum")
)

// holder runs the node core alone on d, as clusterd runs it: a cluster of
// the members given, formed at once by this node, which must win the
// quorum disk, then checks it every --check-interval and removes every
// other key. Its disk commands are executed inline.
type holder struct {
	node    *core.Node
	exec    *quorumio.Executor
	lw      *lineWriter
	recheck chan struct{}
}

const holdTick = 10 * time.Millisecond

// arbitrate starts a holder on d and waits until it wins; the holder keeps
// holding the disk until ctx ends. errc gets its result.
func arbitrate(ctx context.Context, d scsi.Device, tag uint32, f *quorumFlags, members []uint32, lw *lineWriter, stderr io.Writer) (*holder, <-chan error, error) {
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("node", f.node)
	exec, err := quorumio.Open(ctx, d, tag, uint32(f.node))
	if err != nil {
		lw.event("error", "error", err.Error())
		return nil, nil, errReported
	}
	inc := uint64(lw.start.UnixNano())
	exec.Incarnation, exec.Logger = inc, log
	ticks := func(d time.Duration) int { return max(1, int((d+holdTick-1)/holdTick)) }
	all := nodes.SetOf(nodes.ID(f.node))
	for _, m := range members {
		all = all.Add(nodes.ID(m))
	}
	cfg := core.Config{
		ClusterTag: tag, Self: nodes.ID(f.node), Incarnation: inc, Nodes: all, Networks: 1,
		Secret:     []byte("cluster quorum hold"),
		CheckTicks: ticks(f.checkInterval), Logger: log,
		// The holder writes the recovery log itself.
		NoGUP: true,
	}
	if f.formDelay > 0 {
		cfg.FormTicks = ticks(f.formDelay)
	}
	n, err := core.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	h := &holder{node: n, exec: exec, lw: lw, recheck: make(chan struct{}, 1)}
	lw.event("start", "node", f.node, "key", keyString(n.Key()), "check_interval_ms", f.checkInterval.Milliseconds(),
		"form_delay_ms", f.formDelay.Milliseconds())
	won := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- h.run(ctx, won) }()
	select {
	case <-won:
		return h, errc, nil
	case err := <-errc:
		return nil, nil, lostError(err, lw)
	}
}

// Recheck makes the owner check its reservation now (a write of its failed
// with RESERVATION CONFLICT). Safe from any goroutine.
func (h *holder) Recheck() {
	select {
	case h.recheck <- struct{}{}:
	default:
	}
}

func (h *holder) run(ctx context.Context, won chan struct{}) error {
	t := time.NewTicker(holdTick)
	defer t.Stop()
	start := time.Now()
	h.node.Form()
	if err := h.drain(ctx, won); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-h.recheck:
			h.node.CheckQuorum()
		case <-t.C:
			// Ticks follow the clock, also across commands that took
			// longer than a tick.
			for due := int64(time.Since(start) / holdTick); h.node.Now() < due; {
				h.node.Tick()
				if err := h.drain(ctx, won); err != nil {
					return err
				}
			}
		}
		if err := h.drain(ctx, won); err != nil {
			return err
		}
	}
}

// drain executes the core's disk commands in order and reports its events
// until it is quiet.
func (h *holder) drain(ctx context.Context, won chan struct{}) error {
	for h.node.HasReady() {
		rd := h.node.Ready()
		for _, e := range rd.Events {
			switch e.Kind {
			case core.EventArbitrationWaits:
				h.lw.event("challenging", "wait_ms", e.Ticks*holdTick.Milliseconds(), "holder", e.Owner)
			case core.EventKeyRemoved:
				h.lw.event("key removed", "key", keyString(e.Key))
			}
		}
		for _, e := range rd.Membership {
			switch e.Kind {
			case regroup.EventFormed:
				h.lw.event("won", "arbitration_ms", h.lw.since())
				close(won)
			case regroup.EventJoinFailed:
				return fmt.Errorf("%w: %s", errLost, e.Reason)
			case regroup.EventHalt:
				return fmt.Errorf("%w: %s", errLostQuorum, strings.TrimPrefix(e.Reason, "lost quorum: "))
			}
		}
		for _, c := range rd.Disk {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			h.node.StepDisk(h.exec.Exec(ctx, c))
		}
	}
	return nil
}

// lostError reports how the holder ended: exit 3 for a lost arbitration, 4
// for lost quorum.
func lostError(err error, lw *lineWriter) error {
	switch {
	case errors.Is(err, errLostQuorum):
		lw.event("lost quorum", "reason", err.Error())
		return statusError{4, errReported}
	case errors.Is(err, errLost):
		lw.event("lost", "reason", err.Error())
		return statusError{3, errReported}
	case errors.Is(err, errReported):
		return err
	case err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return nil
	}
	lw.event("error", "error", err.Error())
	return statusError{1, errReported}
}

func holdQuorum(ctx context.Context, d scsi.Device, dev string, f *quorumFlags, members []uint32, stdout, stderr io.Writer) error {
	lw := &lineWriter{w: stdout, start: time.Now()}
	qd, err := openQuorum(ctx, d)
	if err != nil {
		lw.event("error", "error", err.Error())
		return errReported
	}
	tag := qd.Superblock().ClusterTag
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	drv, errc, err := arbitrate(ctx, d, tag, f, members, lw, stderr)
	if drv == nil {
		return err
	}
	// The holder takes the recovery log over as GUP's locker would
	// (docs/gup.md): replay, report, then append.
	log, rp, err := qd.OpenLog(ctx)
	if err != nil {
		lw.event("error", "error", "replay: "+err.Error())
		return errReported
	}
	lsns := make([]uint64, 0, len(rp.Records))
	for _, r := range rp.Records {
		lsns = append(lsns, r.LSN)
	}
	lw.event("replay", "checkpoint_lsn", rp.Checkpoint.LSN, "records", len(rp.Records), "last_lsn", rp.LastLSN(), "lsns", lsns, "end", rp.End)

	var holdC <-chan time.Time
	if f.hold > 0 {
		holdC = time.After(f.hold)
	}
	var appendC <-chan time.Time
	if f.appendEvery > 0 {
		t := time.NewTicker(f.appendEvery)
		defer t.Stop()
		appendC = t.C
	}
	appendOne := func() error {
		start := time.Now()
		lsn, err := log.Append(ctx, quorumdisk.Record{Type: quorumdisk.RecordNote, Epoch: 1,
			Payload: fmt.Appendf(nil, "node %d at %d ms", f.node, lw.since())})
		if errors.Is(err, quorumdisk.ErrLogFull) {
			if err = log.Checkpoint(ctx, fmt.Appendf(nil, "through LSN %d", log.LastLSN())); err == nil {
				lw.event("checkpoint", "lsn", log.LastLSN())
				return nil
			}
		}
		if err != nil {
			kv := []any{"error", err.Error()}
			var se *scsi.SenseError
			if errors.As(err, &se) {
				kv = append(kv, "status", se.Status.String())
			}
			lw.event("append failed", kv...)
			return err
		}
		lw.event("append", "lsn", lsn, "latency_us", time.Since(start).Microseconds())
		return nil
	}
	if _, err := log.Append(ctx, quorumdisk.Record{Type: quorumdisk.RecordOwner, Epoch: 1, Payload: fmt.Appendf(nil, "node %d owns the quorum disk", f.node)}); err != nil {
		lw.event("append failed", "error", err.Error())
		drv.Recheck()
	} else {
		lw.event("append", "lsn", log.LastLSN())
	}
	// The core writes this node's disk heartbeat slot.
	for {
		select {
		case err := <-errc:
			rerr := lostError(err, lw)
			if errors.Is(err, errLostQuorum) && log.Err() == nil {
				// Show that the disk fences this node: one more log write,
				// which must fail (the daemon would not try it).
				_, werr := log.Append(context.WithoutCancel(ctx), quorumdisk.Record{Type: quorumdisk.RecordNote, Payload: []byte("after lost quorum")})
				kv := []any{"ok", werr == nil}
				var se *scsi.SenseError
				if errors.As(werr, &se) {
					kv = append(kv, "status", se.Status.String())
				}
				if werr != nil {
					kv = append(kv, "error", werr.Error())
				}
				lw.event("fenced write", kv...)
			}
			return rerr
		case <-holdC:
			cancel()
			<-errc
			lw.event("done", "last_lsn", log.LastLSN())
			return nil
		case <-appendC:
			if log.Err() != nil {
				continue // stopped by a failed write: waiting for the check
			}
			if err := appendOne(); err != nil {
				// A fenced write: check the reservation at once.
				drv.Recheck()
			}
		case <-ctx.Done():
			return nil
		}
	}
}

type benchResult struct {
	Node          uint    `json:"node"`
	Appends       int     `json:"appends"`
	PayloadBytes  int     `json:"payload_bytes"`
	ArbitrationMS int64   `json:"arbitration_ms"`
	P50us         float64 `json:"p50_us"`
	P99us         float64 `json:"p99_us"`
	MaxUS         float64 `json:"max_us"`
	PerSecond     float64 `json:"appends_per_second"`
	Checkpoints   int     `json:"checkpoints"`
}

func benchQuorum(ctx context.Context, d scsi.Device, dev string, f *quorumFlags, members []uint32, stdout, stderr io.Writer) error {
	lw := &lineWriter{w: io.Discard, start: time.Now()}
	qd, err := openQuorum(ctx, d)
	if err != nil {
		return report(stdout, true, dev, "bench", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	drv, errc, err := arbitrate(ctx, d, qd.Superblock().ClusterTag, f, members, lw, stderr)
	if drv == nil {
		if err == nil {
			err = errors.New("arbitration ended")
		}
		return report(stdout, true, dev, "bench", err)
	}
	arb := lw.since()
	log, _, err := qd.OpenLog(ctx)
	if err != nil {
		return report(stdout, true, dev, "bench", err)
	}
	r, err := benchAppends(ctx, log, f.appends, f.payload)
	cancel()
	<-errc
	if err != nil {
		return report(stdout, true, dev, "bench", err)
	}
	r.Node, r.ArbitrationMS = f.node, arb
	return writeJSON(stdout, r)
}

// benchAppends appends n records of payload bytes back to back and measures
// each; checkpoints taken when the ring fills are not counted.
func benchAppends(ctx context.Context, log *quorumdisk.Log, n, payload int) (benchResult, error) {
	p := make([]byte, payload)
	lat := make([]time.Duration, 0, n)
	r := benchResult{Appends: n, PayloadBytes: payload}
	var total time.Duration
	for len(lat) < n {
		start := time.Now()
		_, err := log.Append(ctx, quorumdisk.Record{Type: quorumdisk.RecordNote, Payload: p})
		if errors.Is(err, quorumdisk.ErrLogFull) {
			if err := log.Checkpoint(ctx, []byte("bench")); err != nil {
				return r, err
			}
			r.Checkpoints++
			continue
		}
		if err != nil {
			return r, err
		}
		d := time.Since(start)
		total += d
		lat = append(lat, d)
	}
	slices.Sort(lat)
	if n > 0 {
		us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
		r.P50us = us(lat[n/2])
		r.P99us = us(lat[min(n-1, n*99/100)])
		r.MaxUS = us(lat[n-1])
		r.PerSecond = float64(n) / total.Seconds()
	}
	return r, nil
}
