// Package config reads and validates clusterd's node file, TOML
// (/etc/wolfpack/node.toml; docs/clusterd.md, "The node file").
package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/internal/stream"
)

// ErrInvalid is wrapped by every error about a node file's content; the
// message names the key.
var ErrInvalid = errors.New("config: invalid")

// MinKeyLen is the shortest cluster secret accepted, in decoded bytes.
const MinKeyLen = 32

// DefaultPath is the node file clusterd reads unless -config says.
const DefaultPath = "/etc/wolfpack/node.toml"

// File is the node file as written. Marshal writes it, Parse reads it; the
// TOML keys are in the field tags.
type File struct {
	// NodeID is this node's id: one of Nodes.
	NodeID int `toml:"node_id"`
	// AdminSocket is the admin API's unix socket; empty: none.
	AdminSocket string `toml:"admin_socket,omitempty"`
	// StateDir holds what the node keeps across restarts: its last copy
	// of the cluster database (default /var/lib/wolfpack).
	StateDir string `toml:"state_dir,omitempty"`
	// RealtimePriority is the SCHED_RR priority clusterd (and resmon,
	// which inherits it) runs at, 1..99; 0: normal scheduling; unset:
	// DefaultRealtimePriority (docs/clusterd.md, "Real-time scheduling").
	RealtimePriority *int      `toml:"realtime_priority,omitempty"`
	Cluster          Cluster   `toml:"cluster"`
	Quorum           Quorum    `toml:"quorum"`
	Timing           Timing    `toml:"timing,omitzero"`
	Streams          Streams   `toml:"streams,omitzero"`
	API              API       `toml:"api,omitzero"`
	Resmon           Resmon    `toml:"resmon,omitzero"`
	Networks         []Network `toml:"networks"`
	Nodes            []Node    `toml:"nodes"`
}

// Cluster is the [cluster] section: what every node's file has alike.
// Port is the UDP port of heartbeats and regroup on every network and
// node.
type Cluster struct {
	Name    string `toml:"name"`
	Tag     string `toml:"tag"`
	KeyFile string `toml:"key_file"`
	Port    int    `toml:"port"`
}

// Streams is the [streams] section: the PEM files of the node's streams
// (docs/streams.md): the cluster's CA bundle, this node's certificate and
// its key. All three or none; none means the node has no streams. Port is
// the TCP port of the streams on every node; zero means cluster.port.
type Streams struct {
	CABundle string `toml:"ca_bundle,omitempty"`
	NodeCert string `toml:"node_cert,omitempty"`
	NodeKey  string `toml:"node_key,omitempty"`
	Port     int    `toml:"port,omitempty"`
}

// Resmon configures the resource monitor. Path is its binary: empty looks
// for resmon beside clusterd, then on $PATH; "none" runs no resources on
// this node. Watchdog is a watchdog device resmon pets while its lease is
// valid (empty: none). StateDir is where it records the processes it
// starts (default /run/wolfpack/resmon-<cluster>-node<N>).
type Resmon struct {
	Path     string `toml:"path,omitempty"`
	Watchdog string `toml:"watchdog,omitempty"`
	StateDir string `toml:"state_dir,omitempty"`
}

// Node is one configured cluster node ([[nodes]]). Addrs[k] is its
// address on Networks[k].
type Node struct {
	ID    int      `toml:"id"`
	Name  string   `toml:"name"`
	Addrs []string `toml:"addrs"`
}

// Network is one private network ([[networks]]). Interface is the local
// NIC on it; empty binds to no device (tests on 127.0.0.0/8 only).
type Network struct {
	Name      string `toml:"name"`
	Interface string `toml:"interface,omitempty"`
}

// Quorum names the quorum LUN: iscsi://host[:port]/iqn/lun, /dev/sdX or
// /dev/sgN. InitiatorName is this node's iSCSI name (iscsi:// only).
type Quorum struct {
	Device        string `toml:"device"`
	InitiatorName string `toml:"initiator_name,omitempty"`
}

