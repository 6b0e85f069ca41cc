// Package stream carries the cluster's reliable streams between nodes: the
// Global Update Protocol's messages and the database a joiner receives.
// Heartbeats and regroup stay on authenticated UDP (docs/clusterd.md); a
// stream has no datagram's size limit.
//
// Every stream is TLS 1.3 with a certificate at both ends, issued by the
// cluster's CA and naming one node (docs/streams.md): a node accepts only a
// configured peer and reaches only the node it dialled. Inside, frames
// carry a header (magic, version, type, length) and a payload of up to
// Config.MaxFrame bytes; each side's first frame is a hello that names its
// cluster tag, node id, incarnation and versions, and a connection whose
// hello does not match is refused.
//
// A Mesh is one node's set of streams: Send queues a frame for a peer and
// never blocks, connections are dialled on demand and redialled with
// backoff, and a Handler receives the frames. Frames on one connection
// arrive in order and at most once; a frame can be lost when a connection
// breaks, so the protocol above retransmits.
package stream
