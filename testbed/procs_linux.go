package testbed

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/wolfpack-ha/wolfpack/testbed/agent"
)

// Procs lists the guest's processes, read by the agent itself (no
// program started).
func (n *Node) Procs(ctx context.Context) ([]agent.Proc, error) {
	res, err := n.Do(ctx, agent.Request{Argv: []string{agent.BuiltinProcs}})
	if err != nil {
		return nil, fmt.Errorf("%s: processes: %w", n.name, err)
	}
	if res.Error != "" {
		return nil, fmt.Errorf("%s: processes: %s", n.name, res.Error)
	}
	var procs []agent.Proc
	if err := json.Unmarshal(res.Stdout, &procs); err != nil {
		return nil, fmt.Errorf("%s: processes: %w", n.name, err)
	}
	return procs, nil
}
