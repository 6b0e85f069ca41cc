package resmon

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/wolfpack-ha/wolfpack/gup/db"
	"github.com/wolfpack-ha/wolfpack/resources"
)

func TestDecodeOnline(t *testing.T) {
	m, err := Decode([]byte(`{"op":"online","resource":"app","type":"generic_application","props":{"command":"sleep 1","stop_timeout_ms":500,"probe":true,"environment":["A=1","B=2"],"empty":[]},"looks_alive_ms":100,"is_alive_ms":1000,"pending_timeout_ms":3000}`))
	if err != nil {
		t.Fatal(err)
	}
	want := resources.Props{
		"command": db.StringValue("sleep 1"), "stop_timeout_ms": db.IntValue(500), "probe": db.BoolValue(true),
		"environment": db.ListValue("A=1", "B=2"), "empty": db.ListValue(),
	}
	if m.Op != OpOnline || m.Resource != "app" || m.Type != "generic_application" || m.LooksAliveMs != 100 || m.IsAliveMs != 1000 || m.PendingTimeoutMs != 3000 {
		t.Fatalf("decoded %+v", m)
	}
	if !propsEqual(m.Props, want) {
		t.Fatalf("props %v, want %v", m.Props, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	for line, want := range map[string]string{
		`{"op":"reboot"}`:                               `unknown op "reboot"`,
		`{"op":"lease"}`:                                "lease without until_ns",
		`{"op":"lease","until_ns":1.5}`:                 "bad JSON",
		`{"op":"lease","until_ns":-1}`:                  "negative",
		`{"op":"offline"}`:                              "offline needs resource",
		`not json`:                                      "bad JSON",
		`{"op":"terminate","resource":"a"} {}`:          "after the object",
		`{"op":"terminate","resource":"a","x":1}`:       `unknown field "x"`,
		`{"op":"state","resource":"a","state":"weird"}`: `unknown resource state "weird"`,
		`{"op":"state","resource":"a","state":"failed","class":"grave"}`:                                                            `unknown failure class "grave"`,
		`{"op":"state","resource":"a","state":"online","class":"hard"}`:                                                             `a hard failure class on state online`,
		`{"op":"online","resource":"a","type":"t","looks_alive_ms":1,"is_alive_ms":1,"pending_timeout_ms":1,"props":{"p":{"x":1}}}`: "property p",
		`{"op":"online","resource":"a","type":"t","looks_alive_ms":1,"is_alive_ms":1,"pending_timeout_ms":1,"props":{"p":2.5}}`:     "not a 64-bit integer",
		`{"op":"online","resource":"a","type":"t","props":{}}`:                                                                      "must be positive",
		`{}`: "without op",
	} {
		_, err := Decode([]byte(line))
		if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%s) = %v; want a protocol error containing %q", line, err, want)
		}
	}
}

// A bad line, an unknown op and an oversized line are each reported, and
// the next good line is read as if nothing had happened.
func TestReaderSkipsBadLines(t *testing.T) {
	var in bytes.Buffer
	in.WriteString("{\"op\":\"lease\",\"until_ns\":5}\n")
	in.WriteString("garbage\n")
	in.WriteString("\n")
	in.WriteString("{\"op\":\"nope\"}\n")
	in.WriteString(`{"op":"terminate","resource":"` + strings.Repeat("x", MaxLine) + "\"}\n")
	in.WriteString("{\"op\":\"terminate\",\"resource\":\"b\"}\n")
	in.WriteString("{\"op\":\"offline\",\"resource\":\"c\"}") // no newline
	r := NewReader(&in)
	var got []string
	for {
		m, err := r.Read()
		if errors.Is(err, ErrProtocol) {
			got = append(got, "error: "+err.Error())
			continue
		}
		if err != nil {
			got = append(got, "end: "+err.Error())
			break
		}
		got = append(got, m.Op+" "+m.Resource)
	}
	want := []string{
		"lease ",
		"error: line 2: resmon: protocol: bad JSON: invalid character 'g' looking for beginning of value",
		"error: line 4: resmon: protocol: unknown op \"nope\"",
		"error: line 5: resmon: protocol: line of 1048609 bytes: the limit is 1048576",
		"terminate b",
		"end: " + io.ErrUnexpectedEOF.Error(),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, m := range []Message{
		{Op: OpLease, UntilNs: 0},
		{Op: OpLease, UntilNs: 123456789},
		{Op: OpOnline, Resource: "r", Type: "t", Props: resources.Props{"a": db.IntValue(-3), "l": db.ListValue()}, LooksAliveMs: 1, IsAliveMs: 2, PendingTimeoutMs: 3},
		{Op: OpOffline, Resource: "r"},
		{Op: OpTerminate, Resource: "r"},
		{Op: OpHello, PID: 7, Types: []string{"a", "b"}},
		{Op: OpState, Resource: "r", State: resources.Failed, Reason: "looks-alive: gone"},
		{Op: OpState, Resource: "r", State: resources.Failed, Reason: "start: not installed", Class: resources.FailHard},
	} {
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode(%+v): %v", m, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(%s): %v", b, err)
		}
		if !messagesEqual(got, m) {
			t.Errorf("round trip of %s: %+v, want %+v", b, got, m)
		}
	}
	if _, err := Encode(Message{Op: "bogus"}); !errors.Is(err, ErrProtocol) {
		t.Errorf("Encode(bogus op) = %v", err)
	}
}

func propsEqual(a, b resources.Props) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !v.Equal(w) {
			return false
		}
	}
	return true
}

func messagesEqual(a, b Message) bool {
	pa, pb := a.Props, b.Props
	a.Props, b.Props = nil, nil
	if len(a.Types) == 0 && len(b.Types) == 0 {
		a.Types, b.Types = nil, nil
	}
	return reflect.DeepEqual(a, b) && propsEqual(pa, pb)
}

// FuzzMessage: Decode never panics, and what it accepts encodes to a line
// that decodes to the same message.
func FuzzMessage(f *testing.F) {
	for _, s := range []string{
		`{"op":"lease","until_ns":99}`,
		`{"op":"online","resource":"a","type":"t","props":{"s":"x","i":3,"b":false,"l":["a"]},"looks_alive_ms":1,"is_alive_ms":2,"pending_timeout_ms":3}`,
		`{"op":"offline","resource":"a"}`,
		`{"op":"terminate","resource":"a"}`,
		`{"op":"hello","pid":3,"types":["x"]}`,
		`{"op":"state","resource":"a","state":"failed","reason":"r"}`,
		`{"op":"state","resource":"a","state":"online"} `,
		`{"op":"lease","until_ns":1,"resource":"x","reason":"y"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := Decode(line)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("Decode error %v does not match ErrProtocol", err)
			}
			return
		}
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)): %v", line, err)
		}
		m2, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v (encoded %s)", line, err, b)
		}
		if !messagesEqual(m, m2) {
			t.Fatalf("round trip of %q: %+v then %+v", line, m, m2)
		}
	})
}
