package pair

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

func TestSIGHUPReload(t *testing.T) {
	p := setup(t, netns.Options{})
	startPair(t, p)
	waitLog := func(want string) string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		var out string
		for time.Now().Before(deadline) {
			out, _ = p.Run(p.Spare, "log", "-n", "5")
			if strings.Contains(out, want) {
				return out
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("spare's logbook lacks %q:\n%s", want, out)
		return ""
	}
	cfg, _ := os.ReadFile(p.Spare.Config)
	// A timer can change live.
	os.WriteFile(p.Spare.Config, []byte(strings.Replace(string(cfg), "[heartbeat]\n", "[heartbeat]\ninterval = \"50ms\"\n", 1)), 0o600)
	p.Spare.Signal(syscall.SIGHUP)
	waitLog("configuration reloaded")
	// An interface cannot: refused, and the daemon runs on unchanged.
	os.WriteFile(p.Spare.Config, []byte(strings.Replace(string(cfg), `interface = "eth2"`, `interface = "eth9"`, 1)), 0o600)
	p.Spare.Signal(syscall.SIGHUP)
	waitLog("lan2.interface: changes need a restart")
	// An invalid file is refused whole.
	os.WriteFile(p.Spare.Config, []byte("mode = \"spare\n"), 0o600)
	p.Spare.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if st, err := p.Status(p.Spare); err != nil || st.Role != "secondary" || st.Peer.State != "up" {
		t.Fatalf("spare after reloads: %+v, %v", st, err)
	}
}
