package ocf

import (
	"reflect"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/gup/db"
)

// An agent's meta-data in the OCF 1.1 form, with the types and
// attributes agents use beyond the 1.0 DTD.
const sampleMeta = `<?xml version="1.0"?>
<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">
<resource-agent name="Sample" version="0.9">
<version>1.1</version>
<longdesc lang="de">Beispiel</longdesc>
<longdesc lang="en">
A sample agent.
</longdesc>
<shortdesc lang="en">Sample agent</shortdesc>
<parameters>
<parameter name="ip" unique="1" required="1">
<longdesc lang="en">The address.</longdesc>
<shortdesc lang="en">IP</shortdesc>
<content type="string" default="" />
</parameter>
<parameter name="state" unique-group="state"><content type="string" default="/run/x.state"/></parameter>
<parameter name="count"><content type="integer" default="5"/></parameter>
<parameter name="port"><content type="port" default="80"/></parameter>
<parameter name="flag"><content type="boolean" default="false"/></parameter>
<parameter name="mode"><content type="select" default="a"><option value="a"/><option value="b"/></content></parameter>
<parameter name="wait"><content type="timeout" default="20s"/></parameter>
</parameters>
<actions>
<action name="start" timeout="20s"/>
<action name="stop" timeout="1min"/>
<action name="monitor" timeout="20" interval="10s" depth="0"/>
<action name="monitor" timeout="30s" interval="1m" depth="10"/>
<action name="monitor" timeout="20s" interval="9s" role="Promoted"/>
<action name="meta-data" timeout="500ms"/>
<action name="start" timeout="99s"/>
</actions>
</resource-agent>
`

func TestParseMetadata(t *testing.T) {
	m, err := ParseMetadata([]byte(sampleMeta))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "Sample" || m.Version != "1.1" || m.Shortdesc != "Sample agent" || m.Longdesc != "A sample agent." {
		t.Fatalf("header %q %q %q %q", m.Name, m.Version, m.Shortdesc, m.Longdesc)
	}
	var params []string
	for _, p := range m.Parameters {
		params = append(params, p.OCFParameter.String())
	}
	want := []string{"ip string required unique", "state string unique", "count integer", "port integer", "flag boolean",
		"mode string", "wait string"}
	if !reflect.DeepEqual(params, want) {
		t.Fatalf("parameters %q, want %q", params, want)
	}
	if p := m.Parameters[5]; p.OCFType != "select" || !reflect.DeepEqual(p.Options, []string{"a", "b"}) || p.Default != "a" {
		t.Fatalf("select %+v", p)
	}
	if p := m.Parameters[0]; p.Longdesc != "The address." || p.Shortdesc != "IP" {
		t.Fatalf("descriptions %+v", p)
	}
	props, err := m.ResourceTypeProps("example:Sample")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := props["ocf_actions"].List, []string{"start 20000", "stop 60000", "monitor 20000 10000", "monitor 30000 60000 10", "meta-data 500"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ocf_actions %q, want %q (the role monitor and the second start left out)", got, want)
	}
	if props["agent"].Str != "ocf" || props["ocf_agent"].Str != "example:Sample" || props["ocf_version"].Str != "1.1" || props["description"].Str != "Sample agent" {
		t.Fatalf("props %v", props)
	}
	// The database takes them as they are.
	if err := apply(t, db.New(), db.Create(db.KindResourceType, "sample", props)); err != nil {
		t.Fatalf("the database refused the resourcetype: %v", err)
	}
}

// apply applies ops to d as its next transaction.
func apply(t testing.TB, d *db.DB, ops ...db.Op) error {
	t.Helper()
	tx := db.Tx{Ops: ops}
	b, err := tx.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return d.Apply(d.Seq()+1, b)
}

func TestParseMetadataRefuses(t *testing.T) {
	for want, doc := range map[string]string{
		"XML syntax error":          `<resource-agent name="x"><parameters>`,
		`parameter "a b"`:           `<resource-agent><parameters><parameter name="a b"><content type="string"/></parameter></parameters></resource-agent>`,
		`declared twice`:            `<resource-agent><parameters><parameter name="a"/><parameter name="a"/></parameters></resource-agent>`,
		`action "start": timeout`:   `<resource-agent><actions><action name="start" timeout="soon"/></actions></resource-agent>`,
		`unknown unit "fortnight"`:  `<resource-agent><actions><action name="start" timeout="2fortnight"/></actions></resource-agent>`,
		`depth "-1"`:                `<resource-agent><actions><action name="monitor" timeout="1" depth="-1"/></actions></resource-agent>`,
		`expected element type <re`: `<agent/>`,
	} {
		if _, err := ParseMetadata([]byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", doc, err, want)
		}
	}
}

func TestParseMs(t *testing.T) {
	for s, want := range map[string]int64{"": 0, "20": 20000, "20s": 20000, " 5 min ": 300000, "1m": 60000, "1h": 3600000,
		"250ms": 250, "2000us": 2, "3sec": 3000, "1hr": 3600000, "90msec": 90} {
		if got, err := parseMs(s); err != nil || got != want {
			t.Errorf("parseMs(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"s", "1.5s", "-1", "10 days", "25h"} {
		if _, err := parseMs(s); err == nil {
			t.Errorf("parseMs(%q) accepted", s)
		}
	}
}
