package clusterapi_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
)

// These examples need a running clusterd (they have no Output line, so
// go test compiles them without running them); the program
// clusterapi/examples/whereis does the same, and
// testbed/nscluster/failover's TestIntegrationLongOperations runs it
// against a running cluster.

// Read where a group runs: a linearizable read of the database.
func ExampleClient_Get() {
	cl := clusterapi.NewClient("/run/wolfpack/clusterd.sock")
	defer cl.Close()
	r, err := cl.Get(context.Background(), "group", "web", false)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("web runs on", r.Object.Props["owner"], "state", r.Object.Props["state"])
}

// Follow the database's changes as the node applies them.
func ExampleClient_Watch() {
	cl := clusterapi.NewClient("/run/wolfpack/clusterd.sock")
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := cl.Watch(ctx, nil, func(c clusterapi.Change) error {
		fmt.Println(c.Seq, c.Op, c.Kind, c.Name)
		return nil
	})
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Fatal(err)
	}
}

// Move a group and wait for the outcome, printing each step.
func ExampleClient_MoveGroup() {
	cl := clusterapi.NewClient("/run/wolfpack/clusterd.sock")
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := cl.MoveGroup(ctx, "web", "node2", true, func(p clusterapi.Progress) { fmt.Println(p.Text) })
	var oe *clusterapi.OpError
	switch {
	case errors.As(err, &oe):
		fmt.Println("not moved:", oe.Reason) // e.g. "move to node2 cancelled: node node2 is paused"
	case err != nil:
		log.Fatal(err)
	}
}

// Drain a node before maintenance, then resume it.
func ExampleClient_DrainNode() {
	cl := clusterapi.NewClient("/run/wolfpack/clusterd.sock")
	defer cl.Close()
	ctx := context.Background()
	if err := cl.DrainNode(ctx, "node1", true, func(p clusterapi.Progress) { fmt.Println(p.Text) }); err != nil {
		log.Fatal(err)
	}
	// ... maintenance ...
	if err := cl.ResumeNode(ctx, "node1"); err != nil {
		log.Fatal(err)
	}
}
