package clustercli

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/config"
	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/internal/stream"
	"github.com/wolfpack-ha/wolfpack/quorumdisk"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi"
)

const createUsage = `usage: cluster create NAME --node SELF --quorum DEVICE --network NET=IFACE [--network ...]
                      NODE=ADDR[,ADDR...] NODE=ADDR[,ADDR...] [flags]

Makes a new cluster on this node, the first (docs/install.md): writes this
node's files under --etc, formats the quorum LUN, and writes the join
bundle that 'cluster join' reads on every other node. Run it once, on one
node; clusterd is not started.

  NAME                 the cluster's name (letters, digits, '-', '_', '.')
  NODE=ADDR[,ADDR...]  every node of the cluster, this one too, in the order
                       of their ids (the first is node 1): its name and its
                       address on each private network, in the order of
                       --network
  --node SELF          which of the nodes this is
  --quorum DEVICE      the quorum LUN as this node sees it: /dev/sdX, /dev/sgN
                       or iscsi://host[:port]/target-iqn/lun
  --network NET=IFACE  a private network (1 to 8, in order): its name and this
                       node's interface on it; the streams use the first

flags:
  --initiator-name IQN  this node's iSCSI name, for an iscsi:// DEVICE (default:
                        InitiatorName in /etc/iscsi/initiatorname.iscsi, else
                        iqn.2024-01.dev.wolfpack:<hostname>)
  --port N              the UDP port of heartbeats and regroup and the TCP port
                        of the streams, on every node (default 7400)
  --timing PROFILE      default or fast (docs/clusterd.md, "Timing profiles")
  --etc DIR             where the node's files go (default /etc/wolfpack)
  --bundle FILE         the join bundle (default DIR/join-NAME.bundle)
  --force               overwrite this node's files and the bundle, and format
                        a LUN that holds a quorum disk, a partition table or a
                        filesystem

Writes DIR/node.toml (checked as 'clusterd --check-config' does),
DIR/cluster.key (the cluster secret, mode 0600), DIR/ca.pem (the cluster
CA's certificate), DIR/node.pem and DIR/node.key (this node's stream
certificate, mode 0600) and the bundle (mode 0600: it holds the cluster
secret and the CA's key; keep it as safe as the nodes' root accounts).
Refuses, naming them, to overwrite files that exist unless --force.
`

const joinUsage = `usage: cluster join BUNDLE --node NAME [flags]

Writes this node's files from the join bundle that 'cluster create' wrote
on the first node (docs/install.md): the node file, the cluster secret, the
CA's certificate and a stream certificate for NAME, issued here with the
CA's key in the bundle (the key itself is not kept). Then start clusterd
(systemctl enable --now clusterd).

  BUNDLE       the join bundle, copied from the first node
  --node NAME  which of the bundle's nodes this is

flags:
  --network NET=IFACE   this node's interface on a network, when it is not the
                        first node's (the bundle has the first node's names)
  --quorum DEVICE       the quorum LUN as this node sees it, when its name here
                        is not the first node's
  --initiator-name IQN  this node's iSCSI name, for an iscsi:// quorum LUN
                        (default as for 'cluster create')
  --etc DIR             where the files go (default /etc/wolfpack)
  --force               overwrite this node's files (a node joining again)
`

// bundleFormat names the join bundle's format; join refuses others.
const bundleFormat = "wolfpack-join-bundle/1"

// joinBundle is what 'cluster create' hands the other nodes: the shared
// part of the node file (node_id 0, no paths of this node's files, the
// first node's interface names), the cluster secret, and the CA that
// issues their stream certificates.
type joinBundle struct {
	Format     string `json:"format"`
	Created    string `json:"created"`
	NodeFile   string `json:"node_file"`
	ClusterKey string `json:"cluster_key"`
	CACert     string `json:"ca_cert"`
	CAKey      string `json:"ca_key"`
}

// nodeFiles are the paths of one node's files under the etc directory.
type nodeFiles struct{ dir, nodeFile, key, ca, cert, certKey string }

func filesIn(dir string) nodeFiles {
	abs, err := filepath.Abs(dir)
	if err == nil {
		dir = abs
	}
	return nodeFiles{dir: dir, nodeFile: filepath.Join(dir, "node.toml"), key: filepath.Join(dir, "cluster.key"),
		ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "node.pem"), certKey: filepath.Join(dir, "node.key")}
}

