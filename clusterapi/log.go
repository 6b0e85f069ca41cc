package clusterapi

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup"
	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/quorumdisk"
)

// LogPath is the recovery log of the quorum disk, as the node reads it
// from its own path to the LUN (GET: a Log).
const LogPath = "/v1/log"

// Log is the recovery log: the newest checkpoint and every record after
// it, each described (docs/quorum-disk.md, docs/gup.md).
type Log struct {
	CheckpointSeq uint64      `json:"checkpoint_seq"`
	CheckpointLSN uint64      `json:"checkpoint_lsn"`
	SnapshotBytes int         `json:"snapshot_bytes"`
	LastLSN       uint64      `json:"last_lsn"`
	End           string      `json:"end"`
	Records       []LogRecord `json:"records"`
}

// LogRecord is one record: its sequence numbers, its type (update,
// membership, owner, note) and what it changed: a database update's
// operations, an owner record's node and time, a note's text.
type LogRecord struct {
	LSN     uint64   `json:"lsn"`
	Epoch   uint64   `json:"epoch"`
	GUPSeq  uint64   `json:"gup_seq"`
	Type    string   `json:"type"`
	Node    int      `json:"node,omitempty"`
	Time    string   `json:"time,omitempty"`
	Changes []string `json:"changes,omitempty"`
	Text    string   `json:"text,omitempty"`
}

var recordTypes = map[quorumdisk.RecordType]string{
	quorumdisk.RecordUpdate: "update", quorumdisk.RecordMembership: "membership",
	quorumdisk.RecordOwner: "owner", quorumdisk.RecordNote: "note",
}

// LogOf describes a replay of the recovery log.
func LogOf(rp *quorumdisk.Replay) Log {
	l := Log{CheckpointSeq: rp.Checkpoint.Seq, CheckpointLSN: rp.Checkpoint.LSN, SnapshotBytes: len(rp.Snapshot),
		LastLSN: rp.LastLSN(), End: rp.End, Records: []LogRecord{}}
	for _, r := range rp.Records {
		l.Records = append(l.Records, describeRecord(r))
	}
	return l
}

func describeRecord(r quorumdisk.Record) LogRecord {
	out := LogRecord{LSN: r.LSN, Epoch: r.Epoch, GUPSeq: r.GUPSeq, Type: recordTypes[r.Type]}
	if out.Type == "" {
		out.Type = fmt.Sprintf("type %d", r.Type)
	}
	switch r.Type {
	case quorumdisk.RecordUpdate:
		us, err := gup.DecodeBatch(r.Payload)
		if err != nil {
			out.Text = "undecodable: " + err.Error()
			return out
		}
		for _, u := range us {
			out.Node = int(u.Origin)
			out.Changes = append(out.Changes, describeUpdate(u)...)
		}
	case quorumdisk.RecordOwner:
		var o struct {
			Node int       `json:"node"`
			Time time.Time `json:"time"`
		}
		if json.Unmarshal(r.Payload, &o) == nil && o.Node != 0 {
			out.Node = o.Node
			out.Time = o.Time.UTC().Format(time.RFC3339Nano)
			out.Text = fmt.Sprintf("node %d took the quorum disk over", o.Node)
			return out
		}
		out.Text = printable(r.Payload)
	default:
		out.Text = printable(r.Payload)
	}
	return out
}

// describeUpdate lists what one GUP update did to the database: one line
// per operation ("set group web: owner=\"node2\"").
func describeUpdate(u gup.Update) []string {
	if u.Refused != "" {
		return []string{fmt.Sprintf("#%d refused: %s", u.Seq, u.Refused)}
	}
	var tx db.Tx
	if err := tx.UnmarshalBinary(u.Data); err != nil {
		return []string{fmt.Sprintf("#%d: %d bytes that are not a database transaction", u.Seq, len(u.Data))}
	}
	var out []string
	for _, op := range tx.Ops {
		s := fmt.Sprintf("#%d %s %s %s", u.Seq, op.Type, op.Kind, op.Name)
		keys := make([]string, 0, len(op.Props))
		for k := range op.Props {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var kv []string
		for _, k := range keys {
			kv = append(kv, k+"="+op.Props[k].String())
		}
		if len(op.Remove) > 0 {
			kv = append(kv, "-"+strings.Join(op.Remove, " -"))
		}
		if len(kv) > 0 {
			s += ": " + strings.Join(kv, " ")
		}
		out = append(out, s)
	}
	return out
}

// printable is p as text, or in hex when it is not printable ASCII.
func printable(p []byte) string {
	for _, c := range p {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("hex:%x", p)
		}
	}
	return string(p)
}

// Log reads the recovery log through the daemon (GET /v1/log).
func (c *Client) Log(ctx context.Context) (Log, []byte, error) {
	var l Log
	raw, err := c.Read(ctx, LogPath)
	if err != nil {
		return l, raw, err
	}
	if err := json.Unmarshal(raw, &l); err != nil {
		return l, raw, fmt.Errorf("log from %s: %w", c.where, err)
	}
	return l, raw, nil
}
