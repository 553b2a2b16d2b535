package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// The floor of the rest phase: what merely waking up every interval costs
// on this machine, measured beside the daemons. A process (this command,
// run again with -floor) sleeps one interval at a time with a raw
// nanosleep on a locked thread and does nothing else; a heartbeat daemon
// wakes at least that often to send, and as often again to receive. On a
// virtual machine a wake-up can cost tens of microseconds of CPU time, so
// the daemons' figures are read against this one.

// floorMain is the -floor child: sleep iv at a time until killed.
func floorMain(iv time.Duration) {
	runtime.LockOSThread()
	ts := unix.NsecToTimespec(int64(iv))
	for {
		_ = unix.Nanosleep(&ts, nil)
	}
}

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
	self, err := os.Executable()
	if err != nil {
		return nil, nil, func() {}, err
	}
	var cmds []*exec.Cmd
	stop = func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	for _, iv := range ivs {
		c := exec.Command(self, "-floor", iv.String())
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
	return fmt.Sprintf("| floor: a thread that only sleeps %v at a time (raw nanosleep) | 1 | %.2f%% | | %.0f | | | | |", iv, 100*cpu, switches)
}