// Config is a validated configuration with parsed values.
type Config struct {
	Cluster    string
	ClusterTag uint32
	Key        []byte
	NodeID     int
	Nodes      []ParsedNode
	Networks   []Network
	Port       int
	Quorum     Quorum
	// AdminSocket may be empty: no admin API.
	AdminSocket string
	// StateDir is state_dir, or DefaultStateDir.
	StateDir string
	// Timing is the effective timing: the profile with the overrides.
	Timing Timings
	// Credentials are the node's stream credentials, loaded from
	// streams.ca_bundle, node_cert and node_key; nil when none is set
	// (Streams).
	Credentials *stream.Credentials
	// StreamPort is streams.port, or Port when it is not set.
	StreamPort int
	// Resmon is resmon as given; its StateDir defaulted.
	Resmon Resmon
	// RealtimePriority is realtime_priority, or DefaultRealtimePriority
	// when unset; 0: normal scheduling.
	RealtimePriority int
	// API is the admin API on TCP with TLS; nil: the unix socket only.
	API *RemoteAPI
}

// DefaultRealtimePriority is the SCHED_RR priority clusterd runs at
// unless realtime_priority says: above every normal process, below the
// kernel's threaded interrupt handlers (50) and its watchdog and
// migration threads (99).
const DefaultRealtimePriority = 10

// MaxRealtimePriority is the highest realtime_priority (SCHED_RR's).
const MaxRealtimePriority = 99

// DefaultStateDir is where a node keeps its state unless state_dir says.
const DefaultStateDir = "/var/lib/wolfpack"

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// DBPath is the node's local copy of the cluster database: in StateDir,
// named after the cluster and the node, so that nodes sharing a host (a
// test rig) never share it.
func (c *Config) DBPath() string {
	return filepath.Join(c.StateDir, fmt.Sprintf("%s-node%d.clusterdb", c.Cluster, c.NodeID))
}

// ParsedNode is a Node with parsed addresses.
type ParsedNode struct {
	ID    int
	Name  string
	Addrs []netip.Addr
}

// Self returns this node's entry.
func (c *Config) Self() ParsedNode {
	for _, n := range c.Nodes {
		if n.ID == c.NodeID {
			return n
		}
	}
	return ParsedNode{}
}

// Streams reports whether the node has stream credentials (ca_bundle,
// node_cert and node_key are set). Without them it can run membership but
// neither GUP nor the database transfer.
func (c *Config) Streams() bool { return c.Credentials != nil }

// StreamListen is the address the node listens on for streams: its own
// address on the first network, port StreamPort ("10.97.1.13:7400",
// "[fd00::13]:7400").
func (c *Config) StreamListen() string {
	self := c.Self()
	if len(self.Addrs) == 0 {
		return ""
	}
	return netip.AddrPortFrom(self.Addrs[0], uint16(c.StreamPort)).String()
}

// StreamAddrs maps every other configured node to the address its streams
// are dialled at: its address on the first network, port StreamPort (the
// same on every node).
func (c *Config) StreamAddrs() map[nodes.ID]string {
	m := make(map[nodes.ID]string, len(c.Nodes))
	for _, n := range c.Nodes {
		if n.ID == c.NodeID || len(n.Addrs) == 0 {
			continue
		}
		m[nodes.ID(n.ID)] = netip.AddrPortFrom(n.Addrs[0], uint16(c.StreamPort)).String()
	}
	return m
}

// Options change what Load checks.
type Options struct {
	// InterfaceExists reports whether a network interface exists; nil uses
	// net.InterfaceByName.
	InterfaceExists func(name string) error
}

// Load reads, parses and validates the node file at path. A file that
// does not parse or validate gives every problem found (errors.Join of
// *Error, each with the file, the key and, where known, the line).
func Load(path string, o Options) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	f, err := Parse(b)
	if err == nil {
		var c *Config
		if c, err = f.Validate(o); err == nil {
			return c, nil
		}
	}
	return nil, locate(err, path, b)
}

// WriteFile writes the file to path (mode 0644).
func (f *File) WriteFile(path string) error {
	b, err := f.Marshal()
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("config: write %s: %w", path, err)
	}
	return nil
}

// problems collects validation errors, so that an operator sees them all
// at once.
type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, invalid(key, format, args...))
}

