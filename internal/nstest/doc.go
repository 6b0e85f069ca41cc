// Package nstest builds throwaway network namespaces on one bridge for the
// integration tests of net/ and resources/: a fabric namespace holding the bridge and the
// fabric end of every veth, and one namespace per node or client with eth0.
// Nothing is created in, addressed in, or sent from the host's namespace.
//
// Names start with wpnet<pid>x<seq>, so that a later run sweeps what a
// killed run left behind (Sweep, called by New). Close (registered with
// t.Cleanup, and run on SIGINT or SIGTERM) kills the processes started in
// the namespaces and deletes them, and with them their links.
package nstest
