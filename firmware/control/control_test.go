package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func serve(t *testing.T, h Handler) (string, context.CancelFunc, *sync.WaitGroup) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pg.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.Serve(ctx, h) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return path, cancel, &wg
}

func TestRoundTrip(t *testing.T) {
	path, cancel, wg := serve(t, func(_ context.Context, r Request, _ func(Response) error) Response {
		if r.Cmd != "log" {
			return Response{Error: "unexpected command " + r.Cmd}
		}
		return Response{OK: true, Text: fmt.Sprint("entries ", r.N)}
	})
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v", fi.Mode(), err)
	}
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer rcancel()
	resp, err := Do(rctx, path, Request{Cmd: "log", N: 7})
	if err != nil || !resp.OK || resp.Text != "entries 7" {
		t.Fatalf("Do = %+v, %v", resp, err)
	}
	for _, bad := range []Request{{Cmd: "bogus"}, {Cmd: "status", Force: true}, {Cmd: "takeover"}, {Cmd: "resolve", Keep: "both"}, {Cmd: "run"}} {
		resp, err = Do(rctx, path, bad)
		if err != nil || resp.OK || !strings.Contains(resp.Error, "bad request") {
			t.Errorf("%+v: %+v, %v", bad, resp, err)
		}
	}
	if _, err := Listen(path); err == nil {
		t.Error("second daemon on the same socket accepted")
	}
	cancel()
	wg.Wait()
	if _, err := Do(context.Background(), path, Request{Cmd: "status"}); err == nil {
		t.Error("Do after close succeeded")
	}
}

// A streaming handler sends until the client hangs up; the server notices
// and Serve waits for the handler before it returns.
func TestStreamAndHangUp(t *testing.T) {
	ended := make(chan struct{})
	path, cancel, wg := serve(t, func(ctx context.Context, r Request, send func(Response) error) Response {
		defer close(ended)
		for i := 0; ; i++ {
			if err := send(Response{OK: true, Text: fmt.Sprint(i)}); err != nil {
				return Response{Error: err.Error()}
			}
			select {
			case <-ctx.Done():
				return Response{OK: true, Text: "bye"}
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	ctx, stop := context.WithCancel(context.Background())
	var got []string
	_, err := Stream(ctx, path, Request{Cmd: "log", Follow: true}, func(r Response) error {
		got = append(got, r.Text)
		if len(got) == 3 {
			stop()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || strings.Join(got, ",") != "0,1,2" {
		t.Fatalf("stream got %v, %v", got, err)
	}
	select {
	case <-ended:
	case <-time.After(2 * time.Second):
		t.Fatal("the handler did not notice the hang-up")
	}
	cancel()
	wg.Wait()
}

func TestCommandTable(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Commands {
		if seen[c.Name] || c.Help == "" || c.Section == sectionInvalid {
			t.Errorf("bad or duplicate entry %+v", c)
		}
		seen[c.Name] = true
	}
	for _, want := range []string{"resolve", "is-primary", "log", "status"} {
		if c, ok := Lookup(want); !ok || !c.Console {
			t.Errorf("%s missing or not on the console", want)
		}
	}
	u := Usage()
	if !strings.Contains(u, "log [-n N] [--follow] [--json]") || !strings.Contains(u, "is-primary") {
		t.Errorf("usage:\n%s", u)
	}
	tests := []struct {
		line string
		want Request
		err  string
	}{
		{"log -n 5 --follow", Request{Cmd: "log", N: 5, Follow: true}, ""},
		{"log", Request{Cmd: "log", N: 20}, ""},
		{"resolve --keep-local", Request{Cmd: "resolve", Keep: KeepLocal}, ""},
		{"resolve --discard-local", Request{Cmd: "resolve", Keep: KeepPeer}, ""},
		{"resolve", Request{}, "exactly one"},
		{"takeover", Request{}, "--force"},
		{"takeover --force", Request{Cmd: "takeover", Force: true}, ""},
		{"capture -n 3", Request{}, "-w FILE"},
		{"leds test", Request{Cmd: "leds", Test: true}, ""},
		{"leds", Request{}, "subcommand"},
		{"status extra", Request{}, "no arguments"},
		{"is-primary --json", Request{Cmd: "is-primary"}, ""},
	}
	for _, tt := range tests {
		f := strings.Fields(tt.line)
		c, _ := Lookup(f[0])
		inv, err := c.Parse(f[1:], "/run/x.sock")
		var ue *UsageError
		switch {
		case tt.err != "":
			if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.line, err, tt.err)
			}
		case err != nil || inv.Req != tt.want || inv.Socket != "/run/x.sock":
			t.Errorf("%q: %+v, %v; want %+v", tt.line, inv, err, tt.want)
		}
	}
}
