package hooks

import (
	"context"
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
	write(t, dir, "to-primary", `echo "named $PAIRGUARD_ROLE $PAIRGUARD_REASON $PAIRGUARD_EPOCH" >> `+out+"\n", 0o755)
	write(t, dir, "10-all", `echo "all $1 $PAIRGUARD_PEER" >> `+out+"\n", 0o755)
	write(t, dir, "20-notexec", "echo no >> "+out+"\n", 0o644)
	write(t, dir, "to-secondary", "echo wrong >> "+out+"\n", 0o755)
	r := &Runner{Dir: dir, Timeout: 5 * time.Second}
	if _, err := r.Run(context.Background(), Env{Event: "to-primary", Role: "primary", Peer: "down", Reason: "peer-silent", Epoch: 7}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	want := "all to-primary down\nnamed primary peer-silent 7\n"
	if string(got) != want {
		t.Errorf("hooks wrote %q, want %q", got, want)
	}
}

func TestFailureAndTimeout(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "alarm", "exit 3\n", 0o755)
	write(t, dir, "50-slow", "sleep 5\n", 0o755)
	r := &Runner{Dir: dir, Timeout: 200 * time.Millisecond}
	start := time.Now()
	_, err := r.Run(context.Background(), Env{Event: "alarm"})
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("timeout not enforced: %v", d)
	}
}

func TestMissingDir(t *testing.T) {
	r := &Runner{Dir: filepath.Join(t.TempDir(), "none"), Timeout: time.Second}
	if _, err := r.Run(context.Background(), Env{Event: "fault"}); err != nil {
		t.Errorf("missing hooks dir: %v", err)
	}
}
