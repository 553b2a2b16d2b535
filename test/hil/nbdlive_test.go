package hil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNBDDriverLive runs drivers/nbd's own tests, cross-compiled for arm64,
// on a board: its TestLive, which skips on a host without the nbd module,
// there attaches a real /dev/nbdN through generic netlink and checks the
// kernel's behaviour the daemon relies on (STATUS, the backend identifier
// RECONFIGURE requires, a socket given while no connection is dead dropped
// silently, a writer stalled by a server restart completing after
// RECONFIGURE, DISCONNECT).
func TestNBDDriverLive(t *testing.T) {
	p := newPair(t)
	bin := filepath.Join(p.dir, "nbd.test")
	build := exec.Command("go", "test", "-c", "-o", bin, "./drivers/nbd")
	build.Dir = filepath.Join("..", "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building drivers/nbd's tests for arm64: %v: %s", err, out)
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	ms := mainSpec
	ms.files = map[string]string{"usr/bin/nbd.test": string(b)}
	m := p.boot(ms)[0]
	out, code := m.run("cd /tmp && /usr/bin/nbd.test -test.v -test.count=1 -test.timeout=5m", 6*time.Minute)
	t.Logf("hil: drivers/nbd tests on the board:\n%s", out)
	if code != 0 {
		t.Fatalf("drivers/nbd's tests failed on the board (exit %d)", code)
	}
	if !strings.Contains(out, "--- PASS: TestLive") {
		t.Fatal("TestLive did not run and pass on the board (skipped?)")
	}
	if k, _ := m.run("dmesg | grep -i nbd", 30*time.Second); k != "" {
		t.Logf("hil: the board's kernel log of nbd:\n%s", k)
	}
}
