package clustercli

import (
	"crypto"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/internal/nodes"
	"github.com/wolfpack-ha/wolfpack/internal/stream"
)

const caUsage = `usage: cluster ca <action> [flags]

The cluster CA and the node certificates of the TLS streams between nodes
(docs/streams.md). Make the CA once, issue one certificate per node, and
keep the CA's key off the nodes.

actions:
  init    --cluster NAME --out DIR [--validity 87600h] [--force]: make the
          cluster's CA; writes DIR/ca.pem and DIR/ca.key (mode 0600)
  issue   --ca DIR --node N --out DIR [--validity 8760h] [--force]: a key and
          a certificate for node N, signed by the CA in DIR (ca.pem, ca.key),
          never valid past the CA; writes DIR/node.pem and DIR/node.key
          (mode 0600), and the CA's certificate as DIR/ca.pem (the bundle)
          unless a bundle is there; an existing bundle must trust the CA
  check   --cluster NAME --node N --bundle F --cert F --key F: load a node's
          files as clusterd does (config's ca_bundle, node_cert, node_key);
          print the node, the issuer and the expiry, or what is wrong

  client  --ca DIR --name NAME --role operator|read-only --out DIR
          [--validity 8760h] [--force]: a key and a certificate of the admin
          API on TCP (docs/clusterd.md, "The remote admin API") for NAME
          (its subject's CN) with ROLE (its O); writes DIR/NAME.pem,
          DIR/NAME.key (mode 0600) and the CA's certificate as DIR/ca.pem
          unless a file is there
  server  --ca DIR --host H[,H...] --out DIR [--validity 8760h] [--force]:
          the admin API's server certificate for the host names and IP
          addresses clients dial; writes DIR/api.pem, DIR/api.key (mode
          0600) and DIR/ca.pem unless a file is there

init, issue, client and server refuse to overwrite existing files, naming
them, unless --force; they create DIR (mode 0700) if it does not exist.
`

func runCA(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, caUsage)
		return usagef("ca: missing action")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, caUsage)
		return nil
	case "init":
		return caInit(args[1:], stdout)
	case "issue":
		return caIssue(args[1:], stdout)
	case "check":
		return caCheck(args[1:], stdout)
	case "client", "server":
		return caAPICert(args[0], args[1:], stdout)
	}
	fmt.Fprint(stderr, caUsage)
	return usagef("ca: unknown action %q", args[0])
}

// caFlags is a flag set that prints nothing itself: parseCAFlags does.
func caFlags(action string) *flag.FlagSet {
	fs := flag.NewFlagSet("ca "+action, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseCAFlags parses an action's flags; on -h it prints the usage to
// stdout and returns help = true (the action then does nothing).
func parseCAFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (help bool, err error) {
	err = fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, caUsage)
		return true, nil
	case err != nil:
		return false, usagef("%s: %v (cluster ca -h for the usage)", fs.Name(), err)
	case fs.NArg() > 0:
		return false, usagef("%s: unexpected argument %q (every value is a flag)", fs.Name(), fs.Arg(0))
	}
	return false, nil
}

// required returns a usage error naming the flags left empty.
func required(action string, flags ...[2]string) error {
	var missing []string
	for _, f := range flags {
		if f[1] == "" {
			missing = append(missing, "--"+f[0])
		}
	}
	if len(missing) > 0 {
		return usagef("ca %s: missing %s", action, strings.Join(missing, ", "))
	}
	return nil
}

func checkNode(action string, n uint) error {
	if !nodes.ID(n).Valid() {
		return usagef("ca %s: --node %d: want a node id 1..%d", action, n, nodes.Max)
	}
	return nil
}

// refuseOverwrite fails, naming them, if any of paths exists.
func refuseOverwrite(action string, force bool, paths ...string) error {
	there, err := existing(force, paths)
	if err != nil {
		return fmt.Errorf("ca %s: %w", action, err)
	}
	if len(there) > 0 {
		return fmt.Errorf("ca %s: refusing to overwrite %s (--force replaces them)", action, strings.Join(there, ", "))
	}
	return nil
}

