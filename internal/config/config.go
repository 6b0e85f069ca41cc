// Package config reads and validates clusterd's JSON configuration file
// (docs/clusterd.md).
package config

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/internal/stream"
)

// ErrInvalid wraps every validation error; the message names the field.
var ErrInvalid = errors.New("config: invalid")

// MinKeyLen is the shortest cluster secret accepted, in decoded bytes.
const MinKeyLen = 32

// File is the configuration file as written.
type File struct {
	Cluster     string    `json:"cluster"`
	ClusterTag  string    `json:"cluster_tag"`
	KeyFile     string    `json:"key_file"`
	NodeID      int       `json:"node_id"`
	Nodes       []Node    `json:"nodes"`
	Networks    []Network `json:"networks"`
	Port        int       `json:"port"`
	Quorum      Quorum    `json:"quorum"`
	AdminSocket string    `json:"admin_socket"`
	// StateDir holds what the node keeps across restarts: its last copy
	// of the cluster database (default /var/lib/wolfpack).
	StateDir string `json:"state_dir,omitempty"`
	Timing   Timing `json:"timing"`
	// CABundle, NodeCert and NodeKey are the PEM files of the node's
	// streams (docs/streams.md): the cluster's CA bundle, this node's
	// certificate and its key. All three or none; none means the node has
	// no streams. StreamPort is the TCP port of the streams on every node;
	// zero means Port.
	CABundle   string `json:"ca_bundle,omitempty"`
	NodeCert   string `json:"node_cert,omitempty"`
	NodeKey    string `json:"node_key,omitempty"`
	StreamPort int    `json:"stream_port,omitempty"`
	// Resmon is the resource monitor (docs/resources.md, "resmon").
	Resmon Resmon `json:"resmon,omitzero"`
}

// Resmon configures the resource monitor. Path is its binary: empty looks
// for resmon beside clusterd, then on $PATH; "none" runs no resources on
// this node. Watchdog is a watchdog device resmon pets while its lease is
// valid (empty: none). StateDir is where it records the processes it
// starts (default /run/wolfpack/resmon-<cluster>-node<N>).
type Resmon struct {
	Path     string `json:"path,omitempty"`
	Watchdog string `json:"watchdog,omitempty"`
	StateDir string `json:"state_dir,omitempty"`
}

// Node is one configured cluster node. Addrs[k] is its address on
// Networks[k].
type Node struct {
	ID    int      `json:"id"`
	Name  string   `json:"name"`
	Addrs []string `json:"addrs"`
}

// Network is one private network. Interface is the local NIC on it; empty
// binds to no device (tests on 127.0.0.0/8 only).
type Network struct {
	Name      string `json:"name"`
	Interface string `json:"interface"`
}

// Quorum names the quorum LUN: iscsi://host[:port]/iqn/lun, /dev/sdX or
// /dev/sgN. InitiatorName is this node's iSCSI name (iscsi:// only).
type Quorum struct {
	Device        string `json:"device"`
	InitiatorName string `json:"initiator_name"`
}

// Timing holds durations as Go duration strings ("100ms"); a zero field
// means the default (and Marshal leaves it out).
type Timing struct {
	HeartbeatInterval   string `json:"heartbeat_interval,omitempty"`
	HeartbeatThreshold  int    `json:"heartbeat_threshold,omitempty"`
	QuorumCheckInterval string `json:"quorum_check_interval,omitempty"`
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
	StateDir            string
	HeartbeatInterval   time.Duration
	HeartbeatThreshold  int
	QuorumCheckInterval time.Duration
	// Credentials are the node's stream credentials, loaded from
	// ca_bundle, node_cert and node_key; nil when none is set (Streams).
	Credentials *stream.Credentials
	// StreamPort is stream_port, or Port when it is not set.
	StreamPort int
	// Resmon is resmon as given; its StateDir defaulted.
	Resmon Resmon
}

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

// Defaults for the timing fields.
const (
	DefaultHeartbeatInterval   = 100 * time.Millisecond
	DefaultHeartbeatThreshold  = 5
	DefaultQuorumCheckInterval = time.Second
)

// Options change what Load checks.
type Options struct {
	// InterfaceExists reports whether a network interface exists; nil uses
	// net.InterfaceByName.
	InterfaceExists func(name string) error
}

// Load reads, parses and validates the file at path.
func Load(path string, o Options) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c, err := f.Validate(o)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes the JSON; unknown fields and trailing data are errors.
func Parse(b []byte) (*File, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrInvalid)
	}
	return &f, nil
}

