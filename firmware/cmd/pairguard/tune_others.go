//go:build !linux

package main

import (
	"log/slog"

	"github.com/pairguard/pairguard/firmware/config"
)

// lockMemory does nothing outside Linux.
func lockMemory(*config.Config, *slog.Logger) {}
