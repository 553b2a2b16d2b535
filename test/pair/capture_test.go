package pair

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pairguard/pairguard/test/netns"
)

// TestCaptureReadsInTcpdump writes a capture with `pairguard capture` and,
// where tcpdump is installed, reads it back with tcpdump.
func TestCaptureReadsInTcpdump(t *testing.T) {
	p := setup(t, netns.Options{})
	startPair(t, p)
	file := filepath.Join(t.TempDir(), "pg.pcap")
	out, err := p.Run(p.Spare, "capture", "-n", "10", "-w", file)
	if err != nil || !strings.Contains(out, "10 frames written") {
		t.Fatalf("capture: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Skip("tcpdump is not installed: the pcap file was written but not read back")
	}
	b, err := exec.Command("tcpdump", "-nn", "-e", "-r", file).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r: %v\n%s", err, b)
	}
	if n := strings.Count(string(b), "ethertype Unknown (0x88b5)"); n != 10 {
		t.Errorf("tcpdump read %d frames of EtherType 0x88b5, want 10:\n%s", n, b)
	}
}