func (f nodeFiles) all() []string { return []string{f.nodeFile, f.key, f.ca, f.cert, f.certKey} }

// netFlag collects --network NET=IFACE in order.
type netFlag [][2]string

func (n *netFlag) String() string { return fmt.Sprint(*n) }
func (n *netFlag) Set(s string) error {
	name, ifc, ok := strings.Cut(s, "=")
	if !ok || name == "" || ifc == "" {
		return fmt.Errorf("%q: want NET=IFACE (priv1=eth1)", s)
	}
	*n = append(*n, [2]string{name, ifc})
	return nil
}

// setupCommon are the flags create and join share.
type setupCommon struct {
	node, quorum, initiator, etc string
	nets                         netFlag
	force                        bool
}

// setupFlags is a flag set that prints nothing itself, with the flags
// create and join share.
func setupFlags(name string) (*flag.FlagSet, *setupCommon) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var c setupCommon
	fs.StringVar(&c.node, "node", "", "")
	fs.StringVar(&c.quorum, "quorum", "", "")
	fs.Var(&c.nets, "network", "")
	fs.StringVar(&c.initiator, "initiator-name", "", "")
	fs.StringVar(&c.etc, "etc", "/etc/wolfpack", "")
	fs.BoolVar(&c.force, "force", false, "")
	return fs, &c
}

// parseSetup parses create's or join's command line; on -h it prints
// usage to stdout and returns help = true.
func parseSetup(fs *flag.FlagSet, args []string, usage string, stdout io.Writer) (pos []string, help bool, err error) {
	pos, err = parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return nil, true, nil
	}
	if err != nil {
		return nil, false, usagef("%s: %v (cluster %s -h for the usage)", fs.Name(), err, fs.Name())
	}
	return pos, false, nil
}

