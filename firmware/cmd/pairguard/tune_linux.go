package main

import (
	"log/slog"

	"golang.org/x/sys/unix"

	"github.com/pairguard/pairguard/firmware/config"
)

// lockMemory applies [heartbeat] lock-memory: every page of the daemon's
// present mappings (its code above all) is locked in RAM as it is
// faulted in (MCL_CURRENT|MCL_ONFAULT), so that under memory pressure the
// heartbeat path never waits for the card to read its code back. Nothing
// is faulted in ahead (the resident size does not jump to the whole
// binary), and mappings made later are not locked, so the heap the
// mirror grows can still be returned.
func lockMemory(cfg *config.Config, log *slog.Logger) {
	if !cfg.Heartbeat.LockMemory {
		return
	}
	if err := unix.Mlockall(unix.MCL_CURRENT | unix.MCL_ONFAULT); err != nil {
		log.Warn("cannot lock the daemon's memory", "err", err)
	}
}
