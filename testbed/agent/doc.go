// Package agent is the guest side of the testbed: the init program of a test VM
// (cmd/wolfpack-agent) prepares the guest (mounts, kernel modules, NICs) and then
// runs programs on request from the host, one JSON line per request and per reply
// on the guest's second serial port. See proto.go for the wire format.
package agent
