package pair

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pairguard/pairguard/test/netns"
)

// TestSnapshotOfRunningPair takes `pairguard snapshot` on the main of a
// running pair: status, logbook and a capture come from the daemon, the
// pair key stays out.
func TestSnapshotOfRunningPair(t *testing.T) {
	p := setup(t, netns.Options{})
	startPair(t, p)
	file := filepath.Join(t.TempDir(), "snap.tar.gz")
	out, err := p.Run(p.Main, "snapshot", "-w", file, "--config", p.Main.Config, "-n", "5")
	if err != nil || !strings.Contains(out, "snapshot written") {
		t.Fatalf("snapshot: %v\n%s", err, out)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(p.Main.Config)
	key := ""
	for line := range strings.Lines(string(cfg)) {
		if k, ok := strings.CutPrefix(line, "pair-key = "); ok {
			key = strings.Trim(strings.TrimSpace(k), `"`)
		}
	}
	if key == "" {
		t.Fatalf("no pair-key in the test config:\n%s", cfg)
	}
	files := map[string]string{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[filepath.Base(h.Name)] = string(b)
	}
	for name, body := range files {
		if strings.Contains(body, key) {
			t.Errorf("%s holds the pair key", name)
		}
	}
	if !strings.Contains(files["status.json"], `"role":"primary"`) {
		t.Errorf("status.json: %s", files["status.json"])
	}
	if !strings.Contains(files["logbook.txt"], "redundancy-active") {
		t.Errorf("logbook.txt lacks redundancy-active:\n%s", files["logbook.txt"])
	}
	if len(files["capture.pcap"]) < 24+5*(16+14+100) {
		t.Errorf("capture.pcap is %d bytes, too short for 5 frames; errors.txt:\n%s", len(files["capture.pcap"]), files["errors.txt"])
	}
}
