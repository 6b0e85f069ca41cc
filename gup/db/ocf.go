package db

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// AgentOCF is the agent of a resourcetype whose resources an OCF resource
// agent runs (resources/ocf). Unlike a built-in type, its schema is the
// agent's meta-data, stored in the resourcetype object when it is created
// (ocf_parameters), so that every node validates a resource of the type
// the same way without running the agent.
const AgentOCF = "ocf"

// OCFParamPrefix prefixes an OCF instance parameter's name in a
// resource's properties: parameter ip is property "param.ip". (Agents'
// parameter names would otherwise collide with the common properties:
// ocf:pacemaker:Dummy has a parameter "state".)
const OCFParamPrefix = "param."

// OCFParameter is one parameter of an OCF agent, as its meta-data
// declares it.
type OCFParameter struct {
	Name     string
	Type     Type // TypeString, TypeInt or TypeBool
	Required bool
	Unique   bool
}

var ocfTypeNames = map[string]Type{"string": TypeString, "integer": TypeInt, "boolean": TypeBool}

// String encodes p as an item of ocf_parameters: "NAME TYPE [required]
// [unique]".
func (p OCFParameter) String() string {
	t := "string"
	for n, ty := range ocfTypeNames {
		if ty == p.Type {
			t = n
		}
	}
	s := p.Name + " " + t
	if p.Required {
		s += " required"
	}
	if p.Unique {
		s += " unique"
	}
	return s
}

// ParseOCFParameter decodes an item of ocf_parameters.
func ParseOCFParameter(s string) (OCFParameter, error) {
	f := strings.Fields(s)
	if len(f) < 2 || strings.Join(f, " ") != s {
		return OCFParameter{}, fmt.Errorf(`%q is not "NAME TYPE [required] [unique]"`, s)
	}
	p := OCFParameter{Name: f[0]}
	if err := ValidPropName(OCFParamPrefix + p.Name); err != nil {
		return p, fmt.Errorf("parameter %q: %v", p.Name, err)
	}
	t, ok := ocfTypeNames[f[1]]
	if !ok {
		return p, fmt.Errorf("parameter %q: type %q, want string, integer or boolean", p.Name, f[1])
	}
	p.Type = t
	for _, flag := range f[2:] {
		switch {
		case flag == "required" && !p.Required:
			p.Required = true
		case flag == "unique" && !p.Unique:
			p.Unique = true
		default:
			return p, fmt.Errorf("parameter %q: flag %q, want required or unique, each once", p.Name, flag)
		}
	}
	return p, nil
}

// OCFAction is one action an OCF agent advertises in its meta-data.
type OCFAction struct {
	Name       string // start, stop, monitor, meta-data, validate-all, reload, ...
	TimeoutMs  int64
	IntervalMs int64 // monitor's; 0 for the others
	// Depth is a monitor's check level (OCF_CHECK_LEVEL): 0 is the
	// agent's ordinary monitor, a deeper one (10, 20...) checks more.
	Depth int64
}

// String encodes a as an item of ocf_actions: "NAME TIMEOUT_MS
// [INTERVAL_MS [DEPTH]]".
func (a OCFAction) String() string {
	s := a.Name + " " + strconv.FormatInt(a.TimeoutMs, 10)
	if a.IntervalMs != 0 || a.Depth != 0 {
		s += " " + strconv.FormatInt(a.IntervalMs, 10)
	}
	if a.Depth != 0 {
		s += " " + strconv.FormatInt(a.Depth, 10)
	}
	return s
}

// ParseOCFAction decodes an item of ocf_actions.
func ParseOCFAction(s string) (OCFAction, error) {
	f := strings.Fields(s)
	if len(f) < 2 || len(f) > 4 || strings.Join(f, " ") != s {
		return OCFAction{}, fmt.Errorf(`%q is not "NAME TIMEOUT_MS [INTERVAL_MS [DEPTH]]"`, s)
	}
	a := OCFAction{Name: f[0]}
	if err := ValidName(a.Name); err != nil {
		return a, fmt.Errorf("action: %v", err)
	}
	ms := func(what, s string) (int64, error) {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 || n > 86400000 || strconv.FormatInt(n, 10) != s {
			return 0, fmt.Errorf("action %q: %s %q, want 0..86400000 ms in decimal", a.Name, what, s)
		}
		return n, nil
	}
	var err error
	if a.TimeoutMs, err = ms("timeout", f[1]); err != nil {
		return a, err
	}
	if len(f) >= 3 {
		if a.IntervalMs, err = ms("interval", f[2]); err != nil {
			return a, err
		}
	}
	if len(f) == 4 {
		d, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil || d < 0 || d > 1000 || strconv.FormatInt(d, 10) != f[3] {
			return a, fmt.Errorf("action %q: depth %q, want 0..1000 in decimal", a.Name, f[3])
		}
		a.Depth = d
	}
	return a, nil
}

