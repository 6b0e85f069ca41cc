package clustercli

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wolfpack-ha/wolfpack/scsi"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi"
	"github.com/wolfpack-ha/wolfpack/scsi/iscsi/iscsitest"
)

// scenarioInitiator names nexus i of the scenario, as the testbed names
// QEMU's three nexuses of node 1.
func scenarioInitiator(i int) string {
	return fmt.Sprintf("%s:node1-i%d", iscsitest.DefaultTarget, i+1)
}

// TestIntegrationTargetsAgreeISCSI runs the reservation scenario of
// TestIntegrationTargetsAgree through this module's iSCSI initiator, three
// sessions with distinct initiator names kept open across steps (tgt binds
// registrations to the session), against a fresh tgtd LUN, and holds the
// results to testdata/pr_scenario.golden (what tgt answered QEMU's
// initiator). Twice: from this process over loopback, and from three
// initiator processes in their own network namespaces over veths to tgtd
// in a storage namespace (the rig).
//
// Reference: SPC-4 5.12, 6.15, 6.16; RFC 7143.
func TestIntegrationTargetsAgreeISCSI(t *testing.T) {
	golden := readGolden(t)
	t.Run("loopback", func(t *testing.T) {
		tg := iscsitest.Start(t, iscsitest.Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var names []string
		devs := map[string]scsi.Device{}
		for i := 0; i < 3; i++ {
			s, err := iscsi.Open(ctx, tg.Addr(1), iscsi.Config{InitiatorName: scenarioInitiator(i), Timeout: 10 * time.Second})
			if err != nil {
				t.Fatalf("log in as %s: %v", scenarioInitiator(i), err)
			}
			t.Cleanup(func() { s.Close() })
			// The address the CLI sees names the nexus, so the opener
			// can hand back the session that stays open.
			addr := fmt.Sprintf("%s#%d", tg.Addr(1), i)
			names = append(names, addr)
			devs[addr] = workerSession{s}
		}
		open := func(addr string) (scsi.Device, error) {
			d, ok := devs[addr]
			if !ok {
				return nil, fmt.Errorf("open %s: not one of the test's sessions", addr)
			}
			return d, nil
		}
		got := runScenario(t, func(nexus int, args []string) []byte {
			return runInProcess(ctx, open, args, names[nexus])
		})
		compareScenario(t, "iscsi", got, goldenScenario, golden)
	})
	t.Run("netns", func(t *testing.T) {
		r := newRig(t, 3)
		var ws []*worker
		for i := 0; i < 3; i++ {
			ws = append(ws, startWorker(t, r.nodes[i], workerSpec{Addr: r.tgt.Addr(1), InitiatorName: scenarioInitiator(i), Timeout: 10 * time.Second}))
		}
		got := runScenario(t, func(nexus int, args []string) []byte {
			return ws[nexus].cli(t, args...)
		})
		compareScenario(t, "iscsi-netns", got, goldenScenario, golden)
	})
}
