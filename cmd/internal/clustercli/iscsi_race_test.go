package clustercli

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestIntegrationISCSIRace16: sixteen initiators, each a process in its own
// network namespace behind a veth to tgtd's storage namespace, register on
// one LUN; node 1 holds a Write Exclusive - Registrants Only reservation.
// Each of 20 rounds:
//
//  1. every node but the holder sends PREEMPT AND ABORT (`cluster disk
//     preempt --abort`, which falls back to PREEMPT when tgt refuses the
//     service action with 24/00) against the holder's key, all at once.
//     Exactly one succeeds; the first removes the key, so the others'
//     PREEMPT names no registered key and gets RESERVATION CONFLICT.
//  2. the winner preempts every other key that is still registered.
//  3. every node runs `cluster disk check`: the winner writes; the fifteen
//     losers read but their WRITE(16) gets RESERVATION CONFLICT.
//  4. an observer (a seventeenth initiator, in its own namespace) reads
//     the keys and the reservation: only the winner's key, holding WE-RO.
//  5. the losers register again; the winner is the next round's holder.
//
// Reference: SPC-4 5.12.11.4 (preempting), 5.12.11.4.3 (a PREEMPT whose
// service action reservation key matches no registration).
func TestIntegrationISCSIRace16(t *testing.T) {
	const nodes, rounds = 16, 20
	start := time.Now()
	r := newRig(t, nodes+1)
	key := func(i int) string { return fmt.Sprintf("0x5750524143450%03x", i+1) } // "WPRACE" + node
	ws := make([]*worker, nodes)
	var wg sync.WaitGroup
	for i := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws[i] = startWorker(t, r.nodes[i], workerSpec{Addr: r.tgt.Addr(1), InitiatorName: fmt.Sprintf("iqn.2024-01.dev.wolfpack:race-node%02d", i+1), Timeout: 10 * time.Second})
		}()
	}
	wg.Wait()
	observer := startWorker(t, r.nodes[nodes], workerSpec{Addr: r.tgt.Addr(1), InitiatorName: "iqn.2024-01.dev.wolfpack:race-observer", Timeout: 10 * time.Second})

	ok := func(i int, out []byte, what string) {
		t.Helper()
		if v, _ := jsonField(t, out, "ok").(bool); !v {
			t.Fatalf("node%d %s failed:\n%s", i+1, what, out)
		}
	}
	// all runs one CLI action on the given nodes at once.
	all := func(idx []int, args func(i int) []string) map[int][]byte {
		chans := map[int]chan workerResp{}
		for _, i := range idx {
			chans[i] = ws[i].send(t, workerReq{Op: "cli", Args: args(i)})
		}
		out := map[int][]byte{}
		for _, i := range idx {
			resp := ws[i].wait(t, chans[i])
			if resp.Err != "" {
				t.Fatalf("node%d: %s: %s", i+1, strings.Join(args(i), " "), resp.Err)
			}
			out[i] = []byte(resp.Stdout)
		}
		return out
	}
	every := make([]int, nodes)
	for i := range every {
		every[i] = i
	}
	except := func(skip int) []int {
		var idx []int
		for _, i := range every {
			if i != skip {
				idx = append(idx, i)
			}
		}
		return idx
	}

	for i, out := range all(every, func(i int) []string {
		return []string{"disk", "register", "--json", "--ignore-existing", "--key", key(i)}
	}) {
		ok(i, out, "register")
	}
	holder := 0
	ok(0, ws[0].cli(t, "disk", "reserve", "--json", "--key", key(0), "--type", "we-ro"), "reserve")

	wins := make([]int, nodes)
	actions := map[string]int{}
	for round := 1; round <= rounds; round++ {
		t0 := time.Now()
		// 1. The race.
		racers := except(holder)
		res := all(racers, func(i int) []string {
			return []string{"disk", "preempt", "--abort", "--json", "--key", key(i), "--victim", key(holder), "--type", "we-ro"}
		})
		winner := -1
		var action string
		for _, i := range racers {
			var m struct {
				OK            bool   `json:"ok"`
				Status        string `json:"status"`
				ServiceAction string `json:"service_action"`
			}
			if err := json.Unmarshal(res[i], &m); err != nil {
				t.Fatalf("round %d: node%d: %v\n%s", round, i+1, err, res[i])
			}
			switch {
			case m.OK:
				if winner >= 0 {
					t.Fatalf("round %d: node%d and node%d both won:\n%s\n%s", round, winner+1, i+1, res[winner], res[i])
				}
				winner, action = i, m.ServiceAction
			case m.Status == "RESERVATION CONFLICT":
			default:
				t.Fatalf("round %d: node%d lost other than by RESERVATION CONFLICT:\n%s", round, i+1, res[i])
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: nobody won", round)
		}
		wins[winner]++
		actions[action]++

		// 2. The winner removes every other key. The old holder's went
		// with the race.
		for _, i := range except(winner) {
			if i == holder {
				continue
			}
			ok(winner, ws[winner].cli(t, "disk", "preempt", "--json", "--key", key(winner), "--victim", key(i), "--type", "we-ro"),
				fmt.Sprintf("round %d: preempt node%d", round, i+1))
		}

		// 3. Losers are fenced, the winner writes.
		for i, out := range all(every, func(int) []string { return []string{"disk", "check", "--json"} }) {
			var c checkResult
			if err := json.Unmarshal(out, &c); err != nil {
				t.Fatalf("round %d: node%d check: %v\n%s", round, i+1, err, out)
			}
			want := checkResult{LBA: c.LBA, Read: "ok", Write: "RESERVATION CONFLICT"}
			if i == winner {
				want.Write = "ok"
			}
			if c != want {
				t.Fatalf("round %d: node%d (winner node%d) check: %+v, want %+v", round, i+1, winner+1, c, want)
			}
		}

		// 4. An independent session sees one key, holding WE-RO.
		var ks keysResult
		if err := json.Unmarshal(observer.cli(t, "disk", "keys", "--json"), &ks); err != nil {
			t.Fatal(err)
		}
		if len(ks.Keys) != 1 || ks.Keys[0] != key(winner) {
			t.Fatalf("round %d: observer sees keys %v, want only node%d's %s", round, ks.Keys, winner+1, key(winner))
		}
		var rs reservationResult
		if err := json.Unmarshal(observer.cli(t, "disk", "reservation", "--json"), &rs); err != nil {
			t.Fatal(err)
		}
		if !rs.Reserved || rs.Key != key(winner) || rs.Type != "we-ro" {
			t.Fatalf("round %d: observer sees reservation %+v, want %s we-ro", round, rs, key(winner))
		}
		t.Logf("round %2d: node%02d won (%s) over %d racers; 15 fenced (read ok, write RESERVATION CONFLICT); observer agrees; %v",
			round, winner+1, action, len(racers), time.Since(t0).Round(time.Millisecond))

		// 5. The losers come back for the next round.
		for i, out := range all(except(winner), func(i int) []string {
			return []string{"disk", "register", "--json", "--ignore-existing", "--key", key(i)}
		}) {
			ok(i, out, "register")
		}
		holder = winner
	}
	t.Logf("wins per node: %v; winning service actions: %v; %v in all", wins, actions, time.Since(start).Round(time.Millisecond))
}
