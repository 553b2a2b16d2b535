package main

import (
	"fmt"
	"os"
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
// the daemons' figures are read against this one. A second floor is this
// benchmark's own binary in goFloorEnv mode: a Go process whose one
// goroutine waits on a runtime timer every interval, as the daemon's loop
// does, and does nothing else: what the Go runtime's way of waking adds.

// goFloorEnv, set to an interval, makes the binary a Go floor process.
const goFloorEnv = "PGBENCH_GO_FLOOR"

// goFloor waits on a timer every iv, forever, drift-free (the daemon's
// heartbeat schedule).
func goFloor(iv time.Duration) {
	next := time.Now().Add(iv)
	t := time.NewTimer(iv)
	for range t.C {
		next = next.Add(iv)
		t.Reset(time.Until(next))
	}
}

type floorProc struct {
	iv   time.Duration
	kind string // "perl, nanosleep" or "Go, runtime timer, GOMAXPROCS 1"
	pid  int
}

// startFloors starts a perl and a Go floor per distinct interval of set's
// Pairguard settings (the default interval for 0).
func startFloors(set []Setting) (floors []floorProc, stop func(), err error) {
	var ivs []time.Duration
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
	self, err := os.Executable()
	if err != nil {
		return nil, func() {}, err
	}
	for _, iv := range ivs {
		perl := exec.Command("perl", "-MTime::HiRes=sleep", "-e", fmt.Sprintf("sleep(%g) while 1", iv.Seconds()))
		gof := exec.Command(self)
		// One processor, as the daemon at rest (firmware/daemon/procs.go).
		gof.Env = append(os.Environ(), goFloorEnv+"="+iv.String(), "GOMAXPROCS=1")
		for _, c := range []*exec.Cmd{perl, gof} {
			if err := c.Start(); err != nil {
				stop()
				return nil, func() {}, err
			}
			cmds = append(cmds, c)
		}
		floors = append(floors, floorProc{iv, "perl, nanosleep", perl.Process.Pid}, floorProc{iv, "Go, runtime timer, GOMAXPROCS 1", gof.Process.Pid})
	}
	return floors, stop, nil
}

func floorRow(f floorProc, cpu, switches float64) string {
	return fmt.Sprintf("| floor: a process that only sleeps %v at a time (%s) | 1 | %.2f%% | | %.0f | | | | |", f.iv, f.kind, 100*cpu, switches)
}
