// Package regroup is Wolfpack's membership protocol (docs/membership.md;
// docs/design.md, "Membership: join, regroup, leave"): join
// through an authenticated sponsor, planned leave (ClusterExit), and the
// six-stage Tandem/MSCS regroup (Activate, Closing, Pruning, Cleanup1,
// Cleanup2, Stabilized) with pruning to a fully connected set and the
// partition survival rule of docs/membership.md.
//
// A Node is a sans-I/O state machine in the shape of etcd raft's RawNode:
// Step takes a message from a peer, Tick advances the logical clock, the
// Peer* methods take the failure detector's conclusions, ArbitrationDone
// takes the quorum arbiter's answer, and Ready returns the messages to
// send, the arbitration to run and the events to act on. It starts no
// goroutines, reads no clock and does no I/O. Messages are plain structs:
// the daemon's transport carries and authenticates them (docs/clusterd.md,
// "Why UDP + HMAC, not TLS");
// join authentication (an HMAC challenge under the cluster secret) is part
// of the protocol itself.
package regroup
