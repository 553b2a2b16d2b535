// Package watchdog drives a Linux hardware watchdog (/dev/watchdog) for
// self-fencing: the daemon feeds it from its main loop only while it is
// healthy, so a hung or sick primary is reset by hardware and stops holding
// the service address.
//
// Opening the device arms it. Close disarms it with the magic close ('V'
// then close) and is for a clean shutdown only; a process that dies without
// Close leaves it armed, and the board resets after the timeout (unless the
// kernel was built with CONFIG_WATCHDOG_NOWAYOUT, in which case even Close
// leaves it armed).
package watchdog

// Watchdog is an armed watchdog.
type Watchdog interface {
	// Feed restarts the countdown.
	Feed() error
	// Close disarms the watchdog (magic close) and releases it.
	Close() error
}
