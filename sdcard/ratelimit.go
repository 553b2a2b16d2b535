package sdcard

import (
	"context"
	"io"

	"golang.org/x/time/rate"
)

// maxLimitChunk is the largest piece a limitWriter hands to the connection
// at once, so that a large frame is spread over time and not sent as one
// burst after one long wait.
const maxLimitChunk = 32 << 10

// limitWriter throttles writes to a rate in bytes per second, with a burst
// of a quarter second (token bucket, golang.org/x/time/rate). It is used on
// the connection's write side only. A wait ends with the context's error as
// soon as the context is cancelled: a stopped mirror or a replaced session
// does not sit out the rest of a throttled frame.
type limitWriter struct {
	ctx   context.Context
	w     io.Writer
	lim   *rate.Limiter
	chunk int
}

// newLimitWriter returns w throttled to bytesPerSec, or w itself when
// bytesPerSec is not positive.
func newLimitWriter(ctx context.Context, w io.Writer, bytesPerSec int64) io.Writer {
	if bytesPerSec <= 0 {
		return w
	}
	burst := int(max(bytesPerSec/4, 1))
	return &limitWriter{ctx: ctx, w: w, lim: rate.NewLimiter(rate.Limit(bytesPerSec), burst), chunk: min(burst, maxLimitChunk)}
}

func (l *limitWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), l.chunk)]
		if err := l.lim.WaitN(l.ctx, len(chunk)); err != nil {
			return written, err
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
