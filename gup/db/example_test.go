package db_test

import (
	"fmt"

	"github.com/wolfpack-ha/wolfpack/gup/db"
)

// Set the cluster property k to "v", then again only if the cluster object
// is still at the version read.
func ExampleTx() {
	d := db.New()
	create := db.Tx{Ops: []db.Op{db.Create(db.KindCluster, db.ClusterObject, nil)}}
	data, _ := create.MarshalBinary()
	fmt.Println(d.Apply(1, data))

	set := db.Tx{Ops: []db.Op{
		db.Set(db.KindCluster, db.ClusterObject, map[string]db.Value{"k": db.StringValue("v")}),
	}}
	data, _ = set.MarshalBinary()
	fmt.Println(d.Apply(2, data))

	o, _ := d.Get(db.KindCluster, db.ClusterObject)
	guarded := db.Tx{Ops: []db.Op{
		db.Set(db.KindCluster, db.ClusterObject, map[string]db.Value{"k": db.StringValue("w")}).IfVersion(o.Version),
	}}
	data, _ = guarded.MarshalBinary()
	fmt.Println(d.Apply(3, data))
	fmt.Println(d.Apply(4, data)) // the version read is stale now
	fmt.Println(d.TakeChanges())
	// Output:
	// <nil>
	// <nil>
	// <nil>
	// transaction 4: op 0 (set cluster "cluster"): db: precondition failed: version is 3, want 2
	// [{1 cluster cluster created 1} {2 cluster cluster updated 2} {3 cluster cluster updated 3}]
}
