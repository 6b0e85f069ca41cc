package db

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
)

// PropSpec describes a property a kind or a resource type knows. A known
// property must have its type and pass its check. A property the schema of
// its kind does not name may still be set, with any type, on every kind but
// resources (an administrator's own properties, as MSCS's private
// properties); a resource takes only the common resource properties and its
// type's (TypeSchema).
type PropSpec struct {
	Name     string
	Type     Type
	Required bool // a create must set it and it cannot be deleted
	// Check, if set, validates a value of the right type.
	Check func(Value) error
	Doc   string
}

// References between objects are properties too; the database checks them
// after every transaction (see checkObject and checkGroup):
//
//	resource.group            names an existing group
//	resource.type             names a built-in type or an existing resource type
//	resource.depends_on       names resources of the same group; each group's graph is acyclic
//	resource.possible_owners  names existing nodes
//	group.preferred_owners    names existing nodes
//	group.owner, moving_to    name existing nodes (or are empty)
//	node.id                   unique among nodes
var schemas = [...][]PropSpec{
	KindCluster: {
		{Name: "description", Type: TypeString, Doc: "free text"},
		{Name: "heartbeat_interval_ms", Type: TypeInt, Check: intRange(10, 10000), Doc: "heartbeat interval"},
		{Name: "heartbeat_threshold", Type: TypeInt, Check: intRange(2, 100), Doc: "missed heartbeats before a suspicion"},
		{Name: "quorum_check_interval_ms", Type: TypeInt, Check: intRange(100, 60000), Doc: "quorum check interval"},
		{Name: "event_log_size", Type: TypeInt, Check: intRange(0, 100000), Doc: "events the cluster-wide event log keeps (default 1000)"},
	},
	KindNode: {
		{Name: "id", Type: TypeInt, Required: true, Check: intRange(1, 64), Doc: "node id, unique"},
		{Name: "addrs", Type: TypeList, Check: addrList, Doc: "addresses on the private networks, in network order"},
		{Name: "description", Type: TypeString, Doc: "free text"},
		{Name: "draining", Type: TypeBool, Doc: "an administrator drains the node: its groups move to other nodes (cluster node drain)"},
		{Name: "evicted", Type: TypeBool, Doc: "an administrator evicted the node: the members refuse its joins (cluster node evict; add re-admits it)"},
	},
	KindNetwork: {
		{Name: "role", Type: TypeString, Check: oneOf("cluster", "client", "both", "none"), Doc: "what the network carries"},
		{Name: "subnet", Type: TypeString, Check: prefix, Doc: "address/bits"},
		{Name: "description", Type: TypeString, Doc: "free text"},
	},
	KindGroup: {
		{Name: "preferred_owners", Type: TypeList, Check: uniqueNames, Doc: "node names, most preferred first"},
		{Name: "failback", Type: TypeString, Check: oneOf("never", "immediate", "window"), Doc: "never (default), immediate, or window"},
		{Name: "failback_window_start", Type: TypeInt, Check: intRange(0, 23), Doc: "window: the first hour of failback"},
		{Name: "failback_window_end", Type: TypeInt, Check: intRange(0, 23), Doc: "window: the hour failback ends (exclusive)"},
		{Name: "failover_threshold", Type: TypeInt, Check: intRange(0, 1000), Doc: "pushes allowed in the period (default 10)"},
		{Name: "failover_period_s", Type: TypeInt, Check: intRange(1, 604800), Doc: "the period of failover_threshold (default 21600)"},
		{Name: "target_state", Type: TypeString, Check: oneOf("online", "offline"), Doc: "what the administrator wants (default online)"},
		{Name: "moving_to", Type: TypeString, Check: optionalName, Doc: "a node name: a move in progress"},
		{Name: "move_error", Type: TypeString, Doc: "runtime: why the failover manager cancelled the last move (or could not drain the group)"},
		{Name: "owner", Type: TypeString, Check: optionalName, Doc: "runtime: the owner's node name"},
		{Name: "owner_inc", Type: TypeInt, Check: intRange(0, math.MaxInt64), Doc: "runtime: the incarnation of the owner that claimed it"},
		{Name: "failovers", Type: TypeList, Check: decimalList, Doc: "runtime: the times (Unix ms) of the pushes within the period"},
		{Name: "state", Type: TypeString, Check: oneOf("online", "partial", "pending", "offline", "failed"), Doc: "runtime: the group's state"},
		{Name: "event", Type: TypeString, Check: optionalName, Doc: "runtime: the name of the last event recorded about the group"},
		{Name: "description", Type: TypeString, Doc: "free text"},
	},
	KindResource: {
		{Name: "group", Type: TypeString, Required: true, Check: objectName, Doc: "the group it belongs to"},
		{Name: "type", Type: TypeString, Required: true, Check: objectName, Doc: "a built-in type or a resourcetype object"},
		{Name: "depends_on", Type: TypeList, Check: uniqueNames, Doc: "resources of the same group that must be online first"},
		{Name: "restart_action", Type: TypeString, Check: oneOf("none", "restart", "failover"), Doc: "on a failure (default failover)"},
		{Name: "restart_threshold", Type: TypeInt, Check: intRange(0, 1000), Doc: "restarts allowed in the period (default 3)"},
		{Name: "restart_period_s", Type: TypeInt, Check: intRange(1, 604800), Doc: "the period of restart_threshold (default 900)"},
		{Name: "looks_alive_ms", Type: TypeInt, Check: intRange(10, 86400000), Doc: "cheap check interval (default 5000)"},
		{Name: "is_alive_ms", Type: TypeInt, Check: intRange(10, 86400000), Doc: "thorough check interval (default 60000)"},
		{Name: "pending_timeout_ms", Type: TypeInt, Check: intRange(10, 86400000), Doc: "bound on online and offline (default 180000)"},
		{Name: "possible_owners", Type: TypeList, Check: uniqueNames, Doc: "nodes that may host it (default all)"},
		{Name: "target_state", Type: TypeString, Check: oneOf("online", "offline"), Doc: "what the administrator wants (default online)"},
		{Name: "state", Type: TypeString, Check: oneOf(resourceStates...), Doc: "runtime: the last settled state on its owner"},
		{Name: "reason", Type: TypeString, Doc: "runtime: why it is in its state"},
		{Name: "state_node", Type: TypeString, Check: optionalName, Doc: "runtime: the node that reported the state"},
		{Name: "description", Type: TypeString, Doc: "free text"},
	},
	KindResourceType: {
		{Name: "agent", Type: TypeString, Required: true, Check: oneOf(append(builtinNames(), AgentOCF)...), Doc: "the built-in type that runs its resources, or ocf"},
		{Name: "ocf_agent", Type: TypeString, Check: ocfAgentName, Doc: "ocf: PROVIDER:TYPE, the agent /usr/lib/ocf/resource.d/PROVIDER/TYPE"},
		{Name: "ocf_parameters", Type: TypeList, Check: ocfParameters, Doc: `ocf: the agent's parameters from its meta-data, "NAME TYPE [required] [unique]" (TYPE string, integer or boolean)`},
		{Name: "ocf_actions", Type: TypeList, Check: ocfActions, Doc: `ocf: the agent's advertised actions, "NAME TIMEOUT_MS [INTERVAL_MS [DEPTH]]" (DEPTH: a monitor's OCF_CHECK_LEVEL)`},
		{Name: "ocf_version", Type: TypeString, Doc: "ocf: the agent's OCF version (1.0 or 1.1)"},
		{Name: "description", Type: TypeString, Doc: "free text"},
	},
	KindEvent: {
		{Name: "seq", Type: TypeInt, Check: intRange(1, math.MaxInt64), Doc: "the event's number in the cluster-wide order; the database sets it"},
		{Name: "type", Type: TypeString, Required: true, Check: oneOf(EventTypes...), Doc: "what happened (EventTypes)"},
		{Name: "time", Type: TypeInt, Required: true, Check: intRange(0, math.MaxInt64), Doc: "when, Unix ms on the recording node's clock"},
		{Name: "recorder", Type: TypeString, Check: optionalName, Doc: "the node that recorded it"},
		{Name: "node", Type: TypeString, Check: optionalName, Doc: "the node it concerns"},
		{Name: "group", Type: TypeString, Check: optionalName, Doc: "the group it concerns"},
		{Name: "resource", Type: TypeString, Check: optionalName, Doc: "the resource it concerns"},
		{Name: "message", Type: TypeString, Required: true, Doc: "what happened, for people"},
		{Name: "cause", Type: TypeString, Doc: "the condition that led to it, when no earlier event did"},
		{Name: "cause_event", Type: TypeString, Check: optionalName, Doc: "the name of the earlier event that led to it"},
		{Name: "epoch", Type: TypeString, Doc: "regroup: the epoch installed"},
		{Name: "members", Type: TypeList, Doc: "regroup: the members after"},
		{Name: "members_before", Type: TypeList, Doc: "regroup: the members before"},
	},
}