// Marshal encodes the file as Parse reads it (indented JSON, a final
// newline).
func (f *File) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("config: encode: %w", err)
	}
	return append(b, '\n'), nil
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

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// Validate checks every field and returns the parsed configuration. It
// reads key_file and checks that the interfaces exist.
func (f *File) Validate(o Options) (*Config, error) {
	c := &Config{Cluster: f.Cluster, NodeID: f.NodeID, Port: f.Port, Quorum: f.Quorum, AdminSocket: f.AdminSocket,
		StateDir: cmpOr(f.StateDir, DefaultStateDir)}
	if !filepath.IsAbs(c.StateDir) {
		return nil, invalid("state_dir", "%q is not an absolute path", f.StateDir)
	}
	c.Resmon = f.Resmon
	for _, p := range []struct{ field, v string }{{"resmon.watchdog", f.Resmon.Watchdog}, {"resmon.state_dir", f.Resmon.StateDir}} {
		if p.v != "" && !filepath.IsAbs(p.v) {
			return nil, invalid(p.field, "%q is not an absolute path", p.v)
		}
	}
	if c.Resmon.StateDir == "" {
		c.Resmon.StateDir = fmt.Sprintf("/run/wolfpack/resmon-%s-node%d", f.Cluster, f.NodeID)
	}
	if f.Cluster == "" {
		return nil, invalid("cluster", "missing")
	}
	tag, err := strconv.ParseUint(strings.TrimPrefix(f.ClusterTag, "0x"), 16, 32)
	if err != nil || len(strings.TrimPrefix(f.ClusterTag, "0x")) != 8 || tag == 0 {
		return nil, invalid("cluster_tag", "%q is not 8 hex digits (4 bytes, non-zero)", f.ClusterTag)
	}
	c.ClusterTag = uint32(tag)
	if f.KeyFile == "" {
		return nil, invalid("key_file", "missing")
	}
	kb, err := os.ReadFile(f.KeyFile)
	if err != nil {
		return nil, invalid("key_file", "%v", err)
	}
	c.Key, err = hex.DecodeString(strings.TrimSpace(string(kb)))
	if err != nil {
		return nil, invalid("key_file", "%s does not hold hex: %v", f.KeyFile, err)
	}
	if len(c.Key) < MinKeyLen {
		return nil, invalid("key_file", "%s holds %d bytes, want at least %d", f.KeyFile, len(c.Key), MinKeyLen)
	}
	if len(f.Networks) == 0 || len(f.Networks) > 8 {
		return nil, invalid("networks", "%d networks, want 1..8", len(f.Networks))
	}
	exists := o.InterfaceExists
	if exists == nil {
		exists = func(name string) error { _, err := net.InterfaceByName(name); return err }
	}
	names := map[string]bool{}
	for k, n := range f.Networks {
		field := fmt.Sprintf("networks[%d]", k)
		if n.Name == "" {
			return nil, invalid(field+".name", "missing")
		}
		if names[n.Name] {
			return nil, invalid(field+".name", "%q used twice", n.Name)
		}
		names[n.Name] = true
		if n.Interface != "" {
			if err := exists(n.Interface); err != nil {
				return nil, invalid(field+".interface", "%q: %v", n.Interface, err)
			}
		}
	}
	c.Networks = f.Networks
	if len(f.Nodes) == 0 {
		return nil, invalid("nodes", "missing")
	}
	ids, nodeNames := map[int]bool{}, map[string]bool{}
	addrs := map[netip.Addr]string{}
	for i, n := range f.Nodes {
		field := fmt.Sprintf("nodes[%d]", i)
		if n.ID < 1 || n.ID > 64 {
			return nil, invalid(field+".id", "%d, want 1..64", n.ID)
		}
		if ids[n.ID] {
			return nil, invalid(field+".id", "%d used twice", n.ID)
		}
		ids[n.ID] = true
		if n.Name == "" {
			return nil, invalid(field+".name", "missing")
		}
		if nodeNames[n.Name] {
			return nil, invalid(field+".name", "%q used twice", n.Name)
		}
		nodeNames[n.Name] = true
		if len(n.Addrs) != len(f.Networks) {
			return nil, invalid(field+".addrs", "%d addresses for %d networks (one per network, in order)", len(n.Addrs), len(f.Networks))
		}
		p := ParsedNode{ID: n.ID, Name: n.Name}
		for k, s := range n.Addrs {
			af := fmt.Sprintf("%s.addrs[%d]", field, k)
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, invalid(af, "%v", err)
			}
			if a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
				return nil, invalid(af, "%s is not a unicast address", s)
			}
			if prev, dup := addrs[a]; dup {
				return nil, invalid(af, "%s is also %s", s, prev)
			}
			addrs[a] = af
			p.Addrs = append(p.Addrs, a)
		}
		c.Nodes = append(c.Nodes, p)
	}
	if !ids[f.NodeID] {
		return nil, invalid("node_id", "%d is not in nodes", f.NodeID)
	}
	if f.Port < 1 || f.Port > 65535 {
		return nil, invalid("port", "%d, want 1..65535", f.Port)
	}
	switch {
	case f.Quorum.Device == "":
		return nil, invalid("quorum.device", "missing")
	case strings.HasPrefix(f.Quorum.Device, "iscsi://"):
		if f.Quorum.InitiatorName == "" {
			return nil, invalid("quorum.initiator_name", "required for an iscsi:// device (each node needs its own)")
		}
	case strings.HasPrefix(f.Quorum.Device, "/dev/"):
		if f.Quorum.InitiatorName != "" {
			return nil, invalid("quorum.initiator_name", "only for iscsi:// devices")
		}
	default:
		return nil, invalid("quorum.device", "%q: want iscsi://host[:port]/target-iqn/lun, /dev/sdX or /dev/sgN", f.Quorum.Device)
	}
	if c.HeartbeatInterval, err = duration(f.Timing.HeartbeatInterval, DefaultHeartbeatInterval, 10*time.Millisecond, 10*time.Second); err != nil {
		return nil, invalid("timing.heartbeat_interval", "%v", err)
	}
	c.HeartbeatThreshold = f.Timing.HeartbeatThreshold
	if c.HeartbeatThreshold == 0 {
		c.HeartbeatThreshold = DefaultHeartbeatThreshold
	}
	if c.HeartbeatThreshold < 2 || c.HeartbeatThreshold > 100 {
		return nil, invalid("timing.heartbeat_threshold", "%d, want 2..100", c.HeartbeatThreshold)
	}
	if c.QuorumCheckInterval, err = duration(f.Timing.QuorumCheckInterval, DefaultQuorumCheckInterval, 100*time.Millisecond, time.Minute); err != nil {
		return nil, invalid("timing.quorum_check_interval", "%v", err)
	}
	if err := f.validateStreams(c); err != nil {
		return nil, err
	}
	return c, nil
}

