package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"make"}, {"build"}, {"build", "-o"}, {"build", "-o", "x", "extra"}, {"build", "-bogus"}} {
		err := run(context.Background(), slog.New(slog.DiscardHandler), args, &bytes.Buffer{})
		var u usageError
		if !errors.As(err, &u) || !strings.Contains(err.Error(), "usage: wolfpack-appliance build -o DIR") {
			t.Errorf("%q: got %v, want a usage error", args, err)
		}
	}
}
