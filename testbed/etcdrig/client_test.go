package etcdrig

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeEtcd answers the gateway's put, range and status and gRPC's KV.Put
// over HTTP/1.1 and HTTP/2 without TLS, as an etcd 3.4 client port does,
// from a map.
type fakeEtcd struct {
	mu    sync.Mutex
	kv    map[string]string
	conns map[string]bool // remote addresses seen
	// grpcStatus, if set, is returned instead of "0".
	grpcStatus string
}

func (f *fakeEtcd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns[r.RemoteAddr] = true
	b, _ := io.ReadAll(r.Body)
	if r.URL.Path == "/etcdserverpb.KV/Put" {
		f.grpcPut(w, r, b)
		return
	}
	var req map[string]string
	if err := json.Unmarshal(b, &req); err != nil || r.Method != http.MethodPost {
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
		return
	}
	dec := func(s string) string { v, _ := base64.StdEncoding.DecodeString(s); return string(v) }
	switch r.URL.Path {
	case "/v3/kv/put":
		if strings.HasPrefix(dec(req["key"]), "forbidden") {
			http.Error(w, `{"error":"etcdserver: permission denied","code":7}`, http.StatusForbidden)
			return
		}
		f.kv[dec(req["key"])] = dec(req["value"])
		fmt.Fprint(w, `{"header":{"cluster_id":"1","member_id":"2","revision":"3","raft_term":"4"}}`)
	case "/v3/kv/range":
		v, ok := f.kv[dec(req["key"])]
		if !ok {
			fmt.Fprint(w, `{"header":{}}`)
			return
		}
		fmt.Fprintf(w, `{"header":{},"kvs":[{"key":%q,"value":%q}],"count":"1"}`, req["key"], base64.StdEncoding.EncodeToString([]byte(v)))
	case "/v3/maintenance/status":
		fmt.Fprint(w, `{"header":{"member_id":"10276657743932975437"},"version":"3.4.23","leader":"10276657743932975437"}`)
	default:
		http.NotFound(w, r)
	}
}

// grpcPut decodes a PutRequest frame field by field (an encoder that got
// the wire format wrong fails here).
func (f *fakeEtcd) grpcPut(w http.ResponseWriter, r *http.Request, b []byte) {
	if r.ProtoMajor != 2 || r.Header.Get("Content-Type") != "application/grpc" {
		http.Error(w, "not gRPC", http.StatusUnsupportedMediaType)
		return
	}
	w.Header().Set("Content-Type", "application/grpc")
	w.Header().Set("Trailer", "Grpc-Status, Grpc-Message")
	fail := func(msg string) {
		w.Header().Set("Grpc-Status", "13")
		w.Header().Set("Grpc-Message", msg)
	}
	if len(b) < 5 || b[0] != 0 || int(binary.BigEndian.Uint32(b[1:5])) != len(b)-5 {
		fail("bad frame")
		return
	}
	m := b[5:]
	fields := map[byte]string{}
	for len(m) > 0 {
		tag := m[0]
		n, k := binary.Uvarint(m[1:])
		if k <= 0 || uint64(len(m)-1-k) < n {
			fail("bad field")
			return
		}
		fields[tag] = string(m[1+k : 1+k+int(n)])
		m = m[1+k+int(n):]
	}
	if f.grpcStatus != "" {
		w.Header().Set("Grpc-Status", f.grpcStatus)
		w.Header().Set("Grpc-Message", "injected")
		return
	}
	f.kv[fields[0x0a]] = fields[0x12]
	w.Write([]byte{0, 0, 0, 0, 2, 0x0a, 0}) // a PutResponse with an empty header
	w.Header().Set("Grpc-Status", "0")
}

func newFake(t *testing.T) (*fakeEtcd, *httptest.Server) {
	f := &fakeEtcd{kv: map[string]string{}, conns: map[string]bool{}}
	srv := httptest.NewUnstartedServer(f)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return f, srv
}

func TestGateway(t *testing.T) {
	f, srv := newFake(t)
	g := NewGateway(srv.URL+"/", nil)
	defer g.Close()
	ctx := t.Context()
	for i := range 20 {
		if err := g.Put(ctx, "k/é", fmt.Sprintf("v%d\x00", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := g.Get(ctx, "k/é"); err != nil || got != "v19\x00" {
		t.Errorf("Get = %q, %v; want the last put's value", got, err)
	}
	if len(f.conns) != 1 {
		t.Errorf("21 requests on %d connections, want 1 kept alive", len(f.conns))
	}
	if _, err := g.Get(ctx, "missing"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("Get of a missing key: %v", err)
	}
	if err := g.Put(ctx, "forbidden", "x"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Errorf("refused put: err = %v, want the status and etcd's message", err)
	}
	st, err := g.Status(ctx)
	if err != nil || st.Member != 10276657743932975437 || st.Leader != st.Member || st.Version != "3.4.23" {
		t.Errorf("Status = %+v, %v", st, err)
	}
}

func TestGRPC(t *testing.T) {
	f, srv := newFake(t)
	g := NewGRPC(srv.URL, nil)
	defer g.Close()
	ctx := t.Context()
	long := strings.Repeat("x", 300) // a length that takes two varint bytes
	for i := range 10 {
		if err := g.Put(ctx, "key", fmt.Sprintf("%s%d", long, i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.kv["key"]; got != long+"9" {
		t.Errorf("the fake holds %q, want the last put's value", got)
	}
	if len(f.conns) != 1 {
		t.Errorf("10 puts on %d connections, want 1", len(f.conns))
	}
	f.grpcStatus = "9"
	if err := g.Put(ctx, "key", "v"); err == nil || !strings.Contains(err.Error(), `grpc-status "9"`) {
		t.Errorf("a failed put: err = %v, want the grpc-status", err)
	}
}
