package clustercli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/gup/db"
)

// The object commands (group, resource, dependency, node) read and write
// the cluster database through a running clusterd's admin API: every
// write is one POST /v1/db transaction (docs/cli.md).

// defaultSocket is the admin socket of a packaged clusterd (docs/clusterd.md,
// "The node file": admin_socket).
const defaultSocket = "/run/wolfpack/clusterd.sock"

// defaultWait bounds a long operation (a move, a drain, an eviction, a
// leave) unless --timeout says otherwise.
const defaultWait = 2 * time.Minute

// Exit statuses beyond 0 (ok), 1 (error) and 2 (usage).
const (
	exitRefused  = 3 // the cluster refused the transaction (409): nothing changed
	exitNotFound = 4 // no such object (404)
)

// classify wraps err with what was being done and, for a refused
// transaction or a missing object, the exit status scripts branch on.
func classify(what string, err error) error {
	var se *clusterapi.StatusError
	if errors.As(err, &se) {
		switch {
		case se.Code == http.StatusConflict && strings.Contains(se.Message, db.ErrNotFound.Error()):
			// The transaction set or deleted an object that does not
			// exist: the command's own object is missing, as a show's
			// 404 says.
			return statusError{exitNotFound, fmt.Errorf("%s: %s", what, se.Message)}
		case se.Code == http.StatusConflict:
			return statusError{exitRefused, fmt.Errorf("%s: refused, nothing changed: %s", what, se.Message)}
		case se.Code == http.StatusNotFound:
			return statusError{exitNotFound, fmt.Errorf("%s: %s", what, se.Message)}
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

func isNotFound(err error) bool {
	var se *clusterapi.StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// opts are the flags of every object command; each verb registers the
// ones it takes.
type opts struct {
	socket, remote, caFile, certFile, keyFile string
	timeout                                   time.Duration
	json                                      bool
	noWait                                    bool

	preferred, failback, window, to string
	group, typ, dependsOn, ocfRoot  string
}

// verb is one action of a noun ("group create").
type verb struct {
	name, args, help string
	min, max         int  // positional arguments; max -1: any number
	read             bool // takes --json
	wait             bool // a long operation: takes --no-wait, and --timeout bounds the wait (default defaultWait)
	flags            func(fs *flag.FlagSet, o *opts)
	run              func(ctx context.Context, e *env, pos []string) error
}

// noun is a command with verbs ("group").
type noun struct {
	name, help string
	verbs      []verb
}

// env is what a verb runs with.
type env struct {
	cl  *clusterapi.Client
	o   *opts
	out io.Writer
}

func (n *noun) usage() string {
	var b strings.Builder
	fmt.Fprintf(&b, "usage: cluster %s <action> [arguments] [flags]\n\n%s\n\nactions:\n", n.name, n.help)
	for _, v := range n.verbs {
		fmt.Fprintf(&b, "  %s %s\n      %s\n", v.name, v.args, strings.ReplaceAll(v.help, "\n", "\n      "))
	}
	b.WriteString(connUsage)
	return b.String()
}

const connUsage = `
every action takes:
  --socket PATH    clusterd's admin socket (default ` + defaultSocket + `)
  --api URL        or its admin API on TCP, https://HOST:PORT, with --ca F --cert F --key F
  --timeout D      how long to wait for the daemon (default 10s); for a long
                   operation (group move, node drain, node evict, leave), how
                   long to wait for it to finish (default 2m)
the reads (list, show) take --json: the API's objects as JSON. The long
operations print their progress and end when it is done (exit 0) or failed
(exit 1, with the reason); --no-wait returns once it is asked for.

exit status: 0 ok, 1 error, 2 usage, 3 the cluster refused the transaction
(nothing changed), 4 no such object.
`

func (v *verb) usage(n string) string {
	return fmt.Sprintf("usage: cluster %s\n\n%s\n%s", strings.TrimSpace(n+" "+v.name+" "+v.args), v.help, connUsage)
}

func (n *noun) run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, n.usage())
		return usagef("%s: missing action", n.name)
	}
	if isHelp(args[0]) {
		fmt.Fprint(stdout, n.usage())
		return nil
	}
	i := slices.IndexFunc(n.verbs, func(v verb) bool { return v.name == args[0] })
	if i < 0 {
		fmt.Fprint(stderr, n.usage())
		return usagef("%s: unknown action %q (want %s)", n.name, args[0], strings.Join(n.verbNames(), ", "))
	}
	return n.verbs[i].exec(ctx, n.name, args[1:], stdout, stderr)
}

// exec runs the verb of noun (empty for a verb that is a command of its
// own, as leave) with its arguments.
func (v *verb) exec(ctx context.Context, noun string, args []string, stdout, stderr io.Writer) error {
	cmd := strings.TrimSpace(noun + " " + v.name)
	var o opts
	timeout := 10 * time.Second
	if v.wait {
		timeout = defaultWait
	}
	fs := flag.NewFlagSet("cluster "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&o.socket, "socket", "", "")
	fs.StringVar(&o.remote, "api", "", "")
	fs.StringVar(&o.caFile, "ca", "", "")
	fs.StringVar(&o.certFile, "cert", "", "")
	fs.StringVar(&o.keyFile, "key", "", "")
	durationVar(fs, &o.timeout, "timeout", timeout)
	if v.read {
		fs.BoolVar(&o.json, "json", false, "")
	}
	if v.wait {
		fs.BoolVar(&o.noWait, "no-wait", false, "")
	}
	if v.flags != nil {
		v.flags(fs, &o)
	}
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, v.usage(noun))
		return nil
	}
	if err != nil {
		return usagef("%s: %v (cluster %s -h for the usage)", cmd, err, cmd)
	}
	if len(pos) < v.min || (v.max >= 0 && len(pos) > v.max) {
		fmt.Fprint(stderr, v.usage(noun))
		return usagef("%s: want %s, got %d arguments", cmd, v.args, len(pos))
	}
	if o.timeout <= 0 {
		return usagef("%s: --timeout must be positive, got %s", cmd, o.timeout)
	}
	if o.remote == "" && o.socket == "" {
		o.socket = defaultSocket
	}
	if o.remote != "" && o.socket != "" {
		return usagef("%s: --socket and --api together; give one", cmd)
	}
	cl, err := apiClient(o.socket, o.remote, o.caFile, o.certFile, o.keyFile)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	return v.run(ctx, &env{cl: cl, o: &o, out: stdout}, pos)
}

