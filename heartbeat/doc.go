// Package heartbeat is Wolfpack's failure detector (docs/membership.md): an
// authenticated heartbeat codec and a deterministic, tick-driven detector
// that suspects a peer only when it is silent on every private network.
//
// The Detector is a sans-I/O state machine in the shape of etcd raft's
// RawNode: the driver calls Tick once per base tick, hands every received
// datagram to Receive, and after either collects Ready: the datagrams to
// send and the events (PeerAlive, PeerSuspected, PeerRestarted,
// NetworkDown, NetworkUp). It starts no goroutines, reads no clock and does
// no I/O.
package heartbeat