// resourceStates are the resource states' names (resources.State).
var resourceStates = []string{"offline", "online-pending", "online", "offline-pending", "failed"}

// objectChecks are the checks across the properties of one object, by
// kind; they run after each property passed its own.
var objectChecks = [kindMax + 1]func(map[string]Value) error{
	KindGroup:        groupChecks,
	KindResourceType: resourceTypeChecks,
}

func groupChecks(p map[string]Value) error {
	start, hasStart := p["failback_window_start"]
	end, hasEnd := p["failback_window_end"]
	if p["failback"].Str == "window" {
		if !hasStart {
			return errors.New(`property failback_window_start missing: failback "window" needs both window hours`)
		}
		if !hasEnd {
			return errors.New(`property failback_window_end missing: failback "window" needs both window hours`)
		}
	}
	if hasStart && hasEnd && start.Int == end.Int {
		return fmt.Errorf("properties failback_window_start and failback_window_end are both %d: the window is empty", start.Int)
	}
	return nil
}

// typeSchema is a built-in resource type's schema: its properties and a
// check across them.
type typeSchema struct {
	name  string
	props []PropSpec
	check func(map[string]Value) error
}

// builtinTypes are the built-in resource types (docs/resources.md), sorted
// by name.
var builtinTypes = []typeSchema{
	{name: "generic_application", props: []PropSpec{
		{Name: "command", Type: TypeString, Required: true, Check: command, Doc: "run by /bin/sh -c in its own process group"},
		{Name: "directory", Type: TypeString, Check: absPath, Doc: "working directory (default /)"},
		{Name: "environment", Type: TypeList, Check: environment, Doc: "NAME=value items added to a minimal environment"},
		{Name: "user", Type: TypeString, Check: user, Doc: "user name or numeric uid to run as"},
		{Name: "check_command", Type: TypeString, Check: command, Doc: "is-alive: exit status 0 means alive"},
		{Name: "stop_timeout_ms", Type: TypeInt, Check: intRange(10, 3600000), Doc: "SIGTERM, then SIGKILL after this long (default 10000)"},
	}},
	{name: "generic_service", props: []PropSpec{
		{Name: "unit", Type: TypeString, Required: true, Check: unitName, Doc: "the systemd unit, e.g. postgresql.service"},
		{Name: "stop_timeout_ms", Type: TypeInt, Check: intRange(10, 3600000), Doc: "how long a stop may take before the unit is killed (default 90000)"},
	}},
	{name: "ip_address", props: []PropSpec{
		{Name: "address", Type: TypeString, Required: true, Check: hostAddr, Doc: "the address, canonical form"},
		{Name: "prefix_len", Type: TypeInt, Check: intRange(0, 128), Doc: "prefix length (default the subnet's)"},
		{Name: "interface", Type: TypeString, Check: ifName, Doc: "the interface (default the one whose subnet holds it)"},
		{Name: "probe", Type: TypeBool, Doc: "ARP probe / DAD before adding"},
	}, check: ipAddressChecks},
	{name: "network_name", props: []PropSpec{
		{Name: "name", Type: TypeString, Required: true, Check: hostName, Doc: "a DNS host name"},
		{Name: "addresses", Type: TypeList, Check: hostAddrList, Doc: "default the addresses of its ip_address dependencies"},
		{Name: "mode", Type: TypeString, Check: oneOf("mdns", "dns"), Doc: "mdns (default) or dns (RFC 2136 update)"},
		{Name: "interface", Type: TypeString, Check: ifName, Doc: "mdns: the responder's interface"},
		{Name: "dns_server", Type: TypeString, Check: dnsServer, Doc: "dns: the server (address, address:port or host name)"},
		{Name: "dns_zone", Type: TypeString, Check: hostName, Doc: "dns: the zone"},
		{Name: "tsig_key_file", Type: TypeString, Check: absPath, Doc: "dns: the TSIG key file"},
		{Name: "ttl_s", Type: TypeInt, Check: intRange(1, 86400), Doc: "record TTL (default 120)"},
	}, check: networkNameChecks},
	{name: "physical_disk", props: []PropSpec{
		{Name: "device", Type: TypeString, Required: true, Check: absPath, Doc: "the data LUN's block device (a /dev/disk/by-id/ name survives renumbering)"},
		{Name: "mount_point", Type: TypeString, Required: true, Check: mountPoint, Doc: "where the filesystem is mounted (not /)"},
		{Name: "fstype", Type: TypeString, Check: oneOf("ext2", "ext3", "ext4", "xfs"), Doc: "the filesystem (default ext4)"},
		{Name: "mount_options", Type: TypeString, Check: diskMountOptions, Doc: "comma-separated mount options (no remount, bind, move or propagation options)"},
		{Name: "fsck", Type: TypeString, Check: oneOf("auto", "force", "never"), Doc: "before mounting: auto (preen; default), force (a full check), never"},
		{Name: "scratch_lba", Type: TypeInt, Check: intRange(0, math.MaxInt64), Doc: "is-alive: a block outside the filesystem to write (default: for ext*, block 0, which ext never writes; else read only)"},
		{Name: "stop_timeout_ms", Type: TypeInt, Check: intRange(10, 3600000), Doc: "unmount: processes holding the filesystem are killed after this long (default 10000)"},
	}},
}

