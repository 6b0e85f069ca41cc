//go:build !linux

package daemon

import (
	"errors"
	"net"
)

// peerOf refuses every caller where SO_PEERCRED does not exist.
func peerOf(net.Conn) peer {
	return peer{err: errors.New("peer credentials are read on Linux only")}
}