func (n *noun) verbNames() []string {
	s := make([]string, len(n.verbs))
	for i, v := range n.verbs {
		s[i] = v.name
	}
	return s
}

func isHelp(s string) bool { return s == "-h" || s == "-help" || s == "--help" || s == "help" }

// commit sends one transaction; what names the command in errors.
func (e *env) commit(ctx context.Context, what string, ops ...clusterapi.Op) error {
	if _, err := e.cl.Commit(ctx, clusterapi.Tx{Ops: ops}); err != nil {
		return classify(what, err)
	}
	return nil
}

func (e *env) get(ctx context.Context, kind, name string) (clusterapi.Object, error) {
	r, err := e.cl.Get(ctx, kind, name, false)
	if err != nil {
		return clusterapi.Object{}, classify(fmt.Sprintf("%s %q", kind, name), err)
	}
	return r.Object, nil
}

// show prints one object: JSON, or its properties one a line.
func (e *env) show(ctx context.Context, kind, name string) error {
	o, err := e.get(ctx, kind, name)
	if err != nil {
		return err
	}
	if e.o.json {
		return writeJSON(e.out, o)
	}
	tw := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\t%s\n", kind, o.Name)
	fmt.Fprintf(tw, "version\t%d\n", o.Version)
	for _, k := range slices.Sorted(maps.Keys(o.Props)) {
		fmt.Fprintf(tw, "%s\t%s\n", k, propString(o.Props[k]))
	}
	return tw.Flush()
}

// list prints every object of kind that keep accepts: JSON (an array of
// the API's objects), or a table of cols.
func (e *env) list(ctx context.Context, kind string, keep func(clusterapi.Object) bool, cols ...string) error {
	r, err := e.cl.List(ctx, kind, false)
	if err != nil {
		return classify("list "+kind, err)
	}
	objs := []clusterapi.Object{}
	for _, o := range r.Objects {
		if keep == nil || keep(o) {
			objs = append(objs, o)
		}
	}
	if e.o.json {
		return writeJSON(e.out, objs)
	}
	tw := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\t%s\n", strings.ToUpper(kind), strings.ToUpper(strings.Join(cols, "\t")))
	for _, o := range objs {
		row := []string{o.Name}
		for _, c := range cols {
			row = append(row, propString(o.Props[c]))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// propString is a property value as the tables print it ("-": unset).
func propString(v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case []any:
		s := make([]string, len(x))
		for i, it := range x {
			s[i] = fmt.Sprint(it)
		}
		return strings.Join(s, ",")
	case float64:
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprint(v)
}

// splitList is a comma-separated flag value as a list (empty: none).
func splitList(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}
