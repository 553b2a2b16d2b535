package pair

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

// followEvent is the part of `log --follow --json` lines the test reads.
type followEvent struct {
	Type  string `json:"type"`
	Role  string `json:"role"`
	Prev  string `json:"prev"`
	Entry *struct {
		Kind string `json:"kind"`
	} `json:"entry"`
}

// `is-primary` answers by its exit status, and `log --follow --json`
// streams the spare's takeover as it happens, with the real binary.
func TestFollowAndIsPrimary(t *testing.T) {
	p := setup(t, netns.Options{})
	startPair(t, p)
	if _, err := p.Run(p.Main, "is-primary"); err != nil {
		t.Errorf("is-primary on the primary: %v", err)
	}
	if out, err := p.Run(p.Spare, "is-primary"); err == nil {
		t.Errorf("is-primary on the secondary succeeded: %q", out)
	}

	follow := exec.Command(p.Bin, "log", "--follow", "--json", "-n", "0")
	follow.Env = append(os.Environ(), "PAIRGUARD_SOCKET="+p.Spare.Socket)
	stdout, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []followEvent
	var bad []string
	var reader sync.WaitGroup
	reader.Go(func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev followEvent
			mu.Lock()
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				bad = append(bad, sc.Text())
			}
			events = append(events, ev)
			mu.Unlock()
		}
	})
	time.Sleep(200 * time.Millisecond) // subscribed
	if err := p.PowerOff(p.Main); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Spare, "primary", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	seen := func() (role, entry bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range events {
			role = role || ev.Type == "role" && ev.Role == "primary" && ev.Prev == "secondary"
			entry = entry || ev.Type == "entry" && ev.Entry != nil && ev.Entry.Kind == "takeover"
		}
		return role, entry
	}
	deadline := time.Now().Add(3 * time.Second)
	for role, entry := seen(); !role || !entry; role, entry = seen() {
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("stream lacks the takeover (role %v, entry %v): %+v", role, entry, events)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := p.Run(p.Spare, "is-primary"); err != nil {
		t.Errorf("is-primary on the new primary: %v", err)
	}
	follow.Process.Signal(syscall.SIGINT)
	reader.Wait()
	if err := follow.Wait(); err != nil {
		t.Errorf("log --follow after SIGINT: %v", err)
	}
	if len(bad) > 0 {
		t.Errorf("lines that are not JSON: %q", bad)
	}
}
