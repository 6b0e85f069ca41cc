package clustercli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/resources/ocf"
)

// nouns are the object commands, in the order the usage lists them.
var nouns = []*noun{groupCmd, resourceCmd, dependencyCmd, nodeCmd}

func findNoun(name string) *noun {
	for _, n := range nouns {
		if n.name == name {
			return n
		}
	}
	return nil
}

// target is the verb pair that sets an object's target_state.
func targetVerbs(kind string) []verb {
	mk := func(state string) verb {
		return verb{name: state, args: "NAME", min: 1, max: 1,
			help: "set the " + kind + "'s target_state to " + state,
			run: func(ctx context.Context, e *env, pos []string) error {
				return e.commit(ctx, kind+" "+state+" "+pos[0], clusterapi.Op{Op: "set", Kind: kind, Name: pos[0],
					Props: map[string]any{"target_state": state}})
			}}
	}
	return []verb{mk("online"), mk("offline")}
}

func showVerb(kind string) verb {
	return verb{name: "show", args: "NAME", help: "print the " + kind + "'s properties", min: 1, max: 1, read: true,
		run: func(ctx context.Context, e *env, pos []string) error { return e.show(ctx, kind, pos[0]) }}
}

func deleteVerb(kind string) verb {
	return verb{name: "delete", args: "NAME", help: "delete the " + kind, min: 1, max: 1,
		run: func(ctx context.Context, e *env, pos []string) error {
			return e.commit(ctx, kind+" delete "+pos[0], clusterapi.Op{Op: "delete", Kind: kind, Name: pos[0]})
		}}
}

var groupCmd = &noun{name: "group", help: "The groups: the unit of failover (docs/resources.md, \"Group\").",
	verbs: append([]verb{
		{name: "create", args: "NAME [--preferred N1,N2] [--failback never|immediate|window --window H1-H2] [KEY=VALUE...]",
			help: "create a group", min: 1, max: -1, flags: groupFlags,
			run: groupCreate},
		{name: "set", args: "NAME KEY=VALUE...", help: "set the group's properties", min: 2, max: -1,
			run: func(ctx context.Context, e *env, pos []string) error {
				props, err := parseKVs("group set", pos[1:], typer(db.Schema(db.KindGroup)))
				if err != nil {
					return err
				}
				return e.commit(ctx, "group set "+pos[0], clusterapi.Op{Op: "set", Kind: "group", Name: pos[0], Props: props})
			}},
		deleteVerb("group"),
		{name: "move", args: "NAME NODE (or NAME --to NODE) [--no-wait]",
			help: "move the group to NODE (sets moving_to) and wait until it is online there,\nprinting each step; a move the failover manager cancels fails with its reason",
			min:  1, max: 2, wait: true,
			flags: func(fs *flag.FlagSet, o *opts) { fs.StringVar(&o.to, "to", "", "") },
			run:   groupMove},
	}, append(targetVerbs("group"),
		verb{name: "list", help: "list the groups", max: 0, read: true,
			run: func(ctx context.Context, e *env, _ []string) error {
				return e.list(ctx, "group", nil, "state", "owner", "target_state", "preferred_owners")
			}},
		showVerb("group"))...)}

func groupFlags(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.preferred, "preferred", "", "")
	fs.StringVar(&o.failback, "failback", "", "")
	fs.StringVar(&o.window, "window", "", "")
}

func groupCreate(ctx context.Context, e *env, pos []string) error {
	props, err := parseKVs("group create", pos[1:], typer(db.Schema(db.KindGroup)))
	if err != nil {
		return err
	}
	if e.o.preferred != "" {
		props["preferred_owners"] = splitList(e.o.preferred)
	}
	if e.o.failback != "" {
		props["failback"] = e.o.failback
	}
	if e.o.window != "" {
		if e.o.failback != "window" {
			return usagef("group create: --window needs --failback window")
		}
		a, b, ok := strings.Cut(e.o.window, "-")
		start, err1 := strconv.Atoi(a)
		end, err2 := strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil {
			return usagef("group create: --window %q: want START-END, hours 0..23 (22-6)", e.o.window)
		}
		props["failback_window_start"], props["failback_window_end"] = start, end
	}
	return e.commit(ctx, "group create "+pos[0], clusterapi.Op{Op: "create", Kind: "group", Name: pos[0], Props: props})
}

