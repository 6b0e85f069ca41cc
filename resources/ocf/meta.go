package ocf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/gup/db"
)

// Metadata is what an agent's meta-data action declares.
type Metadata struct {
	Name string // the agent's name (resource-agent name=)
	// Version is the OCF API version the agent implements (<version>;
	// "1.0" when absent).
	Version             string
	Shortdesc, Longdesc string
	Parameters          []Parameter
	// Actions are the advertised actions, monitors with a role
	// (promotable resources') left out.
	Actions []db.OCFAction
}

// Parameter is one instance parameter.
type Parameter struct {
	db.OCFParameter
	// OCFType is the content type as the agent wrote it (string,
	// integer, boolean, select, ...; Type is what the database holds).
	OCFType             string
	Default             string
	Options             []string // select's values
	Shortdesc, Longdesc string
}

// The meta-data document (OCF ra-api-1.dtd and its 1.1 revision).
type xmlAgent struct {
	XMLName    xml.Name  `xml:"resource-agent"`
	Name       string    `xml:"name,attr"`
	Version    string    `xml:"version"`
	Longdesc   []xmlDesc `xml:"longdesc"`
	Shortdesc  []xmlDesc `xml:"shortdesc"`
	Parameters []struct {
		Name        string    `xml:"name,attr"`
		Required    string    `xml:"required,attr"`
		Unique      string    `xml:"unique,attr"`
		UniqueGroup string    `xml:"unique-group,attr"`
		Longdesc    []xmlDesc `xml:"longdesc"`
		Shortdesc   []xmlDesc `xml:"shortdesc"`
		Content     struct {
			Type    string `xml:"type,attr"`
			Default string `xml:"default,attr"`
			Options []struct {
				Value string `xml:"value,attr"`
			} `xml:"option"`
		} `xml:"content"`
	} `xml:"parameters>parameter"`
	Actions []struct {
		Name     string `xml:"name,attr"`
		Timeout  string `xml:"timeout,attr"`
		Interval string `xml:"interval,attr"`
		Depth    string `xml:"depth,attr"`
		Role     string `xml:"role,attr"`
	} `xml:"actions>action"`
}

type xmlDesc struct {
	Lang string `xml:"lang,attr"`
	Text string `xml:",chardata"`
}

// english picks the English (or unlabelled, else the first) description.
func english(ds []xmlDesc) string {
	for _, d := range ds {
		if d.Lang == "" || d.Lang == "en" {
			return strings.TrimSpace(d.Text)
		}
	}
	if len(ds) > 0 {
		return strings.TrimSpace(ds[0].Text)
	}
	return ""
}

// dbType maps an OCF content type to a database type. OCF 1.1 defines
// boolean, string, integer and select; agents also use Pacemaker's types.
// Only values that are always decimal integers become integers (integer,
// nonnegative_integer, port); the others (select, time, timeout,
// duration, percentage, score, version, and anything unknown) stay
// strings that the agent itself checks in validate-all.
func dbType(t string) db.Type {
	switch strings.ToLower(t) {
	case "boolean":
		return db.TypeBool
	case "integer", "nonnegative_integer", "port":
		return db.TypeInt
	}
	return db.TypeString
}

// isTrue reads an OCF boolean attribute (required="1").
func isTrue(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on", "y":
		return true
	}
	return false
}

