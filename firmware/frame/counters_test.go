package frame

import (
	"fmt"
	"testing"
)

func TestCountersRecord(t *testing.T) {
	var c Counters
	for _, err := range []error{
		nil, nil,
		fmt.Errorf("%w: 3 bytes", ErrShort),
		ErrMagic,
		&VersionError{Version: 2},
		ErrAuth,
		fmt.Errorf("%w: 1", ErrPair),
		ErrMalformed,
		ErrReplay, ErrReplay,
		fmt.Errorf("something else"),
	} {
		c.Record(err)
	}
	c.Sent.Add(5)
	c.Stale.Add(3)
	c.Reflected.Add(4)
	want := CounterValues{Received: 11, Accepted: 2, Short: 1, Magic: 1, Version: 1, Forged: 1, Foreign: 1, Malformed: 1, Replayed: 2, Other: 1, Stale: 3, Reflected: 4, Sent: 5}
	if got := c.Load(); got != want {
		t.Fatalf("Load = %+v\nwant %+v", got, want)
	}
}
