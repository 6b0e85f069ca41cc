package clustercli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
)

const statusUsage = `usage: cluster status [--socket PATH] [--json] [--timeout D]
       cluster status --api https://HOST:PORT --ca F --cert F --key F [--json] [--timeout D]

Prints the whole cluster as one running clusterd sees it, as a tree: the
cluster (its epoch, the quorum owner and LUN), the nodes (up, down,
joining, paused; the networks each is heard on; its incarnation), the
networks (down or partly down when this node does not hear a member on
them), the groups (state, owner, a move in progress) with their resources
in dependency order (state, type, reason). Problems are highlighted: in
colour on a terminal, else marked "!" (in progress: "~"; NO_COLOR set: no
colour), and counted on the last line.

It reads GET /v1/status and the database's nodes, groups and resources on
clusterd's admin socket (default ` + defaultSocket + `), or on its admin API
on TCP with TLS (--ca verifies the server, --cert and --key are the
client's, from 'cluster ca client'). --json prints the status answer as
received (GET /v1/status).
`

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	conn := addConnFlags(fs)
	asJSON := fs.Bool("json", false, "print the daemon's JSON")
	var timeout time.Duration
	durationVar(fs, &timeout, "timeout", 5*time.Second)
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, statusUsage)
		return nil
	} else if err != nil {
		fmt.Fprint(stderr, statusUsage)
		return usagef("status: %v", err)
	}
	if fs.NArg() > 0 {
		fmt.Fprint(stderr, statusUsage)
		return usagef("status takes no arguments, got %q", fs.Args())
	}
	cl, err := conn.client("status")
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, raw, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(raw)
		return err
	}
	v := clusterView{Status: st}
	for _, k := range []struct {
		kind string
		to   *[]clusterapi.Object
	}{{"node", &v.Nodes}, {"group", &v.Groups}, {"resource", &v.Resources}} {
		l, err := cl.List(ctx, k.kind, false)
		if err != nil {
			v.DBErr = fmt.Errorf("list %ss: %w", k.kind, err)
			break
		}
		*k.to = l.Objects
	}
	return renderStatus(stdout, v, colorOK(stdout))
}

// colorOK reports whether w is a terminal and NO_COLOR is unset
// (the NO_COLOR convention).
func colorOK(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// connFlags are the flags that name the daemon to ask: --socket (default
// defaultSocket), or --api with --ca, --cert and --key.
type connFlags struct {
	socket, remote, caFile, certFile, keyFile *string
}

func addConnFlags(fs *flag.FlagSet) connFlags {
	return connFlags{
		socket:   fs.String("socket", "", "clusterd's admin socket (default "+defaultSocket+")"),
		remote:   fs.String("api", "", "clusterd's admin API on TCP, https://HOST:PORT"),
		caFile:   fs.String("ca", "", "the CA bundle that verifies the server (--api)"),
		certFile: fs.String("cert", "", "the client's certificate (--api)"),
		keyFile:  fs.String("key", "", "the client's key (--api)"),
	}
}

// set reports whether --socket or --api was given.
func (c connFlags) set() bool { return *c.socket != "" || *c.remote != "" }

// client is the client the flags name; cmd names the command in a usage
// error.
func (c connFlags) client(cmd string) (*clusterapi.Client, error) {
	if *c.socket != "" && *c.remote != "" {
		return nil, usagef("%s: --socket and --api together; give one", cmd)
	}
	socket := *c.socket
	if socket == "" && *c.remote == "" {
		socket = defaultSocket
	}
	return apiClient(socket, *c.remote, *c.caFile, *c.certFile, *c.keyFile)
}

// apiClient is a client of the admin socket, or of the admin API on TCP
// with the TLS files given.
func apiClient(socket, remote, caFile, certFile, keyFile string) (*clusterapi.Client, error) {
	if remote == "" {
		if caFile != "" || certFile != "" || keyFile != "" {
			return nil, usagef("--ca, --cert and --key are for --api")
		}
		return clusterapi.NewClient(socket), nil
	}
	if caFile == "" || certFile == "" || keyFile == "" {
		return nil, usagef("--api needs --ca, --cert and --key")
	}
	tc, err := clusterapi.ClientTLS(caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cl, err := clusterapi.NewRemoteClient(remote, tc)
	if err != nil {
		return nil, usagef("--api: %v", err)
	}
	return cl, nil
}