// ParseMetadata decodes an agent's meta-data.
func ParseMetadata(b []byte) (*Metadata, error) {
	var x xmlAgent
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	if err := d.Decode(&x); err != nil {
		return nil, fmt.Errorf("ocf meta-data: %w", err)
	}
	m := &Metadata{Name: x.Name, Version: strings.TrimSpace(x.Version), Shortdesc: english(x.Shortdesc), Longdesc: english(x.Longdesc)}
	if m.Version == "" {
		m.Version = "1.0"
	}
	seen := map[string]bool{}
	for _, xp := range x.Parameters {
		p := Parameter{
			OCFParameter: db.OCFParameter{Name: xp.Name, Type: dbType(xp.Content.Type), Required: isTrue(xp.Required),
				Unique: isTrue(xp.Unique) || strings.TrimSpace(xp.UniqueGroup) != ""},
			OCFType: xp.Content.Type, Default: xp.Content.Default,
			Shortdesc: english(xp.Shortdesc), Longdesc: english(xp.Longdesc),
		}
		for _, o := range xp.Content.Options {
			p.Options = append(p.Options, o.Value)
		}
		// The database holds it as property param.NAME.
		if err := db.ValidPropName(db.OCFParamPrefix + p.Name); err != nil {
			return nil, fmt.Errorf("ocf meta-data: parameter %q: %v", p.Name, err)
		}
		if seen[p.Name] {
			return nil, fmt.Errorf("ocf meta-data: parameter %q declared twice", p.Name)
		}
		seen[p.Name] = true
		m.Parameters = append(m.Parameters, p)
	}
	have := map[string]bool{}
	for _, xa := range x.Actions {
		if xa.Role != "" {
			continue // a promotable resource's monitor: not run here
		}
		a := db.OCFAction{Name: xa.Name}
		var err error
		if a.TimeoutMs, err = parseMs(xa.Timeout); err != nil {
			return nil, fmt.Errorf("ocf meta-data: action %q: timeout: %v", xa.Name, err)
		}
		if a.IntervalMs, err = parseMs(xa.Interval); err != nil {
			return nil, fmt.Errorf("ocf meta-data: action %q: interval: %v", xa.Name, err)
		}
		if s := strings.TrimSpace(xa.Depth); s != "" {
			if a.Depth, err = strconv.ParseInt(s, 10, 64); err != nil || a.Depth < 0 {
				return nil, fmt.Errorf("ocf meta-data: action %q: depth %q is not a non-negative integer", xa.Name, xa.Depth)
			}
		}
		if _, err := db.ParseOCFAction(a.String()); err != nil {
			return nil, fmt.Errorf("ocf meta-data: %v", err)
		}
		if have[a.Name] && a.Name != "monitor" {
			continue // the first one counts
		}
		have[a.Name] = true
		m.Actions = append(m.Actions, a)
	}
	return m, nil
}

// parseMs reads a duration as Pacemaker does (crm_get_msec): an integer
// with an optional unit (ms, msec, us, usec, s, sec, m, min, h, hr;
// none means seconds). "" is 0.
func parseMs(s string) (int64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return 0, nil
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (a number with an optional unit: ms, s, min, h)", s)
	}
	unit := map[string]time.Duration{"": time.Second, "s": time.Second, "sec": time.Second, "ms": time.Millisecond, "msec": time.Millisecond,
		"us": time.Microsecond, "usec": time.Microsecond, "m": time.Minute, "min": time.Minute, "h": time.Hour, "hr": time.Hour}
	u, ok := unit[strings.TrimSpace(s[i:])]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (ms, s, min, h)", s, strings.TrimSpace(s[i:]))
	}
	if n > int64(24*time.Hour/u) {
		return 0, fmt.Errorf("%q is longer than a day", s)
	}
	return (time.Duration(n) * u).Milliseconds(), nil
}

// ResourceTypeProps are the properties of a resourcetype object for agent
// (PROVIDER:TYPE) with this meta-data: agent "ocf", ocf_agent,
// ocf_parameters, ocf_actions, ocf_version, and its short description.
// Created once, it lets every node check the agent's resources without
// running the agent.
func (m *Metadata) ResourceTypeProps(agent string) (map[string]db.Value, error) {
	prov, typ, ok := strings.Cut(agent, ":")
	if !ok || db.ValidName(prov) != nil || db.ValidName(typ) != nil {
		return nil, fmt.Errorf("ocf agent %q is not PROVIDER:TYPE", agent)
	}
	params := make([]string, 0, len(m.Parameters))
	for _, p := range m.Parameters {
		params = append(params, p.OCFParameter.String())
	}
	actions := make([]string, 0, len(m.Actions))
	for _, a := range m.Actions {
		actions = append(actions, a.String())
	}
	p := map[string]db.Value{
		"agent":          db.StringValue(db.AgentOCF),
		"ocf_agent":      db.StringValue(agent),
		"ocf_parameters": db.ListValue(params...),
		"ocf_actions":    db.ListValue(actions...),
		"ocf_version":    db.StringValue(m.Version),
	}
	if m.Shortdesc != "" {
		p["description"] = db.StringValue(m.Shortdesc)
	}
	return p, nil
}

// errNoMetadata: an agent printed nothing for meta-data.
var errNoMetadata = errors.New("ocf: the agent printed no meta-data")
