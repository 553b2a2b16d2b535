package config

import (
	"fmt"
	"strconv"
	"strings"
)

// The runtime keys: how the daemon's process keeps the heartbeat path on
// time and its memory small.
//
//   - heartbeat.rt-priority (default 0, off): 1 to 99 runs the heartbeat
//     path (the loop that sends, decides and claims, and the failover-line
//     receivers) on threads of their own with SCHED_FIFO at this priority,
//     as keepalived's vrrp_rt_priority does for its VRRP process. 10 is a
//     good value: above every normal task, below the kernel's threaded
//     interrupt handlers (50) that deliver the frames, and far below the
//     watchdog and migration threads (99).
//   - heartbeat.lock-memory (default false): lock the daemon's pages in
//     RAM (mlockall MCL_CURRENT once started), so that a heartbeat never
//     waits for its code to be read back from the card under memory
//     pressure. Pages mapped later are not locked, so the heap can still
//     shrink after a mirror round.
//   - memory-limit (default DefaultMemoryLimit): the Go runtime's soft
//     memory limit (what GOMEMLIMIT sets; GOMEMLIMIT in the environment
//     wins); "0" turns it off.

// DefaultMemoryLimit is the soft limit of the Go heap, stacks and runtime
// (not the binary's code): chosen by measurement (test/bench/README.md),
// above what a node at rest and a mirror round use, so that the collector
// only works harder near it and memory is returned after a round.
const DefaultMemoryLimit = "16MiB"

// MaxRTPriority is SCHED_FIFO's highest priority on Linux.
const MaxRTPriority = 99

func (c *Config) defaultsRuntime() {
	if c.MemoryLimit == "" {
		c.MemoryLimit = DefaultMemoryLimit
	}
}

func (c *Config) checkRuntime(p *problems) {
	if r := c.Heartbeat.RTPriority; r < 0 || r > MaxRTPriority {
		p.bad("heartbeat.rt-priority", "must be between 0 (off) and %d, not %d", MaxRTPriority, r)
	}
	if _, err := ParseSize(c.MemoryLimit); err != nil {
		p.bad("memory-limit", "%v", err)
	}
}

// MemoryLimitBytes returns memory-limit in bytes (0: none).
func (c *Config) MemoryLimitBytes() int64 {
	n, _ := ParseSize(c.MemoryLimit)
	return n
}

// ParseSize parses a size in bytes such as "12MiB", "512KiB", "1GiB" or a
// bare number; "0" means none.
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	num := s
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = v, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("not a size such as \"12MiB\", \"512KiB\" or \"0\": %q", s)
	}
	return n * mult, nil
}