// existing returns those of paths that exist; none when force.
func existing(force bool, paths []string) ([]string, error) {
	if force {
		return nil, nil
	}
	var there []string
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			there = append(there, p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return there, nil
}

// savePEM writes the certificate and, if key is not nil, its key under
// temporary names beside them and then renames them into place, so a
// failed write leaves the files that were there.
func savePEM(certPath string, cert *x509.Certificate, keyPath string, key crypto.Signer) error {
	tmpCert, tmpKey := certPath+".tmp", ""
	if key != nil {
		tmpKey = keyPath + ".tmp"
	}
	cleanup := func() {
		os.Remove(tmpCert)
		if tmpKey != "" {
			os.Remove(tmpKey)
		}
	}
	cleanup() // a leftover would keep its mode
	if err := stream.WritePEM(tmpCert, cert, tmpKey, key); err != nil {
		cleanup()
		return err
	}
	if key != nil {
		if err := os.Rename(tmpKey, keyPath); err != nil {
			cleanup()
			return err
		}
	}
	if err := os.Rename(tmpCert, certPath); err != nil {
		cleanup()
		return err
	}
	return nil
}

func cas1(n int) string {
	if n == 1 {
		return "1 CA"
	}
	return fmt.Sprintf("%d CAs", n)
}

func expiry(c *x509.Certificate) string {
	days := time.Until(c.NotAfter).Round(24*time.Hour) / (24 * time.Hour)
	return fmt.Sprintf("%s (in %d days)", c.NotAfter.UTC().Format(time.RFC3339), days)
}

func caInit(args []string, stdout io.Writer) error {
	fs := caFlags("init")
	cluster := fs.String("cluster", "", "")
	out := fs.String("out", "", "")
	validity := fs.Duration("validity", stream.DefaultCAValidity, "")
	force := fs.Bool("force", false, "")
	if help, err := parseCAFlags(fs, args, stdout); help || err != nil {
		return err
	}
	if err := required("init", [2]string{"cluster", *cluster}, [2]string{"out", *out}); err != nil {
		return err
	}
	if err := stream.CheckClusterName(*cluster); err != nil {
		return usagef("ca init: --cluster: %v", err)
	}
	if *validity <= 0 {
		return usagef("ca init: --validity %v: want a positive duration", *validity)
	}
	certPath, keyPath := filepath.Join(*out, "ca.pem"), filepath.Join(*out, "ca.key")
	if err := refuseOverwrite("init", *force, certPath, keyPath); err != nil {
		return err
	}
	ca, err := stream.NewCA(*cluster, *validity)
	if err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	if err := savePEM(certPath, ca.Cert, keyPath, ca.Key); err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	fmt.Fprintf(stdout, "CA of cluster %s: certificate %s, key %s\n", *cluster, certPath, keyPath)
	fmt.Fprintf(stdout, "expires %s\n", expiry(ca.Cert))
	fmt.Fprintf(stdout, "keep %s off the nodes; issue each node's certificate with 'cluster ca issue --ca %s'\n", keyPath, *out)
	return nil
}

func caIssue(args []string, stdout io.Writer) error {
	fs := caFlags("issue")
	caDir := fs.String("ca", "", "")
	node := fs.Uint("node", 0, "")
	out := fs.String("out", "", "")
	validity := fs.Duration("validity", stream.DefaultNodeValidity, "")
	force := fs.Bool("force", false, "")
	if help, err := parseCAFlags(fs, args, stdout); help || err != nil {
		return err
	}
	if err := required("issue", [2]string{"ca", *caDir}, [2]string{"out", *out}); err != nil {
		return err
	}
	if err := checkNode("issue", *node); err != nil {
		return err
	}
	if *validity <= 0 {
		return usagef("ca issue: --validity %v: want a positive duration", *validity)
	}
	ca, err := stream.LoadCA(filepath.Join(*caDir, "ca.pem"), filepath.Join(*caDir, "ca.key"))
	if err != nil {
		return fmt.Errorf("ca issue: %w", err)
	}
	certPath, keyPath, bundlePath := filepath.Join(*out, "node.pem"), filepath.Join(*out, "node.key"), filepath.Join(*out, "ca.pem")
	if err := refuseOverwrite("issue", *force, certPath, keyPath); err != nil {
		return err
	}
	cas := []*x509.Certificate{ca.Cert}
	writeBundle := true
	if _, err := os.Lstat(bundlePath); err == nil {
		if cas, err = stream.ReadCABundle(bundlePath); err != nil {
			return fmt.Errorf("ca issue: %w", err)
		}
		writeBundle = false
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ca issue: %w", err)
	}
	id, err := ca.Issue(nodes.ID(*node), *validity)
	if err != nil {
		return fmt.Errorf("ca issue: %w", err)
	}
	// The node must be able to load what it is given: an existing bundle
	// that does not trust this CA would make clusterd refuse to start.
	if _, err := stream.NewCredentials(ca.Cluster, nodes.ID(*node), cas, id); err != nil {
		if writeBundle {
			return fmt.Errorf("ca issue: %w", err)
		}
		return fmt.Errorf("ca issue: the bundle %s already there would not accept the new certificate: %w (add the CA's certificate %s to it: docs/streams.md, \"Rotating the CA\")",
			bundlePath, err, filepath.Join(*caDir, "ca.pem"))
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("ca issue: %w", err)
	}
	if err := savePEM(certPath, id.Cert, keyPath, id.Key); err != nil {
		return fmt.Errorf("ca issue: %w", err)
	}
	bundle := fmt.Sprintf("kept %s (%s)", bundlePath, cas1(len(cas)))
	if writeBundle {
		if err := savePEM(bundlePath, ca.Cert, "", nil); err != nil {
			return fmt.Errorf("ca issue: %w", err)
		}
		bundle = "wrote " + bundlePath + " (the CA's certificate)"
	}
	fmt.Fprintf(stdout, "node %d of cluster %s: certificate %s, key %s; %s\n", *node, ca.Cluster, certPath, keyPath, bundle)
	clamped := ""
	if id.Cert.NotAfter.Equal(ca.Cert.NotAfter) {
		clamped = ", the CA's own expiry"
	}
	fmt.Fprintf(stdout, "expires %s%s\n", expiry(id.Cert), clamped)
	return nil
}

func caCheck(args []string, stdout io.Writer) error {
	fs := caFlags("check")
	cluster := fs.String("cluster", "", "")
	node := fs.Uint("node", 0, "")
	bundle := fs.String("bundle", "", "")
	cert := fs.String("cert", "", "")
	key := fs.String("key", "", "")
	if help, err := parseCAFlags(fs, args, stdout); help || err != nil {
		return err
	}
	if err := required("check", [2]string{"cluster", *cluster}, [2]string{"bundle", *bundle}, [2]string{"cert", *cert}, [2]string{"key", *key}); err != nil {
		return err
	}
	if err := checkNode("check", *node); err != nil {
		return err
	}
	c, err := stream.LoadCredentials(*cluster, nodes.ID(*node), *bundle, *cert, *key)
	if err != nil {
		return fmt.Errorf("ca check: %w", err)
	}
	leaf := c.Certificate()
	fmt.Fprintf(stdout, "node     %d of cluster %s (%s)\n", c.Node, c.Cluster, stream.NodeURI(c.Cluster, c.Node))
	fmt.Fprintf(stdout, "issuer   %s\n", leaf.Issuer.CommonName)
	fmt.Fprintf(stdout, "expires  %s\n", expiry(leaf))
	fmt.Fprintf(stdout, "bundle   %s\n", cas1(len(c.CAs)))
	return nil
}

// caAPICert issues an admin API certificate: a client's (action "client")
// or the server's ("server").
func caAPICert(action string, args []string, stdout io.Writer) error {
	fs := caFlags(action)
	caDir := fs.String("ca", "", "")
	out := fs.String("out", "", "")
	name := fs.String("name", "", "")
	role := fs.String("role", "", "")
	hosts := fs.String("host", "", "")
	validity := fs.Duration("validity", stream.DefaultClientValidity, "")
	force := fs.Bool("force", false, "")
	if help, err := parseCAFlags(fs, args, stdout); help || err != nil {
		return err
	}
	need := [][2]string{{"ca", *caDir}, {"out", *out}}
	if action == "client" {
		need = append(need, [2]string{"name", *name}, [2]string{"role", *role})
	} else {
		need = append(need, [2]string{"host", *hosts})
	}
	if err := required(action, need...); err != nil {
		return err
	}
	base := "api"
	if action == "client" {
		if *role != "operator" && *role != "read-only" {
			return usagef("ca client: --role %q: want operator or read-only", *role)
		}
		if strings.Trim(*name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.@") != "" || strings.HasPrefix(*name, ".") {
			return usagef("ca client: --name %q: want letters, digits, '-', '_', '.', '@' (it names the files), not starting with '.'", *name)
		}
		base = *name
	} else if *name != "" || *role != "" {
		return usagef("ca server: --name and --role are for 'ca client'")
	}
	if action == "client" && *hosts != "" {
		return usagef("ca client: --host is for 'ca server'")
	}
	if *validity <= 0 {
		return usagef("ca %s: --validity %v: want a positive duration", action, *validity)
	}
	ca, err := stream.LoadCA(filepath.Join(*caDir, "ca.pem"), filepath.Join(*caDir, "ca.key"))
	if err != nil {
		return fmt.Errorf("ca %s: %w", action, err)
	}
	certPath, keyPath, bundlePath := filepath.Join(*out, base+".pem"), filepath.Join(*out, base+".key"), filepath.Join(*out, "ca.pem")
	if err := refuseOverwrite(action, *force, certPath, keyPath); err != nil {
		return err
	}
	var id *stream.Identity
	if action == "client" {
		id, err = ca.IssueClient(*name, *role, *validity)
	} else {
		id, err = ca.IssueServer(strings.Split(*hosts, ","), *validity)
	}
	if err != nil {
		return fmt.Errorf("ca %s: %w", action, err)
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return fmt.Errorf("ca %s: %w", action, err)
	}
	if err := savePEM(certPath, id.Cert, keyPath, id.Key); err != nil {
		return fmt.Errorf("ca %s: %w", action, err)
	}
	bundle := "kept " + bundlePath
	if _, err := os.Lstat(bundlePath); errors.Is(err, os.ErrNotExist) {
		if err := savePEM(bundlePath, ca.Cert, "", nil); err != nil {
			return fmt.Errorf("ca %s: %w", action, err)
		}
		bundle = "wrote " + bundlePath + " (the CA's certificate)"
	}
	what := fmt.Sprintf("admin API server %s", *hosts)
	if action == "client" {
		what = fmt.Sprintf("admin API client %s (%s)", *name, *role)
	}
	fmt.Fprintf(stdout, "%s of cluster %s: certificate %s, key %s; %s\n", what, ca.Cluster, certPath, keyPath, bundle)
	fmt.Fprintf(stdout, "expires %s\n", expiry(id.Cert))
	return nil
}