func runCreate(ctx context.Context, args []string, stdout io.Writer, open opener) error {
	fs, c := setupFlags("create")
	self, quorum, initiator, etc, force := &c.node, &c.quorum, &c.initiator, &c.etc, &c.force
	port := fs.Int("port", 7400, "")
	timing := fs.String("timing", config.DefaultProfile, "")
	bundlePath := fs.String("bundle", "", "")
	pos, help, err := parseSetup(fs, args, createUsage, stdout)
	if help || err != nil {
		return err
	}
	nets := c.nets
	if len(pos) == 0 {
		return usagef("create: missing the cluster's NAME (cluster create -h for the usage)")
	}
	name := pos[0]
	if err := stream.CheckClusterName(name); err != nil {
		return usagef("create: cluster name: %v", err)
	}
	var missing []string
	for _, f := range [][2]string{{"node", *self}, {"quorum", *quorum}} {
		if f[1] == "" {
			missing = append(missing, "--"+f[0])
		}
	}
	if len(nets) == 0 {
		missing = append(missing, "--network")
	}
	if len(missing) > 0 {
		return usagef("create: missing %s (cluster create -h for the usage)", strings.Join(missing, ", "))
	}
	if _, ok := config.Profiles[*timing]; !ok {
		return usagef("create: --timing %q: want one of %s", *timing, strings.Join(config.ProfileNames(), ", "))
	}
	if *port < 1 || *port > 65535 {
		return usagef("create: --port %d: want 1..65535", *port)
	}
	members, err := parseMembersArgs(pos[1:], len(nets))
	if err != nil {
		return usagef("create: %v", err)
	}
	id := slices.IndexFunc(members, func(n config.Node) bool { return n.Name == *self }) + 1
	if id == 0 {
		return usagef("create: --node %s is not one of the nodes given (%s)", *self, nodeNames(members))
	}
	f := &config.File{
		AdminSocket: "/run/wolfpack/clusterd.sock",
		Cluster:     config.Cluster{Name: name, Tag: "", Port: *port},
		Quorum:      config.Quorum{Device: *quorum},
		Timing:      config.Timing{Profile: *timing},
		Nodes:       members,
	}
	for _, n := range nets {
		f.Networks = append(f.Networks, config.Network{Name: n[0], Interface: n[1]})
	}
	var tag [4]byte
	for binary.BigEndian.Uint32(tag[:]) == 0 {
		if _, err := rand.Read(tag[:]); err != nil {
			return fmt.Errorf("create: cluster tag: %w", err)
		}
	}
	f.Cluster.Tag = hex.EncodeToString(tag[:])
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return fmt.Errorf("create: cluster secret: %w", err)
	}
	ca, err := stream.NewCA(name, stream.DefaultCAValidity)
	if err != nil {
		return fmt.Errorf("create: cluster CA: %w", err)
	}
	files := filesIn(*etc)
	if *bundlePath == "" {
		*bundlePath = filepath.Join(files.dir, "join-"+name+".bundle")
	}
	if err := refuseFiles("create", *force, append(files.all(), *bundlePath)...); err != nil {
		return err
	}

	// The shared part goes into the bundle before this node's own keys
	// are set; it is checked below as part of this node's file.
	shared := *f
	shared.Networks = slices.Clone(f.Networks)
	b, err := shared.Marshal()
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	caKey, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return fmt.Errorf("create: cluster CA key: %w", err)
	}
	bundle := joinBundle{Format: bundleFormat, Created: time.Now().UTC().Format(time.RFC3339), NodeFile: string(b),
		ClusterKey: hex.EncodeToString(secret),
		CACert:     string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})),
		CAKey:      string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: caKey}))}

	initName, err := initiatorFor(*quorum, *initiator)
	if err != nil {
		return usagef("create: %v", err)
	}
	f.Quorum.InitiatorName = initName
	staged, err := stageNode(f, id, files, secret, ca)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	defer os.RemoveAll(staged.dir)

	// The LUN is formatted only once the node's files are known good,
	// and the files are installed only once it is formatted.
	fr, err := formatForCreate(ctx, open, *quorum, initName, tag, *force)
	if err != nil {
		return fmt.Errorf("create: quorum LUN %s: %w", *quorum, err)
	}
	if err := staged.install(files); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	bb, err := json.MarshalIndent(bundle, "", "  ")
	if err != nil {
		return fmt.Errorf("create: bundle: %w", err)
	}
	if err := writeFileAtomic(*bundlePath, append(bb, '\n'), 0o600); err != nil {
		return fmt.Errorf("create: bundle: %w", err)
	}
	fmt.Fprintf(stdout, "cluster %s (tag %s): %d nodes, networks %s, quorum LUN %s\n", name, f.Cluster.Tag, len(members),
		strings.Join(netNames(f.Networks), ", "), *quorum)
	fmt.Fprint(stdout, fr.human(*quorum))
	printWritten(stdout, f.Nodes[id-1].Name, id, files)
	fmt.Fprintf(stdout, "  %s  the join bundle (mode 0600: the cluster secret and the CA's key)\n", *bundlePath)
	fmt.Fprintf(stdout, "next:\n")
	fmt.Fprintf(stdout, "  systemctl enable --now clusterd     # here, then 'cluster status'\n")
	for _, n := range members {
		if n.Name != *self {
			fmt.Fprintf(stdout, "  scp %s %s:%s\n", *bundlePath, n.Name, *bundlePath)
			fmt.Fprintf(stdout, "  on %s: cluster join %s --node %s, then systemctl enable --now clusterd\n", n.Name, *bundlePath, n.Name)
		}
	}
	return nil
}

func runJoin(args []string, stdout io.Writer) error {
	fs, c := setupFlags("join")
	self, quorum, initiator, etc, force := &c.node, &c.quorum, &c.initiator, &c.etc, &c.force
	pos, help, err := parseSetup(fs, args, joinUsage, stdout)
	if help || err != nil {
		return err
	}
	nets := c.nets
	if len(pos) != 1 {
		return usagef("join: want one BUNDLE, got %d arguments (cluster join -h for the usage)", len(pos))
	}
	if *self == "" {
		return usagef("join: missing --node (cluster join -h for the usage)")
	}
	bundle, f, err := readBundle(pos[0])
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	id := slices.IndexFunc(f.Nodes, func(n config.Node) bool { return n.Name == *self }) + 1
	if id == 0 {
		return usagef("join: --node %s is not a node of cluster %s (%s)", *self, f.Cluster.Name, nodeNames(f.Nodes))
	}
	for _, n := range nets {
		k := slices.IndexFunc(f.Networks, func(c config.Network) bool { return c.Name == n[0] })
		if k < 0 {
			return usagef("join: --network %s=%s: cluster %s has no network %s (%s)", n[0], n[1], f.Cluster.Name, n[0],
				strings.Join(netNames(f.Networks), ", "))
		}
		f.Networks[k].Interface = n[1]
	}
	if *quorum != "" {
		f.Quorum.Device = *quorum
	}
	if f.Quorum.InitiatorName, err = initiatorFor(f.Quorum.Device, *initiator); err != nil {
		return usagef("join: %v", err)
	}
	secret, err := hex.DecodeString(bundle.ClusterKey)
	if err != nil {
		return fmt.Errorf("join: %s: cluster_key: %w", pos[0], err)
	}
	files := filesIn(*etc)
	if err := refuseFiles("join", *force, files.all()...); err != nil {
		return err
	}
	ca, err := bundleCA(files.dir, bundle)
	if err != nil {
		return fmt.Errorf("join: %s: %w", pos[0], err)
	}
	if ca.Cluster != f.Cluster.Name {
		return fmt.Errorf("join: %s: the CA is cluster %s's, the node file cluster %s's", pos[0], ca.Cluster, f.Cluster.Name)
	}
	staged, err := stageNode(f, id, files, secret, ca)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	defer os.RemoveAll(staged.dir)
	if err := staged.install(files); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	fmt.Fprintf(stdout, "cluster %s (tag %s): this is node %d of %d, quorum LUN %s\n", f.Cluster.Name, f.Cluster.Tag, id, len(f.Nodes), f.Quorum.Device)
	printWritten(stdout, *self, id, files)
	fmt.Fprintf(stdout, "next:\n  systemctl enable --now clusterd     # then 'cluster status': %s joins the cluster\n", *self)
	return nil
}

