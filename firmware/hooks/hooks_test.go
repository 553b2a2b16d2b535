package hooks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, dir, name, body string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body), mode); err != nil {
		t.Fatal(err)
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	write(t, dir, "to-primary", `echo "named $PAIRGUARD_ROLE $PAIRGUARD_PREV_ROLE $PAIRGUARD_REASON $PAIRGUARD_EPOCH $PAIRGUARD_STANDBY" >> `+out+"\necho said-so\n", 0o755)
	write(t, dir, "10-all", `echo "all $1 $PAIRGUARD_PEER" >> `+out+"\n", 0o755)
	write(t, dir, "20-notexec", "echo no >> "+out+"\n", 0o644)
	write(t, dir, "to-secondary", "echo wrong >> "+out+"\n", 0o755)
	r := Runner{Dir: dir, Timeout: 5 * time.Second}
	res, err := r.Run(context.Background(), Env{Event: "to-primary", Role: "primary", PrevRole: "secondary", Peer: "down", Reason: "peer-silent", Epoch: 7, Standby: "warm"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	want := "all to-primary down\nnamed primary secondary peer-silent 7 warm\n"
	if string(got) != want {
		t.Errorf("hooks wrote %q, want %q", got, want)
	}
	if len(res) != 2 || res[1].Script != "to-primary" || res[1].Output != "said-so\n" {
		t.Errorf("results %+v", res)
	}
}

func TestFailureAndTimeout(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "alarm", "exit 3\n", 0o755)
	write(t, dir, "50-slow", "sleep 5\n", 0o755)
	r := Runner{Dir: dir, Timeout: 200 * time.Millisecond}
	start := time.Now()
	_, err := r.Run(context.Background(), Env{Event: "alarm"}, nil)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("timeout not enforced: %v", d)
	}
}

// A timeout kills the hook's children too: before, only the shell died and
// its child wrote on after the timeout.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	leak := filepath.Join(dir, "leaked")
	write(t, dir, "to-primary", "(sleep 0.6; echo leaked > "+leak+") &\nsleep 5\n", 0o755)
	r := Runner{Dir: dir, Timeout: 200 * time.Millisecond}
	if _, err := r.Run(context.Background(), Env{Event: "to-primary"}, nil); err == nil {
		t.Fatal("a hook past its timeout succeeded")
	}
	time.Sleep(time.Second)
	if _, err := os.Stat(leak); err == nil {
		t.Error("a child of a timed-out hook survived and ran on")
	}
}

// Cancelling the context (a demotion) kills the running hook's group and
// starts no further script.
func TestCancelKillsGroup(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "mark")
	write(t, dir, "10-slow", "sleep 0.5 && echo done >> "+mark+"\n", 0o755)
	write(t, dir, "20-after", "echo after >> "+mark+"\n", 0o755)
	r := Runner{Dir: dir, Timeout: 5 * time.Second}
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(100*time.Millisecond, func() { cancel(errors.New("demoted")) })
	_, err := r.Run(ctx, Env{Event: "to-primary"}, nil)
	if err == nil || !strings.Contains(err.Error(), "demoted") {
		t.Fatalf("err = %v", err)
	}
	time.Sleep(700 * time.Millisecond)
	if b, err := os.ReadFile(mark); err == nil {
		t.Errorf("the killed hook or the next one ran on: %q", b)
	}
}

// A hook that starts a service in the background and exits 0 succeeds at
// once; before, it waited for the service's output and failed.
func TestBackgroundServiceIsNoFailure(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "to-primary", "echo starting\n(sleep 2; echo late) &\nexit 0\n", 0o755)
	r := Runner{Dir: dir, Timeout: 5 * time.Second}
	var bg Background
	start := time.Now()
	res, err := r.Run(context.Background(), Env{Event: "to-primary"}, &bg)
	if err != nil {
		t.Fatalf("a hook that started a background service failed: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the hook waited %v for its background service", d)
	}
	if len(res) != 1 || !res[0].Background || res[0].Output != "starting\n" {
		t.Errorf("result %+v", res)
	}
	if bg.Held() != 1 {
		t.Errorf("background pipes held: %d, want 1", bg.Held())
	}
	bg.Close()
	if bg.Held() != 0 {
		t.Error("pipes held after Close")
	}
}

func TestMissingDir(t *testing.T) {
	r := Runner{Dir: filepath.Join(t.TempDir(), "none"), Timeout: time.Second}
	if _, err := r.Run(context.Background(), Env{Event: "fault"}, nil); err != nil {
		t.Errorf("missing hooks dir: %v", err)
	}
}
