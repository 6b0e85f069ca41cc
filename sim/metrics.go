package sim

import (
	"github.com/wolfpack-ha/wolfpack/heartbeat"
	"github.com/wolfpack-ha/wolfpack/regroup"
)

// Metrics collects what a run observed, in virtual microseconds.
type Metrics struct {
	crashed regroup.NodeSet
	// Detections: for each survivor's suspicion of a crashed node, the time
	// from the last heartbeat it received from that node to the suspicion.
	Detections []int64
	// FirstSuspicion is the time of the first suspicion of a crashed node.
	FirstSuspicion int64
	// FirstRegroup is the time of the first RegroupStarted since Mark.
	FirstRegroup int64
	// Joined is when each node last emitted Joined.
	Joined [65]int64
	// Counts of regroup events by kind.
	Counts map[regroup.EventKind]int
	// Forms counts each node's form arbitrations (a node that found no
	// cluster asks to win the quorum disk).
	Forms [65]int
}

// Mark resets the per-scenario timestamps.
func (m *Metrics) Mark() {
	m.FirstSuspicion, m.FirstRegroup = -1, -1
	m.Detections = m.Detections[:0]
}

func (m *Metrics) noteCrash(s *Sim, id regroup.NodeID) { m.crashed = m.crashed.Add(id) }

func (m *Metrics) noteSuspect(s *Sim, by regroup.NodeID, e heartbeat.Event) {
	if !m.crashed.Has(e.Peer) || s.nodes[e.Peer].running {
		return
	}
	d := s.nodes[by].core.Detector()
	m.Detections = append(m.Detections, (d.Now()-e.LastHeard)*s.cfg.Tick)
	if m.FirstSuspicion < 0 {
		m.FirstSuspicion = s.now
	}
}

func (m *Metrics) noteEvent(s *Sim, id regroup.NodeID, e regroup.Event) {
	if m.Counts == nil {
		m.Counts = map[regroup.EventKind]int{}
	}
	m.Counts[e.Kind]++
	switch e.Kind {
	case regroup.EventRegroupStarted:
		if m.FirstRegroup < 0 {
			m.FirstRegroup = s.now
		}
	case regroup.EventJoined:
		m.Joined[id] = s.now
	}
}
