package testbed

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/agent"
)

// ClockOffset estimates how far the guest's wall clock is ahead of the
// host's (negative: behind), so that times in the guest's logs can be
// put on the host's time line. It asks the agent for the guest's clock a
// few times and keeps the sample with the shortest round trip; the
// estimate is within half that round trip (err).
func (n *Node) ClockOffset(ctx context.Context) (offset, err time.Duration, _ error) {
	best := time.Duration(-1)
	for range 5 {
		t0 := time.Now()
		res, e := n.Do(ctx, agent.Request{Argv: []string{agent.BuiltinClock}})
		t1 := time.Now()
		if e != nil {
			return 0, 0, fmt.Errorf("%s: read the guest's clock: %w", n.name, e)
		}
		g, e := strconv.ParseInt(strings.TrimSpace(string(res.Stdout)), 10, 64)
		if e != nil || res.Exit != 0 {
			return 0, 0, fmt.Errorf("%s: read the guest's clock: %q %s", n.name, res.Stdout, res.Error)
		}
		if rtt := t1.Sub(t0); best < 0 || rtt < best {
			best = rtt
			mid := t0.Add(rtt / 2)
			offset = time.Unix(0, g).Sub(mid)
		}
	}
	return offset, best / 2, nil
}