func builtinNames() []string {
	n := make([]string, len(builtinTypes))
	for i, t := range builtinTypes {
		n[i] = t.name
	}
	return n
}

// BuiltinTypes are the names of the built-in resource types, sorted.
var BuiltinTypes = builtinNames()

func builtin(name string) *typeSchema {
	for i := range builtinTypes {
		if builtinTypes[i].name == name {
			return &builtinTypes[i]
		}
	}
	return nil
}

func (t *typeSchema) spec(name string) *PropSpec {
	for i := range t.props {
		if t.props[i].Name == name {
			return &t.props[i]
		}
	}
	return nil
}

// TypeSchema returns the properties of the built-in resource type name,
// sorted by name, and whether there is such a type. A resource of the type
// (or of a resourcetype whose agent it is) takes these and the common
// resource properties, Schema(KindResource), and no others.
func TypeSchema(name string) ([]PropSpec, bool) {
	t := builtin(name)
	if t == nil {
		return nil, false
	}
	return sortedSpecs(t.props), true
}

func ipAddressChecks(p map[string]Value) error {
	a, err := netip.ParseAddr(p["address"].Str)
	if pl, ok := p["prefix_len"]; ok && err == nil && a.Is4() && pl.Int > 32 {
		return fmt.Errorf("property prefix_len: %d, want 0..32 for IPv4 address %s", pl.Int, a)
	}
	return nil
}

