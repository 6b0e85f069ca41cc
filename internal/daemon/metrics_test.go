package daemon

import (
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/resources"
)

var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelName  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// parseProm checks text against the Prometheus text exposition format
// (version 0.0.4) and returns its samples by series, written
// name{label="value",...} with the labels sorted. It refuses: a line that
// is neither a comment nor a sample, a bad metric or label name, a label
// value with an escape other than \\, \" and \n, a value that is not a
// float, a family without one TYPE before its samples, a family whose
// lines are not together, a series twice, a counter not named _total, and
// a histogram whose buckets are not cumulative up to +Inf = _count.
func parseProm(text string) (map[string]float64, error) {
	types := map[string]string{}
	done := map[string]bool{} // families whose lines ended
	series := map[string]float64{}
	var cur string
	startFamily := func(name string) error {
		if name != cur {
			if done[name] {
				return fmt.Errorf("family %s: its lines are not together", name)
			}
			if cur != "" {
				done[cur] = true
			}
			cur = name
		}
		return nil
	}
	if !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("the text does not end with a newline")
	}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		errf := func(f string, a ...any) error { return fmt.Errorf("line %d %q: %s", i+1, line, fmt.Sprintf(f, a...)) }
		if strings.HasPrefix(line, "#") {
			f := strings.SplitN(line, " ", 4)
			if len(f) < 3 || (f[1] != "HELP" && f[1] != "TYPE") {
				continue // a comment
			}
			if !metricName.MatchString(f[2]) {
				return nil, errf("bad metric name")
			}
			if err := startFamily(f[2]); err != nil {
				return nil, errf("%v", err)
			}
			if f[1] == "TYPE" {
				if len(f) != 4 || !slices.Contains([]string{"counter", "gauge", "histogram", "summary", "untyped"}, f[3]) {
					return nil, errf("bad type")
				}
				if _, ok := types[f[2]]; ok {
					return nil, errf("a second TYPE")
				}
				types[f[2]] = f[3]
			}
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		labels := map[string]string{}
		if rest == "" {
			name, rest, _ = strings.Cut(line, " ")
			rest = " " + rest
		} else {
			// labels: name="value" pairs separated by commas, then }.
			for {
				ln, r, ok := strings.Cut(rest, `="`)
				if !ok || !labelName.MatchString(ln) {
					return nil, errf("bad label")
				}
				var v strings.Builder
				j := 0
				for ; j < len(r) && r[j] != '"'; j++ {
					if r[j] == '\\' {
						j++
						switch {
						case j < len(r) && r[j] == 'n':
							v.WriteByte('\n')
						case j < len(r) && (r[j] == '\\' || r[j] == '"'):
							v.WriteByte(r[j])
						default:
							return nil, errf("bad escape in a label value")
						}
						continue
					}
					v.WriteByte(r[j])
				}
				if j == len(r) {
					return nil, errf("unterminated label value")
				}
				if _, dup := labels[ln]; dup {
					return nil, errf("label %s twice", ln)
				}
				labels[ln] = v.String()
				rest = r[j+1:]
				if strings.HasPrefix(rest, ",") {
					rest = rest[1:]
					continue
				}
				if !strings.HasPrefix(rest, "}") {
					return nil, errf("labels not closed")
				}
				rest = rest[1:]
				break
			}
		}
		if !metricName.MatchString(name) {
			return nil, errf("bad metric name")
		}
		fields := strings.Fields(rest)
		if !strings.HasPrefix(rest, " ") || len(fields) < 1 || len(fields) > 2 {
			return nil, errf("want a value (and a timestamp)")
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, errf("value: %v", err)
		}
		family := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suf); ok && types[b] == "histogram" {
				family = b
			}
		}
		typ, ok := types[family]
		if !ok || family != cur {
			return nil, errf("a sample without its family's TYPE before it")
		}
		if typ == "counter" && !strings.HasSuffix(name, "_total") {
			return nil, errf("a counter not named _total")
		}
		if typ == "histogram" && name == family {
			return nil, errf("a histogram's sample without _bucket, _sum or _count")
		}
		if strings.HasSuffix(name, "_bucket") && labels["le"] == "" {
			return nil, errf("a bucket without le")
		}
		keys := make([]string, 0, len(labels))
		for k := range labels {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var id strings.Builder
		id.WriteString(name)
		if len(keys) > 0 {
			for j, k := range keys {
				if j == 0 {
					id.WriteByte('{')
				} else {
					id.WriteByte(',')
				}
				fmt.Fprintf(&id, "%s=%q", k, labels[k])
			}
			id.WriteByte('}')
		}
		if _, dup := series[id.String()]; dup {
			return nil, errf("series twice")
		}
		series[id.String()] = v
	}
	// Histograms: cumulative buckets, +Inf equal to _count.
	for name, typ := range types {
		if typ != "histogram" {
			continue
		}
		var bounds []float64
		for s := range series {
			if rest, ok := strings.CutPrefix(s, name+`_bucket{le="`); ok {
				le, _ := strings.CutSuffix(rest, `"}`)
				b, err := strconv.ParseFloat(le, 64)
				if err != nil {
					return nil, fmt.Errorf("histogram %s: bucket %s: %v", name, s, err)
				}
				bounds = append(bounds, b)
			}
		}
		slices.Sort(bounds)
		if len(bounds) == 0 || !math.IsInf(bounds[len(bounds)-1], 1) {
			return nil, fmt.Errorf("histogram %s: no +Inf bucket", name)
		}
		prev := 0.0
		for _, b := range bounds {
			v := series[fmt.Sprintf("%s_bucket{le=%q}", name, promFloat(b))]
			if v < prev {
				return nil, fmt.Errorf("histogram %s: bucket le=%v holds %v, less than the one below", name, b, v)
			}
			prev = v
		}
		if c, ok := series[name+"_count"]; !ok || c != prev {
			return nil, fmt.Errorf("histogram %s: _count %v, +Inf bucket %v", name, c, prev)
		}
		if _, ok := series[name+"_sum"]; !ok {
			return nil, fmt.Errorf("histogram %s: no _sum", name)
		}
	}
	return series, nil
}

