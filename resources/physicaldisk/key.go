package physicaldisk

import (
	"fmt"

	"github.com/wolfpack-ha/wolfpack/resources"
)

// KeyPrefix is the high six bytes of a data disk's reservation key, ASCII
// "WPDISK"; the low two bytes are the node id. A quorum LUN's key is the
// cluster tag and the node id in four bytes (internal/core.Key), whose
// bytes 4 and 5 are always zero, so `sg_persist -k` tells the two apart
// and no data-disk key ever equals a quorum key.
const KeyPrefix uint64 = 0x5750_4449_534b_0000

// MaxNodeID is the highest node id (docs/design.md: ids 1..64).
const MaxNodeID = 64

// Key is node's reservation key on a data disk: 0x5750444953 4b00NN.
func Key(node int64) (uint64, error) {
	if node < 1 || node > MaxNodeID {
		return 0, fmt.Errorf("node id %d out of range 1..%d", node, MaxNodeID)
	}
	return KeyPrefix | uint64(node), nil
}

// KeyNode returns the node id of a data-disk key, or false for any other key.
func KeyNode(key uint64) (int64, bool) {
	if key&^0xffff != KeyPrefix || key&0xffff < 1 || key&0xffff > MaxNodeID {
		return 0, false
	}
	return int64(key & 0xffff), true
}

// nodeKey derives the key from the node id the failover manager adds to
// the online command's props.
func nodeKey(props resources.Props) (uint64, error) {
	id := props.Int(resources.PropNodeID, 0)
	if id == 0 {
		return 0, fmt.Errorf("property %s: missing or not an int (the failover manager adds it)", resources.PropNodeID)
	}
	k, err := Key(id)
	if err != nil {
		return 0, fmt.Errorf("property %s: %w", resources.PropNodeID, err)
	}
	return k, nil
}
