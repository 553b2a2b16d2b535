//go:build !linux

package daemon

import "context"

func newClock(_ context.Context, _ *Daemon, fire func()) clock { return newGoTimer(fire) }