// validateStreams checks stream_port and, when the stream files are set,
// loads them (stream.LoadCredentials: every error names the file).
func (f *File) validateStreams(c *Config) error {
	c.StreamPort = f.StreamPort
	if c.StreamPort == 0 {
		c.StreamPort = f.Port
	}
	if f.StreamPort < 0 || f.StreamPort > 65535 {
		return invalid("stream_port", "%d, want 1..65535 (or leave it out: the port of \"port\")", f.StreamPort)
	}
	files := []struct{ field, path string }{{"ca_bundle", f.CABundle}, {"node_cert", f.NodeCert}, {"node_key", f.NodeKey}}
	var set, unset []string
	for _, x := range files {
		if x.path != "" {
			set = append(set, x.field)
		} else {
			unset = append(unset, x.field)
		}
	}
	switch {
	case len(set) == 0:
		return nil
	case len(unset) > 0:
		return invalid(unset[0], "missing: %s set, and streams need all three of ca_bundle, node_cert and node_key (or none)", strings.Join(set, " and "))
	}
	if err := stream.CheckClusterName(f.Cluster); err != nil {
		return invalid("cluster", "%v (it names the cluster in the stream certificates)", err)
	}
	for _, x := range files {
		if _, err := os.Stat(x.path); err != nil {
			return invalid(x.field, "%v", err)
		}
	}
	creds, err := stream.LoadCredentials(f.Cluster, nodes.ID(f.NodeID), f.CABundle, f.NodeCert, f.NodeKey)
	if err != nil {
		return invalid("ca_bundle, node_cert, node_key", "%v", err)
	}
	c.Credentials = creds
	return nil
}

func duration(s string, def, lo, hi time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d < lo || d > hi {
		return 0, fmt.Errorf("%v, want %v..%v", d, lo, hi)
	}
	return d, nil
}
