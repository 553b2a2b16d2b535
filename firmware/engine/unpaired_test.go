package engine

import (
	"testing"
	"time"
)

// An unpaired node (no pair key yet) never becomes primary by itself, alone
// or beside a peer; once Reconfigure says it is paired, it takes over.
func TestUnpairedNeverPrimary(t *testing.T) {
	c := testConfig(ModeMain, 1)
	c.Unpaired = true
	e, err := New(c, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.Start(0)
	now := time.Duration(0)
	for ; now < 3*c.ConnectionWait; now += 10 * time.Millisecond {
		for _, a := range e.Tick(now) {
			if _, ok := a.(StartProbe); ok {
				e.Step(now, ProbeDone{InUse: false})
			}
		}
	}
	if r := e.Role(); r == RolePrimary {
		t.Fatalf("unpaired node became %v", r)
	}
	if e.Status().Eligible {
		t.Fatal("unpaired node reports itself eligible")
	}
	c.Unpaired = false
	if err := e.Reconfigure(c); err != nil {
		t.Fatal(err)
	}
	for end := now + 3*c.ConnectionWait; now < end && e.Role() != RolePrimary; now += 10 * time.Millisecond {
		for _, a := range e.Tick(now) {
			switch a.(type) {
			case StartProbe:
				e.Step(now, ProbeDone{InUse: false})
			case ReserveEpoch:
				e.Step(now, EpochReserved{Epoch: a.(ReserveEpoch).Epoch})
			}
		}
	}
	if r := e.Role(); r != RolePrimary {
		t.Fatalf("paired node alone stays %v", r)
	}
}

// The unit taught in first must not claim as "alone": its peer's frames
// were unreadable until a moment ago. It waits connection-wait-time again,
// and beside a main that is starting too, the main wins the election.
func TestTaughtInWaitsForThePeer(t *testing.T) {
	c := testConfig(ModeSpare, 2)
	c.Unpaired = true
	e, err := New(c, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.Start(0)
	now := time.Duration(0)
	for ; now < 3*c.ConnectionWait; now += 10 * time.Millisecond {
		e.Tick(now)
	}
	if r := e.Role(); r != RoleSecondary {
		t.Fatalf("unpaired spare after the wait: %v", r)
	}
	c.Unpaired = false
	if err := e.Reconfigure(c); err != nil {
		t.Fatal(err)
	}
	if r := e.Role(); r != RoleStarting {
		t.Fatalf("taught-in spare is %v, want starting", r)
	}
	end := now + c.ConnectionWait - 20*time.Millisecond
	for ; now < end; now += 10 * time.Millisecond {
		for _, a := range e.Tick(now) {
			switch a := a.(type) {
			case StartProbe:
				e.Step(now, ProbeDone{InUse: false})
			case ReserveEpoch:
				e.Step(now, EpochReserved{Epoch: a.Epoch})
			}
		}
		if e.Role() == RolePrimary {
			t.Fatalf("taught-in spare claimed %v after being paired", now)
		}
	}
}
