//go:build linux

// Package nstest holds the network-namespace helpers of the drivers' Linux
// tests: running commands, waiting for a link, running code inside a
// namespace.
package nstest

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Run runs a command and fails the test with its output if it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// WaitUp waits until dev in ns has carrier and its queueing discipline is
// attached: frames sent before that (up to a second after `ip link set up`,
// linkwatch's delay) are dropped by the kernel without an error.
func WaitUp(t testing.TB, ns, dev string) {
	t.Helper()
	var out string
	for range 40 {
		out = Run(t, "ip", "-n", ns, "link", "show", dev)
		if strings.Contains(out, "state UP") && !strings.Contains(out, "qdisc noop") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s in %s did not come up:\n%s", dev, ns, out)
}

// InNetns runs fn on an OS thread switched into the namespace name, then
// switches the thread back.
func InNetns(t testing.TB, name string, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("setns %s: %v", name, err)
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			panic("nstest: cannot return to the original network namespace: " + err.Error())
		}
	}()
	fn()
}

// Require skips the test unless it may create network namespaces; pkg
// names the package for the hint.
func Require(t testing.TB, pkg string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("skipping: needs root for network namespaces (run: sudo go test ./%s/)", pkg)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: needs iproute2's ip command")
	}
}

// NewNetns creates the namespace name (deleting a leftover first), brings
// its loopback up and removes it in Cleanup.
func NewNetns(t testing.TB, name string) {
	t.Helper()
	_ = exec.Command("ip", "netns", "del", name).Run()
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
}
