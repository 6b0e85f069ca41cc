// Package db is Wolfpack's replicated cluster database (docs/database.md),
// the state machine behind the Global Update Protocol: what WSFC keeps in
// ClusDB and Pacemaker in the CIB. It holds a typed tree of objects (the
// cluster, nodes, networks, groups, resources, resource types), changes only
// through transactions that GUP has sequenced, and records what each one
// changed for the node's watchers.
//
// It enforces the property contract of docs/resources.md: each kind's
// known properties (Schema) have their types, ranges and enums; a resource
// takes only the common resource properties and those of its type, a
// built-in type (BuiltinTypes, TypeSchema) or a resourcetype whose agent
// is one; references between objects (groups, types, dependencies, nodes
// named as owners) resolve, and each group's dependencies stay within it
// and are acyclic. A refusal wraps ErrInvalid or ErrReference and names the
// object, its type and the property.
//
// A DB is pure and deterministic, in the shape of etcd raft's state machine
// contract: Apply(seq, data) applies one committed transaction, Snapshot
// encodes the whole database and Restore replaces it with one. It starts no
// goroutines, reads no clock, does no I/O and draws no random numbers, and
// nothing it returns (encodings, errors, change lists) depends on Go's map
// iteration order: the same sequence of Apply calls gives byte-identical
// snapshots and identical errors on every node. A transaction that fails
// fails on every node with the same error and changes nothing but the
// applied sequence number.
//
// A DB is not safe for concurrent use; its driver serialises Apply, Restore
// and the reads. Reads return deep copies.
package db