func networkNameChecks(p map[string]Value) error {
	if p["mode"].Str == "dns" {
		for _, n := range []string{"dns_server", "dns_zone"} {
			if _, ok := p[n]; !ok {
				return fmt.Errorf(`property %s missing: mode "dns" needs dns_server and dns_zone`, n)
			}
		}
	}
	return nil
}

// Schema returns the known properties of kind k, sorted by name.
func Schema(k Kind) []PropSpec {
	if !k.Valid() {
		return nil
	}
	return sortedSpecs(schemas[k])
}

func sortedSpecs(s []PropSpec) []PropSpec {
	s = slices.Clone(s)
	slices.SortFunc(s, func(a, b PropSpec) int { return strings.Compare(a.Name, b.Name) })
	return s
}

func spec(k Kind, name string) *PropSpec {
	for i := range schemas[k] {
		if schemas[k][i].Name == name {
			return &schemas[k][i]
		}
	}
	return nil
}

// checkProp validates one property of an object of kind k: its name, its
// value's structure, and its type and range if the kind's schema knows it.
// (A resource's type-specific properties: checkResourceType.)
func checkProp(k Kind, name string, v Value) error {
	if err := ValidPropName(name); err != nil {
		return err
	}
	if err := v.check(); err != nil {
		return fmt.Errorf("property %s: %v", name, err)
	}
	s := spec(k, name)
	if s == nil {
		return nil
	}
	return checkSpec(s, "a "+k.String(), v)
}

