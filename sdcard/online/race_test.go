//go:build race

package online

// raceEnabled: the race detector makes sync.Pool drop buffers at random.
const raceEnabled = true
