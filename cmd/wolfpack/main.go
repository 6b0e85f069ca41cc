// Command wolfpack is the appliance's multi-call binary (docs/appliance.md):
// init, clusterd, resmon and cluster in one program, with poweroff, reboot
// and halt (which ask init for a shutdown that drains clusterd), run under
// the name it was started by (a link named clusterd runs clusterd), or as
//
//	wolfpack COMMAND [ARG...]
//
// One binary instead of four makes the image smaller, and a program that
// starts after init finds the Go runtime and the code it shares with init
// already loaded: both count in an appliance's boot time.
package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/wolfpack-ha/wolfpack/cmd/internal/clustercli"
	"github.com/wolfpack-ha/wolfpack/cmd/internal/clusterdmain"
	"github.com/wolfpack-ha/wolfpack/cmd/internal/initmain"
	"github.com/wolfpack-ha/wolfpack/cmd/internal/resmonmain"
)

// commands are the programs by name; "init" is how the kernel starts /init.
var commands = map[string]func(){
	"cluster":       clustercli.Main,
	"clusterd":      clusterdmain.Main,
	"resmon":        resmonmain.Main,
	"wolfpack-init": initmain.Main,
	"init":          initmain.Main,
	"poweroff":      initmain.PowerOff,
	"reboot":        initmain.Reboot,
	"halt":          initmain.Halt,
}

// names lists the command names, sorted.
func names() []string { return slices.Sorted(maps.Keys(commands)) }

func main() {
	name, args, err := lookup(os.Args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "wolfpack:", err)
		os.Exit(2)
	}
	os.Args = args
	commands[name]()
}

// lookup finds the command that argv runs: argv[0]'s base name, or for
// "wolfpack COMMAND ARG..." the next word; args are the command's own
// argv.
func lookup(argv []string) (name string, args []string, err error) {
	if len(argv) == 0 {
		return "", nil, errors.New("no program name")
	}
	name, args = filepath.Base(argv[0]), argv
	if name == "wolfpack" {
		if len(argv) < 2 {
			return "", nil, fmt.Errorf("no command: run wolfpack COMMAND [ARG...] with one of %s, or a link by that name", strings.Join(names(), ", "))
		}
		name, args = argv[1], argv[1:]
	}
	if _, ok := commands[name]; !ok {
		return "", nil, fmt.Errorf("no command %q: the commands are %s", name, strings.Join(names(), ", "))
	}
	return name, args, nil
}