func ocfAgentName(v Value) error {
	prov, typ, ok := strings.Cut(v.Str, ":")
	if !ok || ValidName(prov) != nil || ValidName(typ) != nil {
		return fmt.Errorf("%q is not PROVIDER:TYPE (each letters, digits, and -_. inside)", v.Str)
	}
	return nil
}

func ocfParameters(v Value) error {
	var names []string
	for i, s := range v.List {
		p, err := ParseOCFParameter(s)
		if err != nil {
			return fmt.Errorf("item %d: %v", i, err)
		}
		if slices.Contains(names, p.Name) {
			return fmt.Errorf("item %d: parameter %q listed twice", i, p.Name)
		}
		names = append(names, p.Name)
	}
	return nil
}

func ocfActions(v Value) error {
	var names []string
	for i, s := range v.List {
		a, err := ParseOCFAction(s)
		if err != nil {
			return fmt.Errorf("item %d: %v", i, err)
		}
		// monitor may be listed more than once (one per interval or role).
		if a.Name != "monitor" && slices.Contains(names, a.Name) {
			return fmt.Errorf("item %d: action %q listed twice", i, a.Name)
		}
		names = append(names, a.Name)
	}
	return nil
}

// resourceTypeChecks: an ocf type names its agent; the ocf_ properties
// belong to ocf types only.
func resourceTypeChecks(p map[string]Value) error {
	if p["agent"].Str == AgentOCF {
		if _, ok := p["ocf_agent"]; !ok {
			return errors.New(`property ocf_agent missing: agent "ocf" needs the agent's PROVIDER:TYPE`)
		}
		return nil
	}
	for _, n := range []string{"ocf_agent", "ocf_parameters", "ocf_actions", "ocf_version"} {
		if _, ok := p[n]; ok {
			return fmt.Errorf("property %s is for agent %q only, not %q", n, AgentOCF, p["agent"].Str)
		}
	}
	return nil
}

// ocfSchema is the schema of the resources of resourcetype rt (agent ocf):
// a property param.NAME for each of its parameters. rt passed its checks,
// so its items decode.
func ocfSchema(rt *object) *typeSchema {
	t := &typeSchema{name: AgentOCF}
	for _, s := range rt.Props["ocf_parameters"].List {
		p, err := ParseOCFParameter(s)
		if err != nil {
			continue
		}
		t.props = append(t.props, PropSpec{Name: OCFParamPrefix + p.Name, Type: p.Type, Required: p.Required,
			Doc: "parameter " + p.Name + " of ocf:" + rt.Props["ocf_agent"].Str})
	}
	return t
}

// unitName: a systemd unit name with its suffix, as systemd.unit(5) allows.
func unitName(v Value) error {
	s := v.Str
	dot := strings.LastIndexByte(s, '.')
	if dot <= 0 || len(s) > 255 {
		return fmt.Errorf("%q is not a unit name (NAME.service, NAME.target, ...)", s)
	}
	if !slices.Contains([]string{"service", "socket", "target", "mount", "timer", "path", "scope", "slice", "device", "swap", "automount"}, s[dot+1:]) {
		return fmt.Errorf("%q: unit suffix %q, want service, socket, target, mount, timer, path, ...", s, s[dot+1:])
	}
	for i := 0; i < dot; i++ {
		c := s[i]
		if !isAlnum(c) && !strings.ContainsRune(":-_.\\@", rune(c)) {
			return fmt.Errorf("%q: byte %d (%q) not allowed in a unit name", s, i, c)
		}
	}
	return nil
}

// mountOptions: comma-separated, no empty option, no blank or NUL.
func mountOptions(v Value) error {
	for i, o := range strings.Split(v.Str, ",") {
		if o == "" || strings.ContainsAny(o, " \t\n\x00") {
			return fmt.Errorf("option %d (%q) is empty or holds a blank", i, o)
		}
	}
	return nil
}
