// Package gup holds ring-2 tests of the Global Update Protocol and the
// cluster database (docs/gup.md): real clusterd processes in network
// namespaces on the nscluster rig, the recovery log on a real quorum LUN
// served by tgt, clients on the admin API's database endpoints. The tests
// are TestIntegration* (root; skipped under -short): a locker killed under
// a stream of writes, the partition in time, a joiner receiving a database
// of several MB, and strangers refused on the streams.
package gup