func invalid(key, format string, args ...any) *Error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks every key and returns the parsed configuration, or
// every problem found (errors.Join of *Error). It reads the key file,
// loads the stream files and checks that the interfaces exist.
func (f *File) Validate(o Options) (*Config, error) {
	var bad problems
	c := &Config{Cluster: f.Cluster.Name, NodeID: f.NodeID, Port: f.Cluster.Port, Quorum: f.Quorum, AdminSocket: f.AdminSocket,
		StateDir: cmpOr(f.StateDir, DefaultStateDir)}
	if !filepath.IsAbs(c.StateDir) {
		bad.add("state_dir", "%q is not an absolute path", f.StateDir)
	}
	c.Resmon = f.Resmon
	c.RealtimePriority = DefaultRealtimePriority
	if p := f.RealtimePriority; p != nil {
		if *p < 0 || *p > MaxRealtimePriority {
			bad.add("realtime_priority", "%d, want 0 (normal scheduling) or 1..%d (SCHED_RR)", *p, MaxRealtimePriority)
		}
		c.RealtimePriority = *p
	}
	for _, p := range []struct{ key, v string }{{"resmon.watchdog", f.Resmon.Watchdog}, {"resmon.state_dir", f.Resmon.StateDir}} {
		if p.v != "" && !filepath.IsAbs(p.v) {
			bad.add(p.key, "%q is not an absolute path", p.v)
		}
	}
	if c.Resmon.StateDir == "" {
		c.Resmon.StateDir = fmt.Sprintf("/run/wolfpack/resmon-%s-node%d", f.Cluster.Name, f.NodeID)
	}
	if f.Cluster.Name == "" {
		bad.add("cluster.name", "missing")
	}
	tag, err := strconv.ParseUint(strings.TrimPrefix(f.Cluster.Tag, "0x"), 16, 32)
	if err != nil || len(strings.TrimPrefix(f.Cluster.Tag, "0x")) != 8 || tag == 0 {
		bad.add("cluster.tag", "%q is not 8 hex digits (4 bytes, non-zero)", f.Cluster.Tag)
	}
	c.ClusterTag = uint32(tag)
	if err := f.readKey(c); err != nil {
		bad = append(bad, err)
	}
	if f.Cluster.Port < 1 || f.Cluster.Port > 65535 {
		bad.add("cluster.port", "%d, want 1..65535", f.Cluster.Port)
	}
	f.validateNetworks(o, &bad)
	f.validateNodes(c, &bad)
	switch {
	case f.Quorum.Device == "":
		bad.add("quorum.device", "missing")
	case strings.HasPrefix(f.Quorum.Device, "iscsi://"):
		if f.Quorum.InitiatorName == "" {
			bad.add("quorum.initiator_name", "required for an iscsi:// device (each node needs its own)")
		}
	case strings.HasPrefix(f.Quorum.Device, "/dev/"):
		if f.Quorum.InitiatorName != "" {
			bad.add("quorum.initiator_name", "only for iscsi:// devices")
		}
	default:
		bad.add("quorum.device", "%q: want iscsi://host[:port]/target-iqn/lun, /dev/sdX or /dev/sgN", f.Quorum.Device)
	}
	if c.Timing, err = f.Timing.Resolve(); err != nil {
		bad = append(bad, err)
	}
	f.validateAPI(c, &bad)
	if len(bad) == 0 {
		// The stream files are loaded last: their checks need a valid
		// cluster name and node id.
		if err := f.validateStreams(c); err != nil {
			bad = append(bad, err)
		}
	}
	if len(bad) > 0 {
		return nil, errors.Join(bad...)
	}
	return c, nil
}

// readKey reads the cluster secret from cluster.key_file.
func (f *File) readKey(c *Config) error {
	const key = "cluster.key_file"
	if f.Cluster.KeyFile == "" {
		return invalid(key, "missing")
	}
	kb, err := os.ReadFile(f.Cluster.KeyFile)
	if err != nil {
		return invalid(key, "%v", err)
	}
	c.Key, err = hex.DecodeString(strings.TrimSpace(string(kb)))
	if err != nil {
		return invalid(key, "%s does not hold hex: %v", f.Cluster.KeyFile, err)
	}
	if len(c.Key) < MinKeyLen {
		return invalid(key, "%s holds %d bytes, want at least %d", f.Cluster.KeyFile, len(c.Key), MinKeyLen)
	}
	return nil
}

