package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
)

// duplicateKeys returns the keys that occur more than once in one JSON
// object of line (at any depth), as "path.key"; an error for a line that
// is not one JSON object.
func duplicateKeys(line []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	var dups []string
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k := kt.(string)
				if seen[k] {
					dups = append(dups, path+k)
				}
				seen[k] = true
				if err := walk(path + k + "."); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		case json.Delim('['):
			for dec.More() {
				if err := walk(path); err != nil {
					return err
				}
			}
			_, err = dec.Token()
			return err
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the record")
	}
	return dups, nil
}

func TestDuplicateKeys(t *testing.T) {
	for _, tc := range []struct {
		line string
		want string
	}{
		{`{"a":1,"b":{"a":2},"c":[{"a":1},{"a":2}]}`, ""},
		{`{"node":1,"msg":"x","node":1}`, "node"},
		{`{"a":{"b":1,"b":2}}`, "a.b"},
		{`{"a":[{"b":1,"b":2}]}`, "a.b"},
	} {
		got, err := duplicateKeys([]byte(tc.line))
		if err != nil || strings.Join(got, ",") != tc.want {
			t.Errorf("duplicateKeys(%s) = %v, %v; want %q", tc.line, got, err, tc.want)
		}
	}
	if _, err := duplicateKeys([]byte(`{"a":1`)); err == nil {
		t.Error("a truncated record: no error")
	}
}

// checkLogKeys fails t for every record of log that is not one JSON object
// or that holds a key twice (docs/clusterd.md: each key once per record).
func checkLogKeys(t *testing.T, name string, log string) {
	t.Helper()
	for i, line := range strings.Split(log, "\n") {
		if line == "" {
			continue
		}
		dups, err := duplicateKeys([]byte(line))
		if err != nil {
			t.Errorf("%s: line %d is not one JSON object (%v): %s", name, i+1, err, line)
		} else if len(dups) > 0 {
			t.Errorf("%s: line %d holds %v more than once: %s", name, i+1, dups, line)
		}
	}
}
