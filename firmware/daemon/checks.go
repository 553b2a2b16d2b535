package daemon

import (
	"context"
	"os/exec"
	"time"

	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/engine"
)

// goCheck runs one health check every interval and reports a change after
// fall failures or rise successes in a row (keepalived's track_script).
func (d *Daemon) goCheck(ctx context.Context, c config.Check) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
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
			err := exec.CommandContext(cctx, "/bin/sh", "-c", c.Command).Run()
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
	}()
}
