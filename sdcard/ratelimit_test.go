package sdcard

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestLimitWriterRate: at 256 KiB/s with a quarter-second burst, 1 MiB
// takes (1 MiB - 64 KiB) / 256 KiB/s = 3.75 s of (fake) time, arrives
// whole and in order.
func TestLimitWriterRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var out bytes.Buffer
		w := newLimitWriter(t.Context(), &out, 256<<10)
		data := bytes.Repeat([]byte("pg-rate-"), (1<<20)/8)
		start := time.Now()
		n, err := w.Write(data)
		took := time.Since(start)
		if n != len(data) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatal("data changed on the way")
		}
		if want := 3750 * time.Millisecond; took < want-10*time.Millisecond || took > want+10*time.Millisecond {
			t.Errorf("1 MiB at 256 KiB/s took %v, want %v", took, want)
		}
	})
}

// TestLimitWriterCancel: a cancelled context ends a throttled write at
// once, with the context's error and what was written so far.
func TestLimitWriterCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var out bytes.Buffer
		w := newLimitWriter(ctx, &out, 64<<10) // 1 MiB would take 16 s
		type result struct {
			n   int
			err error
			at  time.Duration
		}
		done := make(chan result, 1)
		start := time.Now()
		go func() {
			n, err := w.Write(make([]byte, 1<<20))
			done <- result{n, err, time.Since(start)}
		}()
		time.Sleep(time.Second)
		cancel()
		synctest.Wait()
		select {
		case r := <-done:
			if !errors.Is(r.err, context.Canceled) {
				t.Errorf("Write error = %v, want context.Canceled", r.err)
			}
			if r.n != out.Len() || r.n >= 1<<20 {
				t.Errorf("Write = %d bytes, buffer holds %d; want a partial write reported as such", r.n, out.Len())
			}
			if r.at != time.Second {
				t.Errorf("Write returned after %v, want at the cancellation (1s)", r.at)
			}
		default:
			t.Fatal("Write still waiting after the context was cancelled")
		}
	})
}

func TestLimitWriterUnlimited(t *testing.T) {
	var out bytes.Buffer
	if w := newLimitWriter(context.Background(), &out, 0); w != &out {
		t.Errorf("a zero limit wraps the writer: %T", w)
	}
}
