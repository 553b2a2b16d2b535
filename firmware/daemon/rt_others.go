//go:build !linux

package daemon

// realtime does nothing outside Linux.
func (d *Daemon) realtime(string) (undo func()) { return func() {} }
