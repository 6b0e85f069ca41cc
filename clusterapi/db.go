package clusterapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"

	"github.com/wolfpack-ha/wolfpack/gup/db"
)

// The database endpoints of the admin API (docs/clusterd.md, "Admin API";
// docs/api/openapi.yaml); an error is an ErrorBody:
//
//	GET  /v1/db                     {seq, objects, locker, term, is_locker}
//	GET  /v1/db/{kind}              {seq, objects: [Object]}
//	GET  /v1/db/{kind}/{name}       {seq, object: Object}          404: no such object
//	POST /v1/db                     body Tx -> {seq}               409: the transaction's outcome, with seq
//	GET  /v1/db/watch               one JSON Change a line, as they are applied
//
// Reads are linearizable: the node asks the locker for the committed
// sequence number and answers once it has applied it; ?stale=1 answers at
// once from the node's own copy. A write is answered once it is applied on
// the node that was asked, so a read there that follows it sees it.
const DBPath = "/v1/db"

// Object is a database object as JSON. A property's JSON type gives its
// type: a string, an integer, true/false, or a list of strings.
type Object struct {
	Kind    string         `json:"kind"`
	Name    string         `json:"name"`
	Created uint64         `json:"created"`
	Version uint64         `json:"version"`
	Props   map[string]any `json:"props"`
}

// Op is one operation of a transaction. Op is "create", "set",
// "delete-props", "delete" or "check"; IfVersion (non-zero) and IfAbsent are
// the preconditions.
type Op struct {
	Op        string         `json:"op"`
	Kind      string         `json:"kind"`
	Name      string         `json:"name"`
	Props     map[string]any `json:"props,omitempty"`
	Remove    []string       `json:"remove,omitempty"`
	IfVersion uint64         `json:"if_version,omitempty"`
	IfAbsent  bool           `json:"if_absent,omitempty"`
}

// Tx is a transaction: all of its operations or none.
type Tx struct {
	Ops []Op `json:"ops"`
}

// TxResult answers POST /v1/db.
type TxResult struct {
	Seq uint64 `json:"seq"`
	// Error is the transaction's outcome when it failed (409): nothing
	// changed.
	Error string `json:"error,omitempty"`
}

// DBInfo answers GET /v1/db.
type DBInfo struct {
	Seq      uint64 `json:"seq"`
	Objects  int    `json:"objects"`
	Locker   int    `json:"locker"`
	Term     uint64 `json:"term"`
	IsLocker bool   `json:"is_locker"`
}

// ObjectResult and ListResult answer the reads.
type ObjectResult struct {
	Seq    uint64 `json:"seq"`
	Object Object `json:"object"`
}

type ListResult struct {
	Seq     uint64   `json:"seq"`
	Objects []Object `json:"objects"`
}

// Change is one line of GET /v1/db/watch.
type Change struct {
	Seq     uint64 `json:"seq"`
	Kind    string `json:"kind,omitempty"`
	Name    string `json:"name,omitempty"`
	Op      string `json:"op"`
	Version uint64 `json:"version,omitempty"`
}

var opNames = map[string]db.OpType{
	"create": db.OpCreate, "set": db.OpSet, "delete-props": db.OpDeleteProps, "delete": db.OpDelete, "check": db.OpCheck,
}

// ErrBadTx wraps the errors of a transaction that cannot be built.
var ErrBadTx = errors.New("api: bad transaction")

// DBTx builds the database transaction of t, checking its structure.
func (t Tx) DBTx() (db.Tx, error) {
	var out db.Tx
	if len(t.Ops) == 0 {
		return out, fmt.Errorf("%w: no operations", ErrBadTx)
	}
	for i, o := range t.Ops {
		typ, ok := opNames[o.Op]
		if !ok {
			return out, fmt.Errorf("%w: operation %d: op %q: want create, set, delete-props, delete or check", ErrBadTx, i, o.Op)
		}
		k, err := db.ParseKind(o.Kind)
		if err != nil {
			return out, fmt.Errorf("%w: operation %d: %v", ErrBadTx, i, err)
		}
		op := db.Op{Type: typ, Kind: k, Name: o.Name, Remove: o.Remove}
		if len(o.Props) > 0 {
			op.Props = map[string]db.Value{}
			for name, v := range o.Props {
				dv, err := Value(v)
				if err != nil {
					return out, fmt.Errorf("%w: operation %d: property %q: %v", ErrBadTx, i, name, err)
				}
				op.Props[name] = dv
			}
		}
		switch {
		case o.IfAbsent && o.IfVersion != 0:
			return out, fmt.Errorf("%w: operation %d: if_absent and if_version together", ErrBadTx, i)
		case o.IfAbsent:
			op = op.IfAbsent()
		case o.IfVersion != 0:
			op = op.IfVersion(o.IfVersion)
		}
		out.Ops = append(out.Ops, op)
	}
	if err := out.Validate(); err != nil {
		// Well formed, refused by the database's checks: db.ErrInvalid too.
		return out, fmt.Errorf("%w: %w", ErrBadTx, err)
	}
	return out, nil
}

