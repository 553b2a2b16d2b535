package main

import (
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/pairguard/pairguard/firmware/config"
)

// tuneMemory sets the Go runtime's soft memory limit from memory-limit,
// unless GOMEMLIMIT in the environment already set one. The collector
// then works harder as the heap, stacks and runtime near the limit and the
// scavenger hands memory back to the kernel sooner, which keeps an
// appliance's daemon small at rest and after a mirror round.
func tuneMemory(cfg *config.Config, log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if n := cfg.MemoryLimitBytes(); n > 0 {
		debug.SetMemoryLimit(n)
		log.Debug("soft memory limit", "bytes", n)
	}
}
