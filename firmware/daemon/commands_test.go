package daemon

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pairguard/pairguard/drivers/rawether/rawethertest"
	"github.com/pairguard/pairguard/firmware/control"
	"github.com/pairguard/pairguard/firmware/engine"
)

// The daemon's dispatch and the command table name the same commands.
func TestHandlersMatchCommandTable(t *testing.T) {
	var sent []string
	for _, c := range control.Commands {
		if c.Sent() {
			sent = append(sent, c.Name)
			if handlers[c.Name] == nil {
				t.Errorf("client command %q has no handler", c.Name)
			}
		}
	}
	for name := range handlers {
		if !slices.Contains(sent, name) {
			t.Errorf("handler %q is not in the command table", name)
		}
	}
}

func isPrimary(t *testing.T, n *node) IsPrimary {
	t.Helper()
	resp := n.d.Handle(context.Background(), control.Request{Cmd: "is-primary"}, nil)
	var p IsPrimary
	if err := json.Unmarshal(resp.Data, &p); err != nil || !resp.OK {
		t.Fatalf("is-primary: %+v, %v", resp, err)
	}
	return p
}

func TestIsPrimary(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	m := startNode(t, "main", lan2, lan1, 1)
	s := startNode(t, "spare", lan2, lan1, 2)
	waitFor(t, "pair formed", func() bool { return m.report(t).Role == "primary" && s.report(t).Role == "secondary" })
	if p := isPrimary(t, m); !p.Primary || p.Role != "primary" {
		t.Errorf("main: %+v", p)
	}
	if p := isPrimary(t, s); p.Primary || p.Role != "secondary" {
		t.Errorf("spare: %+v", p)
	}
}

// log --follow streams new entries and role and alarm changes as they
// happen, and ends when the daemon stops.
func TestLogFollow(t *testing.T) {
	lan2, lan1 := rawethertest.NewHub(), rawethertest.NewHub()
	m := startNode(t, "main", lan2, lan1, 1)
	waitFor(t, "main primary", func() bool { return m.report(t).Role == "primary" })

	var mu sync.Mutex
	var events []FollowEvent
	got := func(match func(FollowEvent) bool) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(events, match)
	}
	done := make(chan control.Response, 1)
	go func() {
		done <- m.d.Handle(context.Background(), control.Request{Cmd: "log", N: 1, Follow: true}, func(r control.Response) error {
			var ev FollowEvent
			if err := json.Unmarshal(r.Data, &ev); err != nil {
				t.Errorf("stream item %s: %v", r.Data, err)
			}
			if r.Text == "" {
				t.Errorf("stream item without text: %+v", r)
			}
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
			return nil
		})
	}()
	waitFor(t, "the newest entry first", func() bool { return got(func(e FollowEvent) bool { return e.Type == "entry" }) })
	m.d.queue(engine.FaultChanged{Reason: "test-fault", Active: true})
	waitFor(t, "role change streamed", func() bool {
		return got(func(e FollowEvent) bool { return e.Type == "role" && e.Role == "fault" && e.Prev == "primary" })
	})
	waitFor(t, "fault entry streamed", func() bool {
		return got(func(e FollowEvent) bool {
			return e.Type == "entry" && e.Entry.Kind == "fault" && e.Entry.Message == "test-fault"
		})
	})
	m.d.queue(engine.CheckChanged{Name: "web", Healthy: false})
	waitFor(t, "alarm streamed", func() bool {
		return got(func(e FollowEvent) bool {
			return e.Type == "alarm" && e.Alarm == "check-failed" && e.Raised && slices.Contains(e.Alarms, "check-failed")
		})
	})
	m.stop(t)
	select {
	case r := <-done:
		if !r.OK {
			t.Errorf("final response %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end with the daemon")
	}
}