func (f *File) validateNetworks(o Options, bad *problems) {
	if len(f.Networks) == 0 || len(f.Networks) > 8 {
		bad.add("networks", "%d networks, want 1..8 ([[networks]] sections)", len(f.Networks))
	}
	exists := o.InterfaceExists
	if exists == nil {
		exists = func(name string) error { _, err := net.InterfaceByName(name); return err }
	}
	names := map[string]bool{}
	for k, n := range f.Networks {
		key := fmt.Sprintf("networks[%d]", k)
		if n.Name == "" {
			bad.add(key+".name", "missing")
		} else if names[n.Name] {
			bad.add(key+".name", "%q used twice", n.Name)
		}
		names[n.Name] = true
		if n.Interface != "" {
			if err := exists(n.Interface); err != nil {
				bad.add(key+".interface", "%q: %v", n.Interface, err)
			}
		}
	}
}

func (f *File) validateNodes(c *Config, bad *problems) {
	c.Networks = f.Networks
	if len(f.Nodes) == 0 {
		bad.add("nodes", "missing ([[nodes]] sections, one per node)")
	}
	ids, nodeNames := map[int]bool{}, map[string]bool{}
	addrs := map[netip.Addr]string{}
	for i, n := range f.Nodes {
		key := fmt.Sprintf("nodes[%d]", i)
		switch {
		case n.ID < 1 || n.ID > 64:
			bad.add(key+".id", "%d, want 1..64", n.ID)
		case ids[n.ID]:
			bad.add(key+".id", "%d used twice", n.ID)
		}
		ids[n.ID] = true
		switch {
		case n.Name == "":
			bad.add(key+".name", "missing")
		case nodeNames[n.Name]:
			bad.add(key+".name", "%q used twice", n.Name)
		}
		nodeNames[n.Name] = true
		if len(n.Addrs) != len(f.Networks) {
			bad.add(key+".addrs", "%d addresses for %d networks (one per network, in order)", len(n.Addrs), len(f.Networks))
		}
		p := ParsedNode{ID: n.ID, Name: n.Name}
		for k, s := range n.Addrs {
			ak := fmt.Sprintf("%s.addrs[%d]", key, k)
			a, err := netip.ParseAddr(s)
			switch {
			case err != nil:
				bad.add(ak, "%v", err)
				continue
			case a.Zone() != "" || a.IsUnspecified() || a.IsMulticast():
				bad.add(ak, "%s is not a unicast address", s)
			case addrs[a] != "":
				bad.add(ak, "%s is also %s", s, addrs[a])
			}
			addrs[a] = ak
			p.Addrs = append(p.Addrs, a)
		}
		c.Nodes = append(c.Nodes, p)
	}
	if !ids[f.NodeID] {
		bad.add("node_id", "%d is not the id of a [[nodes]] entry", f.NodeID)
	}
}

// validateStreams checks streams.port and, when the stream files are set,
// loads them (stream.LoadCredentials: every error names the file).
func (f *File) validateStreams(c *Config) error {
	s := f.Streams
	c.StreamPort = s.Port
	if c.StreamPort == 0 {
		c.StreamPort = f.Cluster.Port
	}
	if s.Port < 0 || s.Port > 65535 {
		return invalid("streams.port", "%d, want 1..65535 (or leave it out: cluster.port)", s.Port)
	}
	files := []keyValue{{"streams.ca_bundle", s.CABundle}, {"streams.node_cert", s.NodeCert}, {"streams.node_key", s.NodeKey}}
	set, unset := setKeys(files)
	switch {
	case len(set) == 0:
		return nil
	case len(unset) > 0:
		return invalid(unset[0], "missing: %s set, and streams need all three of ca_bundle, node_cert and node_key (or none)", strings.Join(set, " and "))
	}
	if err := stream.CheckClusterName(f.Cluster.Name); err != nil {
		return invalid("cluster.name", "%v (it names the cluster in the stream certificates)", err)
	}
	for _, x := range files {
		if _, err := os.Stat(x.v); err != nil {
			return invalid(x.key, "%v", err)
		}
	}
	creds, err := stream.LoadCredentials(f.Cluster.Name, nodes.ID(f.NodeID), s.CABundle, s.NodeCert, s.NodeKey)
	if err != nil {
		return invalid("streams", "%v", err)
	}
	c.Credentials = creds
	return nil
}

// keyValue is a string key of the file and its value.
type keyValue struct{ key, v string }

// setKeys splits the keys of a group that must be set all or none into
// those set and those not.
func setKeys(kvs []keyValue) (set, unset []string) {
	for _, x := range kvs {
		if x.v != "" {
			set = append(set, x.key)
		} else {
			unset = append(unset, x.key)
		}
	}
	return set, unset
}