func printWritten(w io.Writer, name string, id int, files nodeFiles) {
	fmt.Fprintf(w, "wrote:\n")
	fmt.Fprintf(w, "  %s  node %d (%s)'s node file\n", files.nodeFile, id, name)
	fmt.Fprintf(w, "  %s  the cluster secret (mode 0600)\n", files.key)
	fmt.Fprintf(w, "  %s  the cluster CA's certificate\n", files.ca)
	fmt.Fprintf(w, "  %s, %s  node %d's stream certificate and key (mode 0600)\n", files.cert, files.certKey, id)
}

// parseMembersArgs reads NODE=ADDR[,ADDR...] arguments: node k+1 is the
// k-th, with one address per network.
func parseMembersArgs(args []string, networks int) ([]config.Node, error) {
	if len(args) == 0 {
		return nil, errors.New("no nodes: give every node as NODE=ADDR[,ADDR...] (cluster create -h for the usage)")
	}
	if len(args) > nodes.Max {
		return nil, fmt.Errorf("%d nodes, at most %d", len(args), nodes.Max)
	}
	var out []config.Node
	for i, a := range args {
		name, addrs, ok := strings.Cut(a, "=")
		if !ok || name == "" || addrs == "" {
			return nil, fmt.Errorf("%q: want NODE=ADDR[,ADDR...] (node2=10.0.1.12,10.0.2.12)", a)
		}
		n := config.Node{ID: i + 1, Name: name, Addrs: strings.Split(addrs, ",")}
		if len(n.Addrs) != networks {
			return nil, fmt.Errorf("%s: %d addresses for %d networks (one per --network, in their order)", name, len(n.Addrs), networks)
		}
		out = append(out, n)
	}
	return out, nil
}

func nodeNames(ns []config.Node) string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Name)
	}
	return strings.Join(s, ", ")
}

func netNames(ns []config.Network) []string {
	var s []string
	for _, n := range ns {
		s = append(s, n.Name)
	}
	return s
}

// initiatorFor is the node file's quorum.initiator_name for device: the
// given name or the host's default for iscsi://, none for /dev/.
func initiatorFor(device, given string) (string, error) {
	if !isISCSIAddr(device) {
		if given != "" {
			return "", fmt.Errorf("--initiator-name is for an iscsi:// quorum LUN, not %s", device)
		}
		return "", nil
	}
	if given == "" {
		return defaultInitiatorName(), nil
	}
	if err := iscsi.ValidateName(given); err != nil {
		return "", fmt.Errorf("--initiator-name: %w", err)
	}
	return given, nil
}

// refuseFiles fails (exit 3), naming them, if any of paths exists and
// not force.
func refuseFiles(action string, force bool, paths ...string) error {
	there, err := existing(force, paths)
	if err != nil {
		return fmt.Errorf("%s: %w", action, err)
	}
	if len(there) > 0 {
		return statusError{3, fmt.Errorf("%s: refusing to overwrite %s (this node already has a cluster's files; --force replaces them)",
			action, strings.Join(there, ", "))}
	}
	return nil
}

