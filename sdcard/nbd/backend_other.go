//go:build !linux

package nbd

import (
	"errors"
	"os"
)

var errNoFallocate = errors.New("nbd: fallocate not supported on this OS")

func punchHole(*os.File, int64, int64) error { return errNoFallocate }

func zeroRange(*os.File, int64, int64) error { return errNoFallocate }
