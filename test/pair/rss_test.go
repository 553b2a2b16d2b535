package pair

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

// TestDaemonMemory reports the daemons' resident memory after a while of
// heartbeats at 20 ms; it fails only on a gross regression (over 40 MiB).
func TestDaemonMemory(t *testing.T) {
	p := setup(t, netns.Options{Interval: 20 * time.Millisecond})
	startPair(t, p)
	time.Sleep(3 * time.Second)
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		out, err := exec.Command("pgrep", "-f", "run --config "+n.Config).Output()
		if err != nil {
			t.Fatalf("pgrep: %v", err)
		}
		pid := strings.Fields(string(out))[0]
		status, _ := os.ReadFile("/proc/" + pid + "/status")
		for _, l := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				f := strings.Fields(l)
				t.Logf("%s: %s %s", n.Name, f[1], f[2])
				var kb int
				for _, c := range f[1] {
					kb = kb*10 + int(c-'0')
				}
				if kb > 40<<10 {
					t.Errorf("%s resident memory %d KiB", n.Name, kb)
				}
			}
		}
	}
}
