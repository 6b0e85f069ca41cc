// Command echo is the failover tests' application (testbed/nscluster's
// Prober): a UDP server that answers every datagram with the datagram
// followed by "@", the value of $WOLFPACK_PROBE_ID, "/" and the name of
// the network namespace it runs in (ip netns's name: which node), so that
// a client sees both that the service answers and who answers (with
// -hostname, the host name stands for an unset $WOLFPACK_PROBE_ID). It
// runs as a generic_application resource's command:
//
//	echo -listen 0.0.0.0:7777 -hostname
//
// IPv4 only. Each answer leaves from the address the datagram was sent to.
//
// It exits on SIGTERM (the resource's offline) and at once on any error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"golang.org/x/net/ipv4"
)

// IDEnv names the environment variable whose value follows every answer.
const IDEnv = "WOLFPACK_PROBE_ID"

func main() {
	listen := flag.String("listen", "0.0.0.0:7777", "UDP address to serve")
	hostname := flag.Bool("hostname", false, "the host name is the id when $"+IDEnv+" is unset")
	flag.Parse()
	id := os.Getenv(IDEnv)
	if *hostname && id == "" {
		id, _ = os.Hostname()
	}
	if err := serve(*listen, id+"/"+netnsName()); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

// netnsName is the name under /run/netns of this process's network
// namespace (as `ip netns identify`), "" if it has none.
func netnsName() string {
	var self syscall.Stat_t
	if syscall.Stat("/proc/self/ns/net", &self) != nil {
		return ""
	}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/run/netns", e.Name()), &st) == nil && st.Dev == self.Dev && st.Ino == self.Ino {
			return e.Name()
		}
	}
	return ""
}

func serve(addr, id string) error {
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return err
	}
	// Answer from the address asked (a virtual address), not the one
	// the kernel would pick for a socket bound to 0.0.0.0.
	p := ipv4.NewPacketConn(pc)
	if err := p.SetControlMessage(ipv4.FlagDst, true); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		pc.Close()
	}()
	suffix := []byte("@" + id)
	buf := make([]byte, 2048)
	for {
		n, cm, from, err := p.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if n+len(suffix) > len(buf) {
			n = len(buf) - len(suffix)
		}
		reply := append(buf[:n:n], suffix...)
		var out *ipv4.ControlMessage
		if cm != nil && cm.Dst != nil {
			out = &ipv4.ControlMessage{Src: cm.Dst}
		}
		if _, err := p.WriteTo(reply, out, from); err != nil {
			// A client gone (ICMP unreachable) is not the server's failure.
			continue
		}
	}
}