// checkSpec checks v against s; of names the owner of the schema in the
// error ("a node", "type ip_address").
func checkSpec(s *PropSpec, of string, v Value) error {
	if v.Type != s.Type {
		return fmt.Errorf("property %s of %s must be of type %s, not %s", s.Name, of, s.Type, v.Type)
	}
	if s.Check != nil {
		if err := s.Check(v); err != nil {
			return fmt.Errorf("property %s: %v", s.Name, err)
		}
	}
	return nil
}

func intRange(lo, hi int64) func(Value) error {
	return func(v Value) error {
		if v.Int < lo || v.Int > hi {
			return fmt.Errorf("%d, want %d..%d", v.Int, lo, hi)
		}
		return nil
	}
}

func oneOf(vals ...string) func(Value) error {
	return func(v Value) error {
		if !slices.Contains(vals, v.Str) {
			return fmt.Errorf("%q, want one of %q", v.Str, vals)
		}
		return nil
	}
}

func objectName(v Value) error { return ValidName(v.Str) }

// optionalName: an object name or empty.
func optionalName(v Value) error {
	if v.Str == "" {
		return nil
	}
	return ValidName(v.Str)
}

// uniqueNames: object names, none twice.
func uniqueNames(v Value) error {
	for i, s := range v.List {
		if err := ValidName(s); err != nil {
			return fmt.Errorf("item %d: %v", i, err)
		}
		if slices.Contains(v.List[:i], s) {
			return fmt.Errorf("%q listed twice", s)
		}
	}
	return nil
}

// decimalList: non-negative int64s in canonical decimal.
func decimalList(v Value) error {
	for i, s := range v.List {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 || strconv.FormatInt(n, 10) != s {
			return fmt.Errorf("item %d: %q is not a non-negative decimal integer", i, s)
		}
	}
	return nil
}

func addrList(v Value) error {
	for i, s := range v.List {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("item %d: %v", i, err)
		}
		if a.String() != s {
			return fmt.Errorf("item %d: %q is not in canonical form (%s)", i, s, a)
		}
	}
	return nil
}

func prefix(v Value) error {
	p, err := netip.ParsePrefix(v.Str)
	if err != nil {
		return err
	}
	if p.Masked() != p {
		return fmt.Errorf("%s has host bits set (%s)", p, p.Masked())
	}
	return nil
}

// parseHostAddr parses an address a resource may put on an interface: an
// IP address in canonical form, without a zone, not an IPv4-mapped IPv6
// address, not unspecified, multicast or loopback.
func parseHostAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return a, err
	case a.String() != s:
		return a, fmt.Errorf("%q is not in canonical form (%s)", s, a)
	case a.Zone() != "":
		return a, fmt.Errorf("%q has a zone", s)
	case a.Is4In6():
		return a, fmt.Errorf("%q is an IPv4-mapped IPv6 address (write %s)", s, a.Unmap())
	case a.IsUnspecified(), a.IsMulticast(), a.IsLoopback():
		return a, fmt.Errorf("%q is not a unicast host address", s)
	}
	return a, nil
}

func hostAddr(v Value) error {
	_, err := parseHostAddr(v.Str)
	return err
}

func hostAddrList(v Value) error {
	for i, s := range v.List {
		if _, err := parseHostAddr(s); err != nil {
			return fmt.Errorf("item %d: %v", i, err)
		}
		if slices.Contains(v.List[:i], s) {
			return fmt.Errorf("%q listed twice", s)
		}
	}
	return nil
}

// command: a non-empty shell command without a NUL byte.
func command(v Value) error {
	if strings.TrimSpace(v.Str) == "" {
		return errors.New("empty command")
	}
	if strings.IndexByte(v.Str, 0) >= 0 {
		return errors.New("command holds a NUL byte")
	}
	return nil
}

// mountPoint: an absolute path other than the root.
func mountPoint(v Value) error {
	if path.Clean(v.Str) == "/" {
		return fmt.Errorf("%q is the root directory", v.Str)
	}
	return absPath(v)
}

