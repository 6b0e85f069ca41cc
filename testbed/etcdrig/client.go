package etcdrig

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/wolfpack-ha/wolfpack/testbed/loadgen"
)

// DialFunc dials a member; the rig's dials from its client namespace.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// maxBody bounds an answer read into memory.
const maxBody = 1 << 20

// Gateway is an etcd v3 client over the JSON gRPC gateway etcd 3.4 serves
// on its client port (POST /v3/kv/put with base64 key and value). It keeps
// one HTTP/1.1 connection alive (its own transport: clients never share a
// connection). It is a loadgen.Getter.
type Gateway struct {
	// URL is the member's client URL, http://host:2379.
	URL  string
	http *http.Client
}

var _ loadgen.Getter = (*Gateway)(nil)

// NewGateway returns a gateway client of the member at url that dials
// with dial (nil: net.Dialer).
func NewGateway(url string, dial DialFunc) *Gateway {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	tr := &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &Gateway{URL: strings.TrimSuffix(url, "/"), http: &http.Client{Transport: tr}}
}

// Close closes the client's idle connection.
func (g *Gateway) Close() { g.http.CloseIdleConnections() }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// call POSTs req as JSON to path and decodes a 200 answer into resp (nil:
// discarded, though read to the end so the connection is reused).
func (g *Gateway) call(ctx context.Context, path string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("etcd gateway %s%s: %w", g.URL, path, err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, g.URL+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("etcd gateway %s%s: %w", g.URL, path, err)
	}
	hr.Header.Set("Content-Type", "application/json")
	res, err := g.http.Do(hr)
	if err != nil {
		return fmt.Errorf("etcd gateway %s%s: %w", g.URL, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return fmt.Errorf("etcd gateway %s%s: %w", g.URL, path, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd gateway %s%s: %s: %s", g.URL, path, res.Status, bytes.TrimSpace(b))
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(b, resp); err != nil {
		return fmt.Errorf("etcd gateway %s%s: %w: %s", g.URL, path, err, bytes.TrimSpace(b))
	}
	return nil
}

// Put writes value under key (a linearizable write: etcd answers once the
// entry is committed by a majority and applied by this member).
func (g *Gateway) Put(ctx context.Context, key, value string) error {
	return g.call(ctx, "/v3/kv/put", map[string]string{"key": b64(key), "value": b64(value)}, nil)
}

// Get reads key (a linearizable read).
func (g *Gateway) Get(ctx context.Context, key string) (string, error) {
	var resp struct {
		KVs []struct {
			Value string `json:"value"`
		} `json:"kvs"`
	}
	if err := g.call(ctx, "/v3/kv/range", map[string]string{"key": b64(key)}, &resp); err != nil {
		return "", err
	}
	if len(resp.KVs) == 0 {
		return "", fmt.Errorf("etcd gateway %s: key %q not found", g.URL, key)
	}
	v, err := base64.StdEncoding.DecodeString(resp.KVs[0].Value)
	if err != nil {
		return "", fmt.Errorf("etcd gateway %s: key %q: value: %w", g.URL, key, err)
	}
	return string(v), nil
}

// Status is the part of a member's maintenance status the rig uses.
type Status struct {
	// Member and Leader are raft member ids.
	Member, Leader uint64
	Version        string
}

// Status asks the member for its status (POST /v3/maintenance/status).
func (g *Gateway) Status(ctx context.Context) (Status, error) {
	// The gateway writes 64-bit integers as JSON strings.
	var resp struct {
		Header struct {
			MemberID string `json:"member_id"`
		} `json:"header"`
		Leader  string `json:"leader"`
		Version string `json:"version"`
	}
	if err := g.call(ctx, "/v3/maintenance/status", struct{}{}, &resp); err != nil {
		return Status{}, err
	}
	var st Status
	var err1, err2 error
	st.Member, err1 = strconv.ParseUint(resp.Header.MemberID, 10, 64)
	st.Leader, err2 = strconv.ParseUint(resp.Leader, 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return Status{}, fmt.Errorf("etcd gateway %s: status: %w", g.URL, err)
	}
	st.Version = resp.Version
	return st, nil
}

// GRPC is a minimal etcd v3 client of KV.Put over gRPC itself (HTTP/2
// without TLS, a hand-encoded PutRequest), not the gateway: the
// benchmark's cross-check of what the gateway adds to a put. It keeps one
// HTTP/2 connection (its own transport). It is a loadgen.Client.
type GRPC struct {
	// URL is the member's client URL, http://host:2379.
	URL  string
	http *http.Client
}

var _ loadgen.Client = (*GRPC)(nil)

// NewGRPC returns a gRPC client of the member at url that dials with dial
// (nil: net.Dialer).
func NewGRPC(url string, dial DialFunc) *GRPC {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true) // prior knowledge: etcd's port takes HTTP/2 without TLS for gRPC
	tr := &http.Transport{DialContext: dial, Protocols: &p, DisableCompression: true}
	return &GRPC{URL: strings.TrimSuffix(url, "/"), http: &http.Client{Transport: tr}}
}

// Close closes the client's idle connection.
func (g *GRPC) Close() { g.http.CloseIdleConnections() }

// putRequest is etcdserverpb.PutRequest with key (field 1) and value
// (field 2) set, in the protobuf wire format, in a gRPC message frame
// (uncompressed flag, 4-byte big-endian length).
func putRequest(key, value string) []byte {
	var m []byte
	for _, f := range []struct {
		tag byte
		s   string
	}{{0x0a, key}, {0x12, value}} { // field<<3 | wire type 2 (length-delimited)
		m = append(m, f.tag)
		m = binary.AppendUvarint(m, uint64(len(f.s)))
		m = append(m, f.s...)
	}
	frame := make([]byte, 5, 5+len(m))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(m)))
	return append(frame, m...)
}

// Put writes value under key through KV.Put.
func (g *GRPC) Put(ctx context.Context, key, value string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.URL+"/etcdserverpb.KV/Put", bytes.NewReader(putRequest(key, value)))
	if err != nil {
		return fmt.Errorf("etcd grpc %s: %w", g.URL, err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	res, err := g.http.Do(req)
	if err != nil {
		return fmt.Errorf("etcd grpc %s: put: %w", g.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, maxBody))
	if err != nil {
		return fmt.Errorf("etcd grpc %s: put: %w", g.URL, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd grpc %s: put: %s", g.URL, res.Status)
	}
	// The status is in the trailers, or in the headers of an answer
	// without a body ("trailers-only").
	st, msg := res.Trailer.Get("Grpc-Status"), res.Trailer.Get("Grpc-Message")
	if st == "" {
		st, msg = res.Header.Get("Grpc-Status"), res.Header.Get("Grpc-Message")
	}
	if st != "0" {
		return fmt.Errorf("etcd grpc %s: put: grpc-status %q: %s", g.URL, st, msg)
	}
	if len(b) < 5 {
		return fmt.Errorf("etcd grpc %s: put: answer of %d bytes, no message", g.URL, len(b))
	}
	return nil
}
