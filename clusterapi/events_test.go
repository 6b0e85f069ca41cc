package clusterapi

import (
	"net/url"
	"strings"
	"testing"
)

// TestEventFilterQuery: a filter survives its query; a bad query names
// its problem.
func TestEventFilterQuery(t *testing.T) {
	f := EventFilter{Since: 7, Node: "node1", Group: "web", Resource: "ip", Type: "group-online", Limit: 3}
	got, follow, err := ParseEventFilter(f.Query())
	if err != nil || follow || got != f {
		t.Fatalf("round trip: %+v %v %v, want %+v", got, follow, err, f)
	}
	if _, follow, err := ParseEventFilter(url.Values{"follow": {"1"}}); err != nil || !follow {
		t.Errorf("follow=1: %v %v", follow, err)
	}
	for q, want := range map[string]string{
		"since=x":       `since="x"`,
		"since=-1":      `since="-1"`,
		"limit=many":    `limit="many"`,
		"type=exploded": `type="exploded": not an event type`,
		"follow=maybe":  `follow="maybe"`,
		"colour=blue":   `unknown query parameter "colour"`,
		"node=a&node=b": "node given 2 times",
	} {
		v, _ := url.ParseQuery(q)
		if _, _, err := ParseEventFilter(v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", q, err, want)
		}
	}
}
