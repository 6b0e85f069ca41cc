package daemon

import (
	"errors"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// peerOf reads the credentials of the process at the other end of a unix
// socket connection (SO_PEERCRED: as they were when it connected).
func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{err: errors.New("not a unix socket connection")}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{err: err}
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{err: err}
	}
	if cerr != nil {
		return peer{err: os.NewSyscallError("getsockopt SO_PEERCRED", cerr)}
	}
	return peer{uid: cred.Uid}
}
