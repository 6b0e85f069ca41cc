package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
)

const statusUsage = `usage: cluster status --socket PATH [--json] [--timeout D]
       cluster status --api https://HOST:PORT --ca F --cert F --key F [--json] [--timeout D]

Asks a running clusterd for its view of the cluster (GET /v1/status on its
admin socket, or on its admin API on TCP with TLS: --ca verifies the
server, --cert and --key are the client's, from 'cluster ca client') and
prints it.
`

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	socket := fs.String("socket", "", "clusterd's admin socket")
	remote := fs.String("api", "", "clusterd's admin API on TCP, https://HOST:PORT")
	caFile := fs.String("ca", "", "the CA bundle that verifies the server (--api)")
	certFile := fs.String("cert", "", "the client's certificate (--api)")
	keyFile := fs.String("key", "", "the client's key (--api)")
	asJSON := fs.Bool("json", false, "print the daemon's JSON")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the daemon")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, statusUsage)
		return nil
	} else if err != nil {
		fmt.Fprint(stderr, statusUsage)
		return usagef("status: %v", err)
	}
	if (*socket == "") == (*remote == "") || fs.NArg() > 0 {
		fmt.Fprint(stderr, statusUsage)
		return usagef("status needs one of --socket PATH or --api URL, and no arguments")
	}
	cl, err := apiClient(*socket, *remote, *caFile, *certFile, *keyFile)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	st, raw, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(raw)
		return err
	}
	return printStatus(stdout, st)
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

func intsString(v []int) string {
	if len(v) == 0 {
		return "-"
	}
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}

func printStatus(w io.Writer, st clusterapi.Status) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "node\t%d (%s)\n", st.Node, st.Name)
	state := st.State
	if st.Stage != "" && st.Stage != "stabilized" {
		state += " (regroup round " + fmt.Sprint(st.Round) + ", " + st.Stage + ")"
	}
	fmt.Fprintf(tw, "state\t%s\n", state)
	fmt.Fprintf(tw, "epoch\t%s\n", st.Epoch)
	fmt.Fprintf(tw, "members\t%s\n", intsString(st.Members))
	fmt.Fprintf(tw, "quorum owner\t%v\n", st.QuorumOwner)
	fmt.Fprintf(tw, "key registered\t%v\n", st.Registered)
	names := make([]string, 0, len(st.Networks))
	for n := range st.Networks {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(tw, "network %s\thears %s\n", n, intsString(st.Networks[n].Up))
	}
	var dropped uint64
	for _, v := range st.Counters.HeartbeatDropped {
		dropped += v
	}
	fmt.Fprintf(tw, "regroups\t%d\n", st.Counters.Regroups)
	fmt.Fprintf(tw, "heartbeats\t%d accepted, %d dropped\n", st.Counters.HeartbeatAccepted, dropped)
	return tw.Flush()
}
