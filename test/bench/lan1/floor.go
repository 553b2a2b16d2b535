package main

import (
	"fmt"
	"os/exec"
	"slices"
	"time"
)

// The floor of the rest phase: what merely waking up every interval costs
// on this machine, measured beside the daemons. A single-threaded process
// (perl, Time::HiRes: one nanosleep per interval) sleeps one interval at a
// time and does nothing else; a Go process would add its runtime's
// monitor thread, which polls while a goroutine runs. A heartbeat daemon
// wakes at least that often to send, and as often again to receive. On a
// virtual machine a wake-up can cost tens of microseconds of CPU time, so
// the daemons' figures are read against this one.

// startFloors starts a -floor child per distinct interval of set's
// Pairguard settings (the default interval for 0).
func startFloors(set []Setting) (ivs []time.Duration, pids []int, stop func(), err error) {
	for _, s := range set {
		iv := s.Interval
		if s.Impl != Pairguard {
			continue
		}
		if iv == 0 {
			iv = 100 * time.Millisecond
		}
		if !slices.Contains(ivs, iv) {
			ivs = append(ivs, iv)
		}
	}
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	for _, iv := range ivs {
		c := exec.Command("perl", "-MTime::HiRes=sleep", "-e", fmt.Sprintf("sleep(%g) while 1", iv.Seconds()))
		if err := c.Start(); err != nil {
			stop()
			return nil, nil, func() {}, err
		}
		cmds = append(cmds, c)
		pids = append(pids, c.Process.Pid)
	}
	return ivs, pids, stop, nil
}

func floorRow(iv time.Duration, cpu, switches float64) string {
	return fmt.Sprintf("| floor: a process that only sleeps %v at a time (perl, nanosleep) | 1 | %.2f%% | | %.0f | | | | |", iv, 100*cpu, switches)
}