var resourceCmd = &noun{name: "resource", help: "The resources (docs/resources.md, \"Resource\"). For an OCF type, a KEY that is\nnot a common property is the agent's parameter: X=... is param.X=...",
	verbs: append([]verb{
		{name: "create", args: "NAME --group G --type T [--depends-on A,B] [KEY=VALUE...]",
			help: "create a resource; --type ocf:PROVIDER:TYPE creates the resourcetype\nPROVIDER.TYPE from the agent's meta-data on this node if missing (--ocf-root)",
			min:  1, max: -1, run: resourceCreate,
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&o.group, "group", "", "")
				fs.StringVar(&o.typ, "type", "", "")
				fs.StringVar(&o.dependsOn, "depends-on", "", "")
				fs.StringVar(&o.ocfRoot, "ocf-root", ocf.DefaultRoot, "")
			}},
		{name: "set", args: "NAME KEY=VALUE...", help: "set the resource's properties", min: 2, max: -1,
			run: func(ctx context.Context, e *env, pos []string) error {
				r, err := e.get(ctx, "resource", pos[0])
				if err != nil {
					return err
				}
				ty, err := e.resourceTyper(ctx, fmt.Sprint(r.Props["type"]))
				if err != nil {
					return err
				}
				props, err := parseKVs("resource set", pos[1:], ty)
				if err != nil {
					return err
				}
				return e.commit(ctx, "resource set "+pos[0], clusterapi.Op{Op: "set", Kind: "resource", Name: pos[0], Props: props})
			}},
		deleteVerb("resource"),
	}, append(targetVerbs("resource"),
		verb{name: "list", args: "[--group G]", help: "list the resources", max: 0, read: true,
			flags: func(fs *flag.FlagSet, o *opts) { fs.StringVar(&o.group, "group", "", "") },
			run: func(ctx context.Context, e *env, _ []string) error {
				var keep func(clusterapi.Object) bool
				if e.o.group != "" {
					keep = func(o clusterapi.Object) bool { return o.Props["group"] == e.o.group }
				}
				return e.list(ctx, "resource", keep, "group", "type", "state", "state_node", "target_state")
			}},
		showVerb("resource"))...)}

func resourceCreate(ctx context.Context, e *env, pos []string) error {
	name := pos[0]
	if e.o.group == "" || e.o.typ == "" {
		return usagef("resource create %s: --group and --type are required", name)
	}
	var ops []clusterapi.Op
	typ := e.o.typ
	if agent, ok := strings.CutPrefix(typ, "ocf:"); ok {
		prov, t, ok := strings.Cut(agent, ":")
		if !ok {
			return usagef("resource create %s: --type %q: want ocf:PROVIDER:TYPE", name, typ)
		}
		typ = prov + "." + t
		if _, err := e.cl.Get(ctx, "resourcetype", typ, false); err != nil {
			if !isNotFound(err) {
				return classify("resourcetype "+typ, err)
			}
			op, err := ocfTypeOp(ctx, e.o.ocfRoot, agent, typ)
			if err != nil {
				return fmt.Errorf("resource create %s: %w", name, err)
			}
			ops = append(ops, op)
		}
	}
	var ty func(string) (string, db.Type)
	if len(ops) == 1 {
		ty = ocfTyper(ops[0].Props["ocf_parameters"].([]string))
	} else {
		var err error
		if ty, err = e.resourceTyper(ctx, typ); err != nil {
			return err
		}
	}
	props, err := parseKVs("resource create", pos[1:], ty)
	if err != nil {
		return err
	}
	props["group"], props["type"] = e.o.group, typ
	if e.o.dependsOn != "" {
		props["depends_on"] = splitList(e.o.dependsOn)
	}
	ops = append(ops, clusterapi.Op{Op: "create", Kind: "resource", Name: name, Props: props})
	return e.commit(ctx, "resource create "+name, ops...)
}

// ocfTypeOp creates resourcetype name from agent's meta-data under root
// (if it is still absent when the transaction applies).
func ocfTypeOp(ctx context.Context, root, agent, name string) (clusterapi.Op, error) {
	md, err := ocf.LoadMetadata(ctx, root, agent)
	if err != nil {
		return clusterapi.Op{}, fmt.Errorf("the resourcetype %s does not exist and the agent's meta-data: %w", name, err)
	}
	p, err := md.ResourceTypeProps(agent)
	if err != nil {
		return clusterapi.Op{}, err
	}
	jp := map[string]any{}
	for k, v := range p {
		jp[k], _ = clusterapi.JSONValue(v)
	}
	return clusterapi.Op{Op: "create", Kind: "resourcetype", Name: name, Props: jp, IfAbsent: true}, nil
}

