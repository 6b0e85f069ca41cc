//go:build !linux

package scsi

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

var errNoSGIO = errors.New("SG_IO is only available on Linux (GOOS=" + runtime.GOOS + ")")

// OpenSGIO fails: SG_IO is a Linux interface.
func OpenSGIO(path string) (*SGIODevice, error) {
	return nil, fmt.Errorf("open SG_IO device %s: %w", path, errNoSGIO)
}

// Execute fails: SG_IO is a Linux interface.
func (d *SGIODevice) Execute(ctx context.Context, cmd *Command) (Response, error) {
	return Response{}, fmt.Errorf("%s: %w", d.path, errNoSGIO)
}