// diskMountOptions: mountOptions, none of which changes an existing mount
// instead of mounting a filesystem (the physical disk refuses them).
func diskMountOptions(v Value) error {
	if err := mountOptions(v); err != nil {
		return err
	}
	for _, o := range strings.Split(v.Str, ",") {
		switch o {
		case "remount", "bind", "rbind", "move", "shared", "rshared", "private", "rprivate",
			"slave", "rslave", "unbindable", "runbindable":
			return fmt.Errorf("option %q does not mount a filesystem", o)
		}
	}
	return nil
}

func absPath(v Value) error {
	if !path.IsAbs(v.Str) {
		return fmt.Errorf("%q is not an absolute path", v.Str)
	}
	if strings.IndexByte(v.Str, 0) >= 0 {
		return errors.New("path holds a NUL byte")
	}
	return nil
}

// environment: NAME=value items, NAME a shell variable name, none twice.
func environment(v Value) error {
	names := make([]string, 0, len(v.List))
	for i, s := range v.List {
		name, _, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("item %d: %q is not NAME=value", i, s)
		}
		if !validEnvName(name) {
			return fmt.Errorf("item %d: %q is not a variable name (a letter or '_', then letters, digits, '_')", i, name)
		}
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("item %d: holds a NUL byte", i)
		}
		if slices.Contains(names, name) {
			return fmt.Errorf("item %d: %s set twice", i, name)
		}
		names = append(names, name)
	}
	return nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlpha(c) || c == '_' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// user: a numeric uid (0..4294967294) or a user name of 1 to 32 letters,
// digits, '_', '.', '-' (not first) and a final '$'.
func user(v Value) error {
	s := v.Str
	if s != "" && strings.Trim(s, "0123456789") == "" {
		if n, err := strconv.ParseUint(s, 10, 32); err != nil || n == math.MaxUint32 {
			return fmt.Errorf("uid %s out of range", s)
		}
		return nil
	}
	if len(s) == 0 || len(s) > 32 {
		return fmt.Errorf("user name of %d bytes, want 1..32", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '_' || c == '.' || c == '-' && i > 0 || c == '$' && i == len(s)-1 && i > 0) {
			return fmt.Errorf("user name %q: byte %d (%q) not allowed", s, i, c)
		}
	}
	return nil
}

// ifName: a Linux interface name (dev_valid_name): 1 to 15 bytes, not "."
// or "..", no '/', ':' or white space.
func ifName(v Value) error {
	s := v.Str
	if len(s) == 0 || len(s) > 15 {
		return fmt.Errorf("interface name of %d bytes, want 1..15", len(s))
	}
	if s == "." || s == ".." {
		return fmt.Errorf("interface name %q", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '/' || c == ':' || c <= ' ' || c >= 0x7f {
			return fmt.Errorf("interface name %q: byte %d (%q) not allowed", s, i, c)
		}
	}
	return nil
}

// validHostName: dot-separated labels of 1 to 63 letters, digits and '-',
// not starting or ending with '-', at most 253 bytes.
func validHostName(s string) error {
	if len(s) == 0 || len(s) > 253 {
		return fmt.Errorf("host name of %d bytes, want 1..253", len(s))
	}
	for _, l := range strings.Split(s, ".") {
		if len(l) == 0 || len(l) > 63 {
			return fmt.Errorf("host name %q: a label of %d bytes, want 1..63", s, len(l))
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(isAlnum(c) || c == '-' && i > 0 && i < len(l)-1) {
				return fmt.Errorf("host name %q: label %q: byte %d (%q) not allowed (letters, digits, and - inside)", s, l, i, c)
			}
		}
	}
	return nil
}

func hostName(v Value) error { return validHostName(v.Str) }

// dnsServer: an IP address, an address and port, or a host name.
func dnsServer(v Value) error {
	if a, err := netip.ParseAddr(v.Str); err == nil && a.String() == v.Str {
		return nil
	}
	if ap, err := netip.ParseAddrPort(v.Str); err == nil && ap.String() == v.Str && ap.Port() != 0 {
		return nil
	}
	if err := validHostName(v.Str); err != nil {
		return fmt.Errorf("%q is neither a canonical address, address:port, nor a host name", v.Str)
	}
	return nil
}