func TestParsePromRefuses(t *testing.T) {
	good := "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"\\n\"} 3\n"
	if s, err := parseProm(good); err != nil || s[`a_total{x="1\"\n"}`] != 3 {
		t.Fatalf("parseProm(good) = %v, %v", s, err)
	}
	for _, bad := range []string{
		"a_total 3\n", // no TYPE
		"# TYPE a_total counter\na_total{x=\"1\"} three\n",
		"# TYPE a_total counter\na_total{x=\"\\t\"} 3\n",
		"# TYPE a_total counter\na_total{x=\"1\"} 3\na_total{x=\"1\"} 4\n",
		"# TYPE a counter\na 3\n",
		"# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n",
		"# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
		"# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",
		"# TYPE a gauge\na 1",
	} {
		if _, err := parseProm(bad); err == nil {
			t.Errorf("parseProm accepted %q", bad)
		}
	}
}

// A group taken over from another node is timed from this node's claim to
// the group online here; a first placement, and a claim that ends in a
// move away, are not failovers.
func TestFailoverDurations(t *testing.T) {
	now := time.Unix(1000, 0)
	d := &Daemon{cfg: Config{Self: 2, Tick: DefaultTick, Now: func() time.Time { return now }},
		log: slog.New(slog.DiscardHandler), failovers: newHistogram(latencyBounds), claims: map[string]time.Time{}}
	ev := func(k resources.EventKind, group string, node int) {
		d.failoverEvent(resources.Event{Kind: k, Group: group, Node: nodes.ID(node)})
	}
	ev(resources.EventClaim, "web", 1)
	now = now.Add(700 * time.Millisecond)
	ev(resources.EventGroupOnline, "web", 0)
	ev(resources.EventClaim, "db", 0) // a first placement
	ev(resources.EventGroupOnline, "db", 0)
	ev(resources.EventClaim, "mail", 1)
	ev(resources.EventMove, "mail", 3)
	ev(resources.EventGroupOnline, "mail", 0)
	var p promText
	p.histogram("wolfpack_failover_seconds", "test", d.failovers)
	s, err := parseProm(p.b.String())
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]float64{
		`wolfpack_failover_seconds_count`:             1,
		`wolfpack_failover_seconds_sum`:               0.7,
		`wolfpack_failover_seconds_bucket{le="0.5"}`:  0,
		`wolfpack_failover_seconds_bucket{le="1"}`:    1,
		`wolfpack_failover_seconds_bucket{le="+Inf"}`: 1,
	} {
		if got, ok := s[k]; !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, want)
		}
	}
}
