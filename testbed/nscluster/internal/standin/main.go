// Command standin is a stand-in for clusterd that the nscluster rig's own
// tests run: it reads the same config file (internal/config), sends a small UDP datagram to
// every peer on every private network each heartbeat interval, and logs in
// clusterd's shape ("formed", "network down"/"network up" per peer and
// network), serves GET /v1/status on the admin socket, and exits 0 on
// SIGTERM. It has no membership protocol; it only shows that the rig wires
// processes, networks, logs and sockets the way the contract says.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/wolfpack-ha/wolfpack/clusterapi"
	"github.com/wolfpack-ha/wolfpack/internal/config"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "standin:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 3 || os.Args[1] != "-config" {
		return fmt.Errorf("usage: standin -config FILE")
	}
	b, err := os.ReadFile(os.Args[2])
	if err != nil {
		return err
	}
	cfg, err := config.Parse(b)
	if err != nil {
		return fmt.Errorf("config %s: %w", os.Args[2], err)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	timing, err := cfg.Timing.Resolve()
	if err != nil {
		return fmt.Errorf("config %s: %w", os.Args[2], err)
	}
	interval, threshold := timing.HeartbeatInterval, timing.HeartbeatThreshold
	var name string
	for _, n := range cfg.Nodes {
		if n.ID == cfg.NodeID {
			name = n.Name
		}
	}

	var mu sync.Mutex
	last := map[[2]int]time.Time{} // peer, network -> last datagram
	down := map[[2]int]bool{}
	var conns []*net.UDPConn
	for k := range cfg.Networks {
		var self string
		for _, n := range cfg.Nodes {
			if n.ID == cfg.NodeID {
				self = n.Addrs[k]
			}
		}
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(self), Port: cfg.Cluster.Port})
		if err != nil {
			return fmt.Errorf("listen on %s: %w", cfg.Networks[k].Name, err)
		}
		conns = append(conns, c)
		go func() {
			buf := make([]byte, 64)
			for {
				n, _, err := c.ReadFromUDP(buf)
				if err != nil {
					return
				}
				peer, err := strconv.Atoi(string(buf[:n]))
				if err != nil {
					continue
				}
				mu.Lock()
				key := [2]int{peer, k}
				last[key] = time.Now()
				if down[key] {
					down[key] = false
					log.Info("network up", "peer", peer, "network", cfg.Networks[k].Name)
				}
				mu.Unlock()
			}
		}()
	}

	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		members := []int{}
		for _, n := range cfg.Nodes {
			members = append(members, n.ID)
		}
		json.NewEncoder(w).Encode(clusterapi.Status{Node: cfg.NodeID, Name: name, State: "member", Epoch: "1", Members: members})
	})}
	os.Remove(cfg.AdminSocket)
	l, err := net.Listen("unix", cfg.AdminSocket)
	if err != nil {
		return err
	}
	go srv.Serve(l)
	log.Info("formed", "epoch", 1, "members", []int{cfg.NodeID})

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			srv.Close()
			log.Info("left")
			return nil
		case <-tick.C:
		}
		for k, c := range conns {
			for _, n := range cfg.Nodes {
				if n.ID == cfg.NodeID {
					continue
				}
				c.WriteToUDP([]byte(strconv.Itoa(cfg.NodeID)), &net.UDPAddr{IP: net.ParseIP(n.Addrs[k]), Port: cfg.Cluster.Port})
				key := [2]int{n.ID, k}
				mu.Lock()
				seen := last[key]
				if seen.IsZero() {
					seen = start
				}
				if !down[key] && time.Since(seen) > time.Duration(threshold)*interval {
					down[key] = true
					log.Info("network down", "peer", n.ID, "network", cfg.Networks[k].Name)
				}
				mu.Unlock()
			}
		}
	}
}
