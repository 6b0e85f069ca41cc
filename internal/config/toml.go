package config

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Error is one problem in a node file. Key is the full key
// ("timing.heartbeat_interval", "nodes[1].addrs[0]": arrays of tables
// and arrays counted from 0); Line and Column (from 1) are zero when
// unknown, File is empty outside Load.
type Error struct {
	File         string
	Line, Column int
	Key          string
	Msg          string
}

// Error is "FILE:LINE:COLUMN: KEY: MSG", leaving out what is unknown
// ("LINE:COLUMN: KEY: MSG" from Parse, which has no file name).
func (e *Error) Error() string {
	var b strings.Builder
	parts := []string{}
	if e.File != "" {
		parts = append(parts, e.File)
	}
	if e.Line > 0 {
		parts = append(parts, fmt.Sprint(e.Line))
		if e.Column > 0 {
			parts = append(parts, fmt.Sprint(e.Column))
		}
	}
	if len(parts) > 0 {
		b.WriteString(strings.Join(parts, ":") + ": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes every Error an ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Parse decodes a node file. Unknown keys, duplicate keys and values of
// the wrong type are refused; the error (errors.Join of *Error, one per
// unknown key) gives the line, the column and the key.
func Parse(b []byte) (*File, error) {
	var f File
	err := toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields().Decode(&f)
	var strict *toml.StrictMissingError
	var de *toml.DecodeError
	switch {
	case err == nil:
		return &f, nil
	case errors.As(err, &strict):
		var errs []error
		for i := range strict.Errors {
			e := fromDecode(&strict.Errors[i])
			e.Msg = "unknown key (docs/clusterd.md, \"The node file\", lists them)"
			errs = append(errs, e)
		}
		return nil, errors.Join(errs...)
	case errors.As(err, &de):
		return nil, fromDecode(de)
	default:
		return nil, &Error{Msg: err.Error()}
	}
}

func fromDecode(de *toml.DecodeError) *Error {
	line, col := de.Position()
	return &Error{Line: line, Column: col, Key: strings.Join(de.Key(), "."), Msg: plainMessage(strings.TrimPrefix(de.Error(), "toml: "))}
}

var mismatch = regexp.MustCompile(`^cannot decode TOML (.+?) into (?:struct field .* of type )?(\S+)$`)

// plainMessage says a type mismatch in TOML's words rather than Go's.
func plainMessage(msg string) string {
	m := mismatch.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	want := map[string]string{
		"int": "an integer", "string": "a string", "[]string": "an array of strings",
		"config.Duration": `a duration string such as "100ms"`, "*config.Duration": `a duration string such as "100ms"`, "*int": "an integer",
		"[]config.Node": "[[nodes]] tables", "[]config.Network": "[[networks]] tables",
	}[m[2]]
	if want == "" {
		want = "a table"
	}
	return fmt.Sprintf("wrong type: a TOML %s, want %s", m[1], want)
}

// Marshal encodes the file as Parse reads it: TOML, the top-level keys,
// then [cluster], [quorum], the optional sections, [[networks]] and
// [[nodes]]. Every writer of node files in the tree goes through it.
func (f *File) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# Wolfpack node file (docs/clusterd.md, \"The node file\").\n\n")
	if err := toml.NewEncoder(&b).SetIndentTables(false).Encode(f); err != nil {
		return nil, fmt.Errorf("config: encode: %w", err)
	}
	return b.Bytes(), nil
}

// locate gives each *Error in err the file and, when it has none, the
// line and column of its key (or of the nearest enclosing key) in doc.
func locate(err error, path string, doc []byte) error {
	var pos map[string][2]int
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var ce *Error
		if !errors.As(e, &ce) {
			continue
		}
		ce.File = path
		if ce.Line > 0 || ce.Key == "" {
			continue
		}
		if pos == nil {
			pos = positions(doc)
		}
		for k := ce.Key; k != ""; k = parentKey(k) {
			if p, ok := pos[k]; ok {
				ce.Line, ce.Column = p[0], p[1]
				break
			}
		}
	}
	return err
}

// parentKey strips the last part of a key: "nodes[1].addrs[0]" →
// "nodes[1].addrs" → "nodes[1]" → "nodes" → "".
func parentKey(k string) string {
	i := strings.LastIndexAny(k, ".[")
	if i < 0 {
		return ""
	}
	return k[:i]
}

// positions maps every key of a well-formed TOML document, in Error.Key's
// notation, to the line and column where it is written: a table's header,
// a key-value's key, an array element.
func positions(doc []byte) map[string][2]int {
	pos := map[string][2]int{}
	var p unstable.Parser
	p.Reset(doc)
	at := func(r unstable.Range) [2]int {
		s := p.Shape(r)
		return [2]int{s.Start.Line, s.Start.Column}
	}
	keyOf := func(n *unstable.Node) (string, unstable.Range) {
		var parts []string
		var first unstable.Range
		it := n.Key()
		for it.Next() {
			if len(parts) == 0 {
				first = it.Node().Raw
			}
			parts = append(parts, string(it.Node().Data))
		}
		return strings.Join(parts, "."), first
	}
	var value func(key string, v *unstable.Node, where [2]int)
	value = func(key string, v *unstable.Node, where [2]int) {
		if _, seen := pos[key]; !seen {
			pos[key] = where
		}
		switch v.Kind {
		case unstable.Array:
			i := 0
			for it := v.Children(); it.Next(); i++ {
				el := it.Node()
				w := where
				if el.Raw.Length > 0 {
					w = at(el.Raw)
				}
				value(fmt.Sprintf("%s[%d]", key, i), el, w)
			}
		case unstable.InlineTable:
			for it := v.Children(); it.Next(); {
				kv := it.Node()
				k, r := keyOf(kv)
				value(key+"."+k, kv.Value(), at(r))
			}
		}
	}
	table, arrays := "", map[string]int{}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table:
			k, r := keyOf(e)
			table = k
			pos[table] = at(r)
		case unstable.ArrayTable:
			k, r := keyOf(e)
			table = fmt.Sprintf("%s[%d]", k, arrays[k])
			arrays[k]++
			pos[table] = at(r)
			if _, seen := pos[k]; !seen {
				pos[k] = at(r)
			}
		case unstable.KeyValue:
			k, r := keyOf(e)
			if table != "" {
				k = table + "." + k
			}
			value(k, e.Value(), at(r))
		}
	}
	return pos
}
