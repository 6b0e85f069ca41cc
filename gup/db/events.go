package db

// The cluster-wide event log (docs/events.md): objects of KindEvent, which
// ride in the transactions of the decisions they record. The database
// numbers each event as it creates it (property seq: one more than the
// last event's, in the order of the transaction's operations) and, after
// every transaction that created one, deletes the oldest beyond
// its size (MaxEvents, or the cluster object's event_log_size), so every
// replica holds the same numbered log and the database, its checkpoints
// on the quorum disk and a joiner's transfer stay small.

// MaxEvents is how many events the database keeps unless the cluster
// object's event_log_size says otherwise.
const MaxEvents = 1000

// eventLogSize is how many events d keeps.
func (d *DB) eventLogSize() int {
	if c := d.objs[KindCluster][ClusterObject]; c != nil {
		if v, ok := c.Props["event_log_size"]; ok {
			return int(v.Int)
		}
	}
	return MaxEvents
}

// The event types.
const (
	EventNodeJoined    = "node-joined"    // a node joined the membership
	EventNodeLeft      = "node-left"      // a member left with ClusterExit
	EventNodeLost      = "node-lost"      // a member left out of a regroup: silent, or partitioned and fenced
	EventNodeEvicted   = "node-evicted"   // an administrator evicted a member
	EventRegroup       = "regroup"        // a membership installed: epoch, members before and after, arbitration
	EventGroupPlaced   = "group-placed"   // a group with no owner claimed
	EventGroupPulled   = "group-pulled"   // a group whose owner was lost claimed by a survivor
	EventGroupPushed   = "group-pushed"   // a group pushed away after a failure past its threshold
	EventGroupFailback = "group-failback" // a group moved back to a more preferred node
	EventGroupDrained  = "group-drained"  // a group moved away from a node being drained
	EventGroupMoved    = "group-moved"    // a group handed over to the node it moves to
	EventGroupOnline   = "group-online"   // a group online on its owner
	EventGroupOffline  = "group-offline"  // a group offline on its owner
	EventGroupFailed   = "group-failed"   // a group failed on its owner
	EventResFailed     = "resource-failed"
)

// EventTypes lists every event type.
var EventTypes = []string{
	EventNodeJoined, EventNodeLeft, EventNodeLost, EventNodeEvicted, EventRegroup,
	EventGroupPlaced, EventGroupPulled, EventGroupPushed, EventGroupFailback, EventGroupDrained,
	EventGroupMoved, EventGroupOnline, EventGroupOffline, EventGroupFailed, EventResFailed,
}

// numberEvent sets an event's seq as it is created.
func (s *stage) numberEvent(props map[string]Value) {
	s.eventSeq++
	props["seq"] = IntValue(s.eventSeq)
}

// pruneEvents deletes the oldest events beyond the log's size, as part
// of the transaction seq.
func (d *DB) pruneEvents(seq uint64) {
	evs := d.objs[KindEvent]
	for limit := d.eventLogSize(); len(evs) > limit; {
		var oldest *object
		for _, o := range evs {
			if oldest == nil || o.Props["seq"].Int < oldest.Props["seq"].Int {
				oldest = o
			}
		}
		delete(evs, oldest.Name)
		d.count--
		d.changes = append(d.changes, Change{Seq: seq, Kind: KindEvent, Name: oldest.Name, Op: Deleted, Version: oldest.Version})
	}
}

// lastEventSeq is the highest event number in d (0: none).
func lastEventSeq(d *DB) int64 {
	var last int64
	for _, o := range d.objs[KindEvent] {
		last = max(last, o.Props["seq"].Int)
	}
	return last
}
