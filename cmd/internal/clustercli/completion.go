package clustercli

import (
	"fmt"
	"io"
	"strings"
)

const completionUsage = `usage: cluster completion bash

Prints a bash completion script for the cluster command tree; load it with
  source <(cluster completion bash)
or install it as /usr/share/bash-completion/completions/cluster.
`

func runCompletion(args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && isHelp(args[0]) {
		fmt.Fprint(stdout, completionUsage)
		return nil
	}
	if len(args) != 1 || args[0] != "bash" {
		fmt.Fprint(stderr, completionUsage)
		return usagef("completion: want exactly one shell, bash")
	}
	_, err := io.WriteString(stdout, bashCompletion())
	return err
}

// bashCompletion completes the commands, their actions and the object
// commands' flags.
func bashCompletion() string {
	cmds := []string{"create", "join", "status", "events", "why", "log", "disk", "quorum", "ca", "leave"}
	var cases strings.Builder
	for _, n := range nouns {
		cmds = append(cmds, n.name)
		fmt.Fprintf(&cases, "    %s) actions=%q ;;\n", n.name, strings.Join(n.verbNames(), " "))
	}
	cmds = append(cmds, "completion")
	fmt.Fprintf(&cases, "    completion) actions=bash ;;\n")
	return `# bash completion for cluster (cluster completion bash)
_cluster() {
  local cur=${COMP_WORDS[COMP_CWORD]} actions=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "` + strings.Join(cmds, " ") + ` --help --version" -- "$cur"))
    return
  fi
  case ${COMP_WORDS[1]} in
` + cases.String() + `    quorum) actions="format show replay hold bench" ;;
    ca) actions="init issue check client server" ;;
    disk) actions="show keys reservation status register unregister reserve release preempt clear format check bench" ;;
  esac
  if [ "$COMP_CWORD" -eq 2 ]; then
    COMPREPLY=($(compgen -W "$actions --help" -- "$cur"))
  elif [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "--socket --api --ca --cert --key --timeout --json --help" -- "$cur"))
  fi
}
complete -F _cluster cluster
`
}
