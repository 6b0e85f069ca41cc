// Package matrix is the fault matrix of issue 14 on the QEMU testbed
// (package testbed): a Wolfpack cluster of two (three for the rolling
// restart) TCG guests booted from the appliance, with the quorum LUN and
// a data LUN on tgt, a virtual server on it, and one TestIntegration*
// test per fault, each checking through the fault that there is no split
// brain and that no acknowledged configuration change is lost, and
// logging the client's outage. docs/testbed.md describes the matrix and
// its checkers.
package matrix
