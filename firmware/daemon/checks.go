package daemon

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/engine"
)

// goCheck runs one health check every interval and reports a change after
// fall failures or rise successes in a row (keepalived's track_script).
func (d *Daemon) goCheck(ctx context.Context, c config.Check) {
	d.wg.Go(func() {
		healthy := true
		fails, oks := 0, 0
		t := time.NewTicker(c.Interval.Duration)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cctx, cancel := context.WithTimeout(ctx, c.Interval.Duration)
			cmd := exec.CommandContext(cctx, "/bin/sh", "-c", c.Command)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			cmd.WaitDelay = time.Second
			err := cmd.Run()
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				fails, oks = fails+1, 0
			} else {
				fails, oks = 0, oks+1
			}
			switch {
			case healthy && fails >= c.Fall:
				healthy = false
				d.log.Warn("health check failed", "check", c.Name, "fails", fails, "err", err)
				d.queue(engine.CheckChanged{Name: c.Name, Healthy: false})
			case !healthy && oks >= c.Rise:
				healthy = true
				d.log.Info("health check recovered", "check", c.Name)
				d.queue(engine.CheckChanged{Name: c.Name, Healthy: true})
			}
		}
	})
}

// checkChanged tracks each check by name: the node is healthy only when
// every check is, so one check recovering does not hide another that
// still fails.
func (d *Daemon) checkChanged(c engine.CheckChanged) {
	was := len(d.failing) == 0
	if c.Healthy {
		delete(d.failing, c.Name)
	} else {
		d.failing[c.Name] = true
	}
	now := len(d.failing) == 0
	if was == now {
		return
	}
	name := c.Name
	if !now {
		name = strings.Join(d.failingChecks(), ", ")
	}
	d.apply(d.eng.Step(d.mono(), engine.CheckChanged{Name: name, Healthy: now}))
}

// failingChecks lists the failing checks by name.
func (d *Daemon) failingChecks() []string {
	var names []string
	for n := range d.failing {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
