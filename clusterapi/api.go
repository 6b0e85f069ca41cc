// Package clusterapi is the Cluster API: the JSON types of clusterd's admin
// API (HTTP on the daemon's unix socket, or on TCP with TLS and client
// certificates; every path under /v1/: docs/clusterd.md, "Admin API";
// docs/api/openapi.yaml) and a client for it. clusterd, the cluster CLI,
// the test rigs and cluster-aware applications share it.
package clusterapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Status is the answer of GET /v1/status on the admin socket.
type Status struct {
	Node        int                      `json:"node"`
	Name        string                   `json:"name"`
	Incarnation uint64                   `json:"incarnation"`
	State       string                   `json:"state"`
	Stage       string                   `json:"stage"`
	Round       uint64                   `json:"round"`
	Epoch       string                   `json:"epoch"`
	Members     []int                    `json:"members"`
	Registered  bool                     `json:"registered"`
	QuorumOwner bool                     `json:"quorum_owner"`
	Alive       []int                    `json:"alive"`
	Networks    map[string]NetworkStatus `json:"networks"`
	Counters    Counters                 `json:"counters"`
	UptimeMS    int64                    `json:"uptime_ms"`
	GUP         GUPStatus                `json:"gup"`
	// Cluster and QuorumDevice are the node file's cluster name and quorum
	// LUN, as this node names them.
	Cluster      string `json:"cluster,omitempty"`
	QuorumDevice string `json:"quorum_device,omitempty"`
	// Peers are the other configured nodes as this node's failure
	// detector sees them.
	Peers []PeerStatus `json:"peers,omitempty"`
}

// PeerStatus is one other node in the failure detector's view: alive,
// its incarnation, and the networks this node hears it on.
type PeerStatus struct {
	Node        int      `json:"node"`
	Name        string   `json:"name"`
	Alive       bool     `json:"alive"`
	Incarnation uint64   `json:"incarnation"`
	NetworksUp  []string `json:"networks_up"`
}

// GUPStatus is the node's view of the Global Update Protocol and its
// streams.
type GUPStatus struct {
	Seq      uint64 `json:"seq"`
	Locker   int    `json:"locker"`
	Term     uint64 `json:"term"`
	IsLocker bool   `json:"is_locker"`
	Pending  int    `json:"pending"`
	// Streams: peers connected now, and the mesh's counters.
	Connected []int          `json:"connected"`
	Streams   StreamCounters `json:"streams"`
	// Dropped counts GUP messages that arrived on an authenticated
	// stream but did not decode or named another sender.
	Dropped uint64 `json:"dropped"`
}

// StreamCounters are the intra-cluster streams' totals.
type StreamCounters struct {
	Sent         uint64            `json:"sent"`
	Received     uint64            `json:"received"`
	Dropped      uint64            `json:"dropped"`
	Connections  uint64            `json:"connections"`
	Refused      map[string]uint64 `json:"refused"`
	BadRecords   uint64            `json:"bad_records"`
	DecodeErrors uint64            `json:"decode_errors"`
}

// NetworkStatus lists the peers heard on one network.
type NetworkStatus struct {
	Up         []int  `json:"up"`
	SendErrors uint64 `json:"send_errors"`
}

// Counters are receive and protocol counters.
type Counters struct {
	HeartbeatAccepted uint64            `json:"heartbeat_accepted"`
	HeartbeatDropped  map[string]uint64 `json:"heartbeat_dropped"`
	RegroupAccepted   uint64            `json:"regroup_accepted"`
	RegroupDropped    map[string]uint64 `json:"regroup_dropped"`
	Regroups          uint64            `json:"regroups"`
}

// StatusPath is the status resource.
const StatusPath = "/v1/status"

// MetricsPath is the Prometheus text exposition of the node's metrics.
const MetricsPath = "/v1/metrics"

// ErrorBody is the body of every answer other than 200 OK: what went
// wrong, in words, and a stable code a program can branch on.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	// Seq is the database's sequence number, in the answers that have one
	// (a failed transaction, a missing object).
	Seq uint64 `json:"seq,omitempty"`
}

// The codes of ErrorBody, each with its HTTP status.
const (
	CodeBadRequest       = "bad_request"        // 400: bad JSON, a transaction that is not well formed
	CodeForbidden        = "forbidden"          // 403: the caller is refused, or its role may not do this
	CodeNotFound         = "not_found"          // 404: no such endpoint, kind or object
	CodeMethodNotAllowed = "method_not_allowed" // 405: the endpoint exists, not with this method
	CodeTxFailed         = "tx_failed"          // 409: the transaction failed; nothing changed
	CodeTooLarge         = "too_large"          // 413: the request body is over the limit
	CodeInternal         = "internal"           // 500
	CodeNotServing       = "not_serving"        // 503: not a member, or stopping
	CodeTimeout          = "timeout"            // 504: no answer in time
)

// maxBody bounds an answer.
const maxBody = 1 << 20

// Get does GET path on the admin socket and returns the body; an answer
// other than 200 OK is an error carrying the body.
func Get(ctx context.Context, socket, path string) ([]byte, error) {
	c := NewClient(socket)
	defer c.Close()
	return c.Read(ctx, path)
}

// Read does GET path and returns the body; an answer other than 200 OK is
// an error carrying the body.
func (c *Client) Read(ctx context.Context, path string) ([]byte, error) {
	code, b, err := c.send(ctx, http.MethodGet, path, nil, maxBody)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return b, fmt.Errorf("GET %s from %s: %w", path, c.where, newStatusError(code, b))
	}
	return b, nil
}

// GetStatus asks the daemon behind the admin socket for its status and
// returns it with the answer as received.
func GetStatus(ctx context.Context, socket string) (Status, []byte, error) {
	c := NewClient(socket)
	defer c.Close()
	return c.Status(ctx)
}

// Status asks the daemon for its status and returns it with the answer as
// received.
func (c *Client) Status(ctx context.Context) (Status, []byte, error) {
	var st Status
	raw, err := c.Read(ctx, StatusPath)
	if err != nil {
		return st, raw, err
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, raw, fmt.Errorf("status from %s: %w", c.where, err)
	}
	return st, raw, nil
}
