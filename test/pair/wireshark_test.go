package pair

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pairguard/pairguard/firmware/config"
	"github.com/pairguard/pairguard/firmware/frame"
	"github.com/pairguard/pairguard/firmware/frame/wireshark"
	"github.com/pairguard/pairguard/test/netns"
)

// TestCaptureDecodesInTshark captures frames of a running pair with
// `pairguard capture` and decodes them with tshark and the project's
// dissector, the pair key set: every frame is a Pairguard frame whose
// authenticator verifies, and the main's heartbeats say primary.
func TestCaptureDecodesInTshark(t *testing.T) {
	p := setup(t, netns.Options{})
	startPair(t, p)
	file := filepath.Join(t.TempDir(), "pg.pcap")
	out, err := p.Run(p.Spare, "capture", "-n", "10", "-w", file)
	if err != nil || !strings.Contains(out, "10 frames written") {
		t.Fatalf("capture: %v\n%s", err, out)
	}
	cfg, err := config.Load(p.Spare.Config)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := wireshark.Fields(context.Background(), file, string(cfg.Key),
		"pairguard.version", "pairguard.type", "pairguard.role", "pairguard.epoch", "pairguard.auth.good", "_ws.expert.message")
	if errors.Is(err, wireshark.ErrNoTshark) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 10 {
		t.Fatalf("tshark decoded %d packets, want 10: %q", len(rows), rows)
	}
	primary := 0
	version := fmt.Sprint(frame.ProtocolVersion)
	for i, r := range rows {
		if r[0] != version || r[1] == "" || r[4] != "1" || r[5] != "" {
			t.Errorf("packet %d: version %q type %q auth.good %q expert %q; want version %s, a type, a verified authenticator, no expert note", i+1, r[0], r[1], r[4], r[5], version)
		}
		if r[2] == "2" && r[3] == "1" { // primary, epoch 1
			primary++
		}
	}
	if primary == 0 {
		t.Errorf("no frame from the primary at epoch 1 among %q", rows)
	}
}