// resourceTyper gives a resource property's name and type for resource
// type typ: a built-in type's schema, or a resourcetype object's (its
// agent's, or for ocf its parameters, read from the database).
func (e *env) resourceTyper(ctx context.Context, typ string) (func(string) (string, db.Type), error) {
	if s, ok := db.TypeSchema(typ); ok {
		return typer(append(db.Schema(db.KindResource), s...)), nil
	}
	r, err := e.cl.Get(ctx, "resourcetype", typ, false)
	if err != nil {
		if isNotFound(err) {
			// The database refuses it naming the types it knows.
			return typer(db.Schema(db.KindResource)), nil
		}
		return nil, classify("resourcetype "+typ, err)
	}
	if agent := fmt.Sprint(r.Object.Props["agent"]); agent != db.AgentOCF {
		s, _ := db.TypeSchema(agent)
		return typer(append(db.Schema(db.KindResource), s...)), nil
	}
	var params []string
	if l, ok := r.Object.Props["ocf_parameters"].([]any); ok {
		for _, p := range l {
			params = append(params, fmt.Sprint(p))
		}
	}
	return ocfTyper(params), nil
}

// typer looks a property up in specs: its name and type (0: unknown, sent
// as a string).
func typer(specs []db.PropSpec) func(string) (string, db.Type) {
	return func(k string) (string, db.Type) {
		for _, s := range specs {
			if s.Name == k {
				return k, s.Type
			}
		}
		return k, 0
	}
}

// ocfTyper maps an OCF type's keys: a common property as it is, X and
// param.X to param.X typed by the agent's parameters.
func ocfTyper(params []string) func(string) (string, db.Type) {
	common := typer(db.Schema(db.KindResource))
	return func(k string) (string, db.Type) {
		if _, t := common(k); t != 0 {
			return k, t
		}
		k = db.OCFParamPrefix + strings.TrimPrefix(k, db.OCFParamPrefix)
		for _, s := range params {
			if p, err := db.ParseOCFParameter(s); err == nil && db.OCFParamPrefix+p.Name == k {
				return k, p.Type
			}
		}
		return k, 0
	}
}

// parseKVs parses KEY=VALUE arguments, typing each value by ty: ints,
// bools, comma-separated lists; an unknown key's value is a string (the
// database refuses what it does not take, naming it).
func parseKVs(what string, args []string, ty func(string) (string, db.Type)) (map[string]any, error) {
	props := map[string]any{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return nil, usagef("%s: %q is not KEY=VALUE", what, a)
		}
		name, t := ty(k)
		if _, dup := props[name]; dup {
			return nil, usagef("%s: property %s given twice", what, name)
		}
		switch t {
		case db.TypeInt:
			i, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, usagef("%s: property %s: %q is not an integer", what, name, v)
			}
			props[name] = i
		case db.TypeBool:
			b, err := strconv.ParseBool(v)
			switch strings.ToLower(v) {
			case "yes", "on":
				b, err = true, nil
			case "no", "off":
				b, err = false, nil
			}
			if err != nil {
				return nil, usagef("%s: property %s: %q is not a bool (true, false, yes, no, on, off, 1, 0)", what, name, v)
			}
			props[name] = b
		case db.TypeList:
			props[name] = splitList(v)
		default:
			props[name] = v
		}
	}
	return props, nil
}

var dependencyCmd = &noun{name: "dependency", help: "A resource's dependencies (its depends_on: resources of its group that\nmust be online first).",
	verbs: []verb{
		{name: "add", args: "RES DEP", help: "make RES depend on DEP", min: 2, max: 2,
			run: func(ctx context.Context, e *env, pos []string) error { return e.editDeps(ctx, "add", pos[0], pos[1]) }},
		{name: "remove", args: "RES DEP", help: "remove RES's dependency on DEP", min: 2, max: 2,
			run: func(ctx context.Context, e *env, pos []string) error {
				return e.editDeps(ctx, "remove", pos[0], pos[1])
			}},
	}}

