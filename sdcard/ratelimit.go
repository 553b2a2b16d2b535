package sdcard

import (
	"io"
	"time"
)

// limitWriter throttles writes to rate bytes per second with a burst of
// one quarter second. It is used on the connection's write side only.
type limitWriter struct {
	w      io.Writer
	rate   float64
	tokens float64
	last   time.Time
	now    func() time.Time
	sleep  func(time.Duration)
}

func newLimitWriter(w io.Writer, bytesPerSec int64) io.Writer {
	if bytesPerSec <= 0 {
		return w
	}
	return &limitWriter{w: w, rate: float64(bytesPerSec), now: time.Now, sleep: time.Sleep}
}

func (l *limitWriter) Write(p []byte) (int, error) {
	written := 0
	burst := l.rate / 4
	for len(p) > 0 {
		chunk := p[:min(len(p), 32<<10)]
		now := l.now()
		if !l.last.IsZero() {
			l.tokens = min(burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
		}
		l.last = now
		l.tokens -= float64(len(chunk))
		if l.tokens < 0 {
			l.sleep(time.Duration(-l.tokens / l.rate * float64(time.Second)))
		}
		n, err := l.w.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p = p[len(chunk):]
	}
	return written, nil
}
