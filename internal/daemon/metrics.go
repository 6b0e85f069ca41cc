package daemon

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/heartbeat"
	"github.com/wolfpack-ha/wolfpack/regroup"
	"github.com/wolfpack-ha/wolfpack/resources"
)

// GET /v1/metrics: the node's metrics in the Prometheus text exposition
// format (version 0.0.4), written here by hand: a few dozen series do not
// need a client library and its dependencies. docs/clusterd.md,
// "Metrics", lists them.

// histogram counts observations (seconds) into buckets; loop goroutine
// only.
type histogram struct {
	bounds []float64 // upper bounds, increasing
	counts []uint64  // counts[i]: observations in (bounds[i-1], bounds[i]]; the last: above every bound
	sum    float64
	n      uint64
}

// latencyBounds suit a commit (milliseconds) and a failover (seconds).
var latencyBounds = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(d time.Duration) {
	v := d.Seconds()
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i]++
	h.sum += v
	h.n++
}

// promText writes the exposition format.
type promText struct{ b strings.Builder }

// family starts a metric family: its HELP and TYPE lines.
func (p *promText) family(name, typ, help string) {
	fmt.Fprintf(&p.b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

// sample writes one sample; labels are name, value pairs.
func (p *promText) sample(name string, v float64, labels ...string) {
	p.b.WriteString(name)
	if len(labels) > 0 {
		p.b.WriteByte('{')
		for i := 0; i+1 < len(labels); i += 2 {
			if i > 0 {
				p.b.WriteByte(',')
			}
			p.b.WriteString(labels[i])
			p.b.WriteString(`="`)
			p.b.WriteString(labelEscaper.Replace(labels[i+1]))
			p.b.WriteByte('"')
		}
		p.b.WriteByte('}')
	}
	p.b.WriteByte(' ')
	p.b.WriteString(promFloat(v))
	p.b.WriteByte('\n')
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func promFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func (p *promText) gauge(name, help string, v float64) {
	p.family(name, "gauge", help)
	p.sample(name, v)
}

func (p *promText) counter(name, help string, v uint64) {
	p.family(name, "counter", help)
	p.sample(name, float64(v))
}

func (p *promText) histogram(name, help string, h *histogram) {
	p.family(name, "histogram", help)
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		p.sample(name+"_bucket", float64(cum), "le", promFloat(b))
	}
	p.sample(name+"_bucket", float64(h.n), "le", "+Inf")
	p.sample(name+"_sum", h.sum)
	p.sample(name+"_count", float64(h.n))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var nodeStates = []regroup.State{regroup.StateDown, regroup.StateJoining, regroup.StateForming, regroup.StateUp,
	regroup.StatePaused, regroup.StateHalted, regroup.StateLeft}

// metrics writes every metric; loop goroutine only.
func (d *Daemon) metrics() string {
	var p promText
	st := d.node.State()
	p.family("wolfpack_node_state", "gauge", "This node's membership state: 1 for the state it is in.")
	for _, s := range nodeStates {
		p.sample("wolfpack_node_state", b2f(s == st), "state", s.String())
	}
	ep, m := d.node.Membership()
	p.gauge("wolfpack_membership_members", "Members of the membership this node has installed.", float64(len(m.IDs())))
	p.gauge("wolfpack_membership_epoch", "The generation of the installed membership's epoch.", float64(ep.Gen()))
	p.gauge("wolfpack_quorum_owner", "1 while this node holds the quorum LUN's reservation.", b2f(d.node.Owner()))
	p.gauge("wolfpack_quorum_registered", "1 while this node's key is registered on the quorum LUN.", b2f(d.node.Registered()))
	p.counter("wolfpack_regroups_total", "Regroups this node took part in.", d.regroups)
	p.gauge("wolfpack_uptime_seconds", "Seconds since clusterd started.", d.cfg.Now().Sub(d.startedAt).Seconds())

	det := d.node.Detector()
	c := det.Counters()
	p.counter("wolfpack_heartbeats_accepted_total", "Heartbeats accepted, all networks.", c.Accepted)
	p.family("wolfpack_heartbeats_dropped_total", "counter", "Heartbeats dropped, by reason.")
	for r := heartbeat.DropMalformed; r <= heartbeat.DropWrongNetwork; r++ {
		p.sample("wolfpack_heartbeats_dropped_total", float64(c.Drops(r)), "reason", r.String())
	}
	up := make([]int, len(d.cfg.Networks))
	for _, id := range det.Alive().IDs() {
		if pv, ok := det.Peer(id); ok {
			for k := range up {
				if k < len(pv.NetworksUp) && pv.NetworksUp[k] {
					up[k]++
				}
			}
		}
	}
	p.family("wolfpack_network_peers_up", "gauge", "Peers whose heartbeats this node hears on the network.")
	for k, n := range d.cfg.Networks {
		p.sample("wolfpack_network_peers_up", float64(up[k]), "network", n.Name)
	}
	p.family("wolfpack_network_down_total", "counter", "Heartbeat losses: a peer's heartbeats stopped on the network (network down).")
	for k, n := range d.cfg.Networks {
		p.sample("wolfpack_network_down_total", float64(at(d.counters.networkDown, k)), "network", n.Name)
	}
	p.family("wolfpack_network_send_errors_total", "counter", "Datagrams this node failed to send on the network.")
	for k, n := range d.cfg.Networks {
		p.sample("wolfpack_network_send_errors_total", float64(at(d.counters.sendErrors, k)), "network", n.Name)
	}

	g := d.node.GUP()
	p.gauge("wolfpack_gup_applied_seq", "The last update applied to this node's copy of the database.", float64(g.Applied()))
	p.gauge("wolfpack_gup_locker", "1 while this node is GUP's locker.", b2f(g.IsLocker()))
	p.gauge("wolfpack_gup_pending", "Updates proposed here and not yet delivered.", float64(g.Pending()))
	p.histogram("wolfpack_gup_commit_seconds", "Admin API writes: proposed here to applied here.", d.gupLatency)

	p.family("wolfpack_group_state", "gauge", "Each group's state and owner in the cluster database: 1.")
	for _, o := range d.db.List(db.KindGroup) {
		p.sample("wolfpack_group_state", 1, "group", o.Name, "owner", propStr(o, "owner"), "state", propStr(o, "state"))
	}
	p.family("wolfpack_resource_state", "gauge", "Each resource's state in the cluster database: 1.")
	for _, o := range d.db.List(db.KindResource) {
		p.sample("wolfpack_resource_state", 1, "group", propStr(o, "group"), "resource", o.Name, "state", propStr(o, "state"))
	}
	p.histogram("wolfpack_failover_seconds", "Groups taken over from another node: this node's claim to the group online here.", d.failovers)
	return p.b.String()
}

func at(v []uint64, k int) uint64 {
	if k < len(v) {
		return v[k]
	}
	return 0
}

// propStr is a string property, "unknown" when it is not set.
func propStr(o db.Object, name string) string {
	if v, ok := o.Prop(name); ok && v.Type == db.TypeString && v.Str != "" {
		return v.Str
	}
	return "unknown"
}

// noteFailover times a group taken over from another node: from this
// node's claim to the group online here (loop goroutine).
func (d *Daemon) noteFailover(e resources.Event) {
	switch e.Kind {
	case resources.EventClaim:
		if e.Node != 0 && e.Node != d.cfg.Self {
			d.claims[e.Group] = d.cfg.Now()
		} else {
			delete(d.claims, e.Group)
		}
	case resources.EventGroupOnline:
		if at, ok := d.claims[e.Group]; ok {
			delete(d.claims, e.Group)
			d.failovers.observe(d.cfg.Now().Sub(at))
		}
	case resources.EventGroupFailed, resources.EventGroupOffline, resources.EventMove, resources.EventPush:
		delete(d.claims, e.Group)
	}
}

func (d *Daemon) serveMetrics(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var text string
	if err := d.call(ctx, func() { text = d.metrics() }); err != nil {
		httpError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write([]byte(text))
}