// editDeps adds or removes dep in res's depends_on: read, change, and
// write back if res is still at the version read (else exit 3).
func (e *env) editDeps(ctx context.Context, action, res, dep string) error {
	what := "dependency " + action + " " + res + " " + dep
	r, err := e.get(ctx, "resource", res)
	if err != nil {
		return err
	}
	var deps []string
	if l, ok := r.Props["depends_on"].([]any); ok {
		for _, d := range l {
			deps = append(deps, fmt.Sprint(d))
		}
	}
	has := slices.Contains(deps, dep)
	switch {
	case action == "add" && has:
		return fmt.Errorf("%s: %s already depends on %s", what, res, dep)
	case action == "add":
		deps = append(deps, dep)
	case !has:
		return fmt.Errorf("%s: %s does not depend on %s", what, res, dep)
	default:
		deps = slices.DeleteFunc(deps, func(d string) bool { return d == dep })
	}
	op := clusterapi.Op{Op: "set", Kind: "resource", Name: res, Props: map[string]any{"depends_on": deps}, IfVersion: r.Version}
	if len(deps) == 0 {
		op = clusterapi.Op{Op: "delete-props", Kind: "resource", Name: res, Remove: []string{"depends_on"}, IfVersion: r.Version}
	}
	return e.commit(ctx, what, op)
}

var nodeCmd = &noun{name: "node", help: "The nodes. A paused node hosts no group: the failover manager moves none\nto it (its groups stay where they are).",
	verbs: []verb{
		{name: "pause", args: "NODE", help: "pause the node (its paused property)", min: 1, max: 1,
			run: func(ctx context.Context, e *env, pos []string) error {
				return e.commit(ctx, "node pause "+pos[0], clusterapi.Op{Op: "set", Kind: "node", Name: pos[0], Props: map[string]any{"paused": true}})
			}},
		{name: "resume", args: "NODE", help: "resume a paused or drained node", min: 1, max: 1,
			run: func(ctx context.Context, e *env, pos []string) error {
				return opError("node resume "+pos[0], e.cl.ResumeNode(ctx, pos[0]))
			}},
		{name: "drain", args: "NODE [--no-wait]", min: 1, max: 1, wait: true,
			help: "pause the node and move every group it owns to other nodes, printing each step;\nfails naming a group no other node may host (it stays)",
			run: func(ctx context.Context, e *env, pos []string) error {
				return opError("node drain "+pos[0], e.cl.DrainNode(ctx, pos[0], !e.o.noWait, e.progress))
			}},
		{name: "evict", args: "NODE", min: 1, max: 1, wait: true,
			help: "remove the node from the cluster: drain it, regroup it out (its clusterd exits 4),\nfence its key on the quorum disk; the members refuse its joins until node add",
			run: func(ctx context.Context, e *env, pos []string) error {
				return opError("node evict "+pos[0], e.cl.EvictNode(ctx, pos[0], e.progress))
			}},
		{name: "add", args: "NODE", min: 1, max: 1,
			help: "re-admit an evicted node (it joins when its clusterd starts); the node must be\nin the node files already",
			run: func(ctx context.Context, e *env, pos []string) error {
				return opError("node add "+pos[0], e.cl.AddNode(ctx, pos[0]))
			}},
		{name: "list", help: "list the nodes", max: 0, read: true,
			run: func(ctx context.Context, e *env, _ []string) error {
				return e.list(ctx, "node", nil, "id", "paused", "draining", "evicted", "addrs")
			}},
		showVerb("node"),
	}}

func groupMove(ctx context.Context, e *env, pos []string) error {
	to := e.o.to
	if len(pos) == 2 {
		if to != "" && to != pos[1] {
			return usagef("group move %s: two targets, %s and --to %s", pos[0], pos[1], to)
		}
		to = pos[1]
	}
	if to == "" {
		// The node the manager would choose depends on the membership at
		// the moment it runs: the command does not guess it.
		return usagef("group move %s: the target NODE is required", pos[0])
	}
	return opError("group move "+pos[0], e.cl.MoveGroup(ctx, pos[0], to, !e.o.noWait, e.progress))
}

// leaveCmd is `cluster leave`: a planned stop of the node it asks.
var leaveCmd = verb{name: "leave", min: 0, max: 0, wait: true,
	help: "stop this node's clusterd as SIGTERM does (without systemd): its groups move to\nother nodes, printing each step, then it leaves the membership and exits 0",
	run: func(ctx context.Context, e *env, _ []string) error {
		return opError("leave", e.cl.Leave(ctx, e.progress))
	}}

// progress prints a long operation's steps.
func (e *env) progress(p clusterapi.Progress) { fmt.Fprintln(e.out, p.Text) }

// opError classifies a long operation's error: a refused transaction
// (exit 3), a missing object (4); a failed operation is exit 1 with the
// reason.
func opError(what string, err error) error {
	var oe *clusterapi.OpError
	if err == nil || errors.As(err, &oe) {
		return err
	}
	return classify(what, err)
}
