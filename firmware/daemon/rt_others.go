//go:build !linux

package daemon

// threadsRealtime does nothing outside Linux.
func (d *Daemon) threadsRealtime(bool) {}