// Value converts a decoded JSON value to a property value.
func Value(v any) (db.Value, error) {
	switch x := v.(type) {
	case string:
		return db.StringValue(x), nil
	case bool:
		return db.BoolValue(x), nil
	case float64:
		if x != math.Trunc(x) || x < math.MinInt64 || x > math.MaxInt64 {
			return db.Value{}, fmt.Errorf("number %v is not a 64-bit integer", x)
		}
		return db.IntValue(int64(x)), nil
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			return db.Value{}, fmt.Errorf("number %s is not a 64-bit integer", x)
		}
		return db.IntValue(i), nil
	case []any:
		items := make([]string, 0, len(x))
		for _, it := range x {
			s, ok := it.(string)
			if !ok {
				return db.Value{}, fmt.Errorf("a list holds strings only, not %T", it)
			}
			items = append(items, s)
		}
		return db.ListValue(items...), nil
	case []string:
		return db.ListValue(x...), nil
	case int:
		return db.IntValue(int64(x)), nil
	case int64:
		return db.IntValue(x), nil
	}
	return db.Value{}, fmt.Errorf("a value of JSON type %T: want a string, an integer, a bool or a list of strings", v)
}

// FromObject converts a database object to JSON's form.
func FromObject(o db.Object) Object {
	out := Object{Kind: o.Kind.String(), Name: o.Name, Created: o.Created, Version: o.Version, Props: map[string]any{}}
	for k, v := range o.Props {
		if j, ok := JSONValue(v); ok {
			out.Props[k] = j
		}
	}
	return out
}

// JSONValue is v in JSON's form (Value's inverse); false for a value
// without a type.
func JSONValue(v db.Value) (any, bool) {
	switch v.Type {
	case db.TypeString:
		return v.Str, true
	case db.TypeInt:
		return v.Int, true
	case db.TypeBool:
		return v.Bool, true
	case db.TypeList:
		return append([]string{}, v.List...), true
	}
	return nil, false
}

// FromChange converts a change notification.
func FromChange(c db.Change) Change {
	out := Change{Seq: c.Seq, Version: c.Version}
	switch c.Op {
	case db.Created:
		out.Op = "created"
	case db.Updated:
		out.Op = "updated"
	case db.Deleted:
		out.Op = "deleted"
	case db.Reset:
		out.Op = "reset"
	}
	if c.Op != db.Reset {
		out.Kind, out.Name = c.Kind.String(), c.Name
	}
	return out
}

// StatusError is an answer other than 200 OK: its HTTP status, the
// ErrorBody's code and message (Message is the body itself when it was not
// an ErrorBody).
type StatusError struct {
	Code    int
	ErrCode string
	Message string
}

func newStatusError(code int, body []byte) *StatusError {
	e := &StatusError{Code: code, Message: strings.TrimSpace(string(body))}
	var eb ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		e.ErrCode, e.Message = eb.Code, eb.Error
	}
	return e
}

func (e *StatusError) Error() string {
	if e.ErrCode != "" {
		return fmt.Sprintf("%d %s (%s): %s", e.Code, http.StatusText(e.Code), e.ErrCode, e.Message)
	}
	return fmt.Sprintf("%d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	code, b, err := c.send(ctx, method, path, body, MaxDBBody)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		if code == http.StatusConflict && out != nil {
			if err := json.Unmarshal(b, out); err == nil {
				return newStatusError(code, b)
			}
		}
		return fmt.Errorf("%s %s on %s: %w", method, path, c.where, newStatusError(code, b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s on %s: %w", method, path, c.where, err)
		}
	}
	return nil
}

// send does one request with body as JSON and returns the answer's status
// and up to limit bytes of its body.
func (c *Client) send(ctx context.Context, method, path string, body any, limit int64) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s on %s: %w", method, path, c.where, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s on %s: %w", method, path, c.where, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s on %s: %w", method, path, c.where, err)
	}
	return resp.StatusCode, b, nil
}

// MaxDBBody bounds an answer of the database endpoints.
const MaxDBBody = 256 << 20

// Commit sends a transaction; a transaction that failed (its outcome) is an
// error of type *StatusError with Code 409, and TxResult.Error says why.
func (c *Client) Commit(ctx context.Context, t Tx) (TxResult, error) {
	var r TxResult
	err := c.do(ctx, http.MethodPost, DBPath, t, &r)
	return r, err
}

func readQuery(stale bool) string {
	if stale {
		return "?stale=1"
	}
	return ""
}

// Get reads one object; stale reads the node's own copy without asking
// the locker.
func (c *Client) Get(ctx context.Context, kind, name string, stale bool) (ObjectResult, error) {
	var r ObjectResult
	err := c.do(ctx, http.MethodGet, DBPath+"/"+url.PathEscape(kind)+"/"+url.PathEscape(name)+readQuery(stale), nil, &r)
	return r, err
}

// List reads every object of a kind.
func (c *Client) List(ctx context.Context, kind string, stale bool) (ListResult, error) {
	var r ListResult
	err := c.do(ctx, http.MethodGet, DBPath+"/"+url.PathEscape(kind)+readQuery(stale), nil, &r)
	return r, err
}

// Info reads the node's view of the database and the locker.
func (c *Client) Info(ctx context.Context) (DBInfo, error) {
	var r DBInfo
	err := c.do(ctx, http.MethodGet, DBPath, nil, &r)
	return r, err
}