// staged is a node's files written in a directory beside their place and
// checked there, not yet installed.
type staged struct {
	dir   string
	files nodeFiles
}

// stageNode writes node id's files into a new directory under the etc
// directory, checks the node file as clusterd --check-config does (with
// its paths pointing there) and returns them, to be installed.
func stageNode(f *config.File, id int, files nodeFiles, secret []byte, ca *stream.CA) (*staged, error) {
	if err := os.MkdirAll(files.dir, 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(files.dir, ".staged-")
	if err != nil {
		return nil, err
	}
	s := &staged{dir: dir, files: filesIn(dir)}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	f.NodeID = id
	if err := os.WriteFile(s.files.key, []byte(hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		return nil, err
	}
	ident, err := ca.Issue(nodes.ID(id), stream.DefaultNodeValidity)
	if err != nil {
		return nil, fmt.Errorf("node %d's certificate: %w", id, err)
	}
	if err := ident.Save(s.files.cert, s.files.certKey); err != nil {
		return nil, err
	}
	if err := stream.WritePEM(s.files.ca, ca.Cert, "", nil); err != nil {
		return nil, err
	}
	point := func(f *config.File, at nodeFiles) {
		f.Cluster.KeyFile = at.key
		f.Streams = config.Streams{CABundle: at.ca, NodeCert: at.cert, NodeKey: at.certKey}
	}
	point(f, s.files)
	if _, err := f.Validate(config.Options{}); err != nil {
		return nil, fmt.Errorf("the node file for node %d would not be valid:\n%w", id, err)
	}
	point(f, files)
	if err := f.WriteFile(s.files.nodeFile); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// install renames the staged files into place, the node file last, so a
// node file is never there without what it names.
func (s *staged) install(to nodeFiles) error {
	from, dst := s.files.all(), to.all()
	for i := len(from) - 1; i >= 0; i-- {
		if err := os.Rename(from[i], dst[i]); err != nil {
			return fmt.Errorf("install %s: %w", dst[i], err)
		}
	}
	return nil
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	os.Remove(tmp) // a leftover would keep its mode
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// formatForCreate formats the quorum LUN for the cluster's tag; without
// force it refuses a LUN holding anything (a quorum disk of this or
// another cluster, a partition table, a filesystem).
func formatForCreate(ctx context.Context, open opener, dev, initiator string, tag [4]byte, force bool) (formatResult, error) {
	d, err := open(dev)
	if err != nil {
		return formatResult{}, err
	}
	defer d.Close()
	if id, ok := d.(*iscsiDevice); ok && initiator != "" {
		id.setInitiatorName(initiator)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := formatQuorum(ctx, d, quorumdisk.FormatOptions{ClusterTag: binary.BigEndian.Uint32(tag[:]), Force: force})
	if err != nil {
		if errors.Is(err, quorumdisk.ErrInUse) {
			return formatResult{}, statusError{3, fmt.Errorf("%w; cluster create --force formats it", errors.Unwrap(err))}
		}
		return formatResult{}, err
	}
	return r.(formatResult), nil
}

// readBundle reads a join bundle and the shared node file in it.
func readBundle(path string) (*joinBundle, *config.File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read the bundle: %w", err)
	}
	var jb joinBundle
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&jb); err != nil {
		return nil, nil, fmt.Errorf("%s: not a join bundle (%v)", path, err)
	}
	if jb.Format != bundleFormat {
		return nil, nil, fmt.Errorf("%s: format %q, want %q (a bundle from 'cluster create')", path, jb.Format, bundleFormat)
	}
	f, err := config.Parse([]byte(jb.NodeFile))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: node_file: %w", path, err)
	}
	return &jb, f, nil
}

// bundleCA loads the bundle's CA through a private directory under dir,
// removed at once: the CA's key is not kept on the node.
func bundleCA(dir string, jb *joinBundle) (*stream.CA, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(dir, ".ca-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	cert, key := filepath.Join(tmp, "ca.pem"), filepath.Join(tmp, "ca.key")
	if err := os.WriteFile(cert, []byte(jb.CACert), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(key, []byte(jb.CAKey), 0o600); err != nil {
		return nil, err
	}
	ca, err := stream.LoadCA(cert, key)
	if err != nil {
		return nil, fmt.Errorf("the bundle's CA: %w", err)
	}
	return ca, nil
}
