package iscsi

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Text key limits (RFC 7143 6.1: key names up to 63 bytes; values up to
// 8192 bytes before encoding, so hex-encoded binary values twice that).
const (
	MaxKeyLen   = 63
	MaxValueLen = 2*8192 + 2
	// MaxTextKeys bounds the number of pairs ParseText accepts.
	MaxTextKeys = 512
	// MaxTextLen bounds a text exchange spread over several PDUs.
	MaxTextLen = 64 << 10
)

// ErrText is a malformed key=value text.
var ErrText = errors.New("iscsi: malformed text")

// KeyValue is one key=value pair of a text or login data segment.
type KeyValue struct {
	Key, Value string
}

// ParseText parses a data segment of NUL-terminated key=value pairs (RFC
// 7143 6.1). Padding NULs at the end are accepted; a missing final NUL is
// tolerated. It rejects keys or values over the limits, characters outside
// the key alphabet, and duplicate keys.
func ParseText(b []byte) ([]KeyValue, error) {
	if len(b) > MaxTextLen {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrText, len(b), MaxTextLen)
	}
	var kvs []KeyValue
	seen := map[string]bool{}
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		var item []byte
		if i < 0 {
			item, b = b, nil
		} else {
			item, b = b[:i], b[i+1:]
		}
		if len(item) == 0 {
			continue // padding
		}
		eq := bytes.IndexByte(item, '=')
		if eq < 0 {
			return nil, fmt.Errorf("%w: %q has no '='", ErrText, clip(item))
		}
		k, v := item[:eq], item[eq+1:]
		if len(k) == 0 || len(k) > MaxKeyLen {
			return nil, fmt.Errorf("%w: key of %d bytes", ErrText, len(k))
		}
		for _, c := range k {
			if !keyChar(c) {
				return nil, fmt.Errorf("%w: key %q has character %q", ErrText, clip(k), c)
			}
		}
		if len(v) > MaxValueLen {
			return nil, fmt.Errorf("%w: value of %q is %d bytes", ErrText, k, len(v))
		}
		if len(kvs) >= MaxTextKeys {
			return nil, fmt.Errorf("%w: more than %d keys", ErrText, MaxTextKeys)
		}
		ks := string(k)
		if seen[ks] {
			return nil, fmt.Errorf("%w: key %q repeated", ErrText, ks)
		}
		seen[ks] = true
		kvs = append(kvs, KeyValue{ks, string(v)})
	}
	return kvs, nil
}

func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// keyChar reports whether c may appear in a key name (RFC 7143 6.1:
// a-z, A-Z, 0-9, '.', '-', '+', '@', '_').
func keyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '-' || c == '+' || c == '@' || c == '_'
}

// AppendText appends kvs as NUL-terminated key=value pairs.
func AppendText(b []byte, kvs []KeyValue) []byte {
	for _, kv := range kvs {
		b = append(b, kv.Key...)
		b = append(b, '=')
		b = append(b, kv.Value...)
		b = append(b, 0)
	}
	return b
}

// decodeBinary decodes a binary-value (RFC 7143 6.1.1: 0x hex or 0b base64).
func decodeBinary(s string) ([]byte, error) {
	switch {
	case len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X"):
		h := s[2:]
		if len(h)%2 == 1 {
			h = "0" + h
		}
		return hex.DecodeString(h)
	case len(s) > 2 && (s[:2] == "0b" || s[:2] == "0B"):
		return base64.StdEncoding.DecodeString(s[2:])
	}
	return nil, fmt.Errorf("%w: binary value %q is neither 0x hex nor 0b base64", ErrText, clipS(s))
}

func clipS(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

func encodeHex(b []byte) string { return "0x" + hex.EncodeToString(b) }

func lookup(kvs []KeyValue, key string) (string, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return "", false
}

func hasValue(list, v string) bool {
	for _, x := range strings.Split(list, ",") {
		if x == v {
			return true
		}
	}
	return false
}
