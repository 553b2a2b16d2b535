package pair

import (
	"crypto/rand"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

// TestOnlineCommands: verify, sync and resolve on a pair in mode online.
// verify compares both sides through the stream (and finds a block
// changed behind its back), sync says there are no rounds; a partition
// where both sides write ends in a split-brain alarm on the primary,
// nothing is overwritten until `resolve --discard-local` on the
// secondary, and then the secondary holds the primary's data.
func TestOnlineCommands(t *testing.T) {
	p := setup(t, netns.Options{})
	msock := onlineConfig(t, p, p.Main, "sync")
	ssock := onlineConfig(t, p, p.Spare, "sync")
	img := make([]byte, onlineImage)
	rand.Read(img)
	os.WriteFile(p.Main.Image, img, 0o600)
	os.WriteFile(p.Spare.Image, make([]byte, onlineImage), 0o600)
	startPair(t, p)
	waitMirror(t, p, p.Main, "in-sync", 60*time.Second)

	cl := dialExport(t, msock, 10*time.Second)
	for i := range 20 {
		b := make([]byte, 8192)
		rand.Read(b)
		if err := cl.Write(b, uint64(i)*1<<20, false); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	if out, err := p.Run(p.Main, "verify"); err != nil || !strings.Contains(out, "identical") {
		t.Fatalf("verify on the main: %v\n%s", err, out)
	}
	if out, err := p.Run(p.Spare, "verify"); err == nil || !strings.Contains(out, "primary") {
		t.Errorf("verify on the secondary: %v\n%s", err, out)
	}
	if out, err := p.Run(p.Main, "sync"); err == nil || !strings.Contains(out, "no rounds") {
		t.Errorf("sync in mode online: %v\n%s", err, out)
	}
	// A block changed behind the stream's back (the spare's image file).
	f, err := os.OpenFile(p.Spare.Image, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("behind the stream's back"), 5*65536+17)
	f.Close()
	if out, err := p.Run(p.Main, "verify"); err != nil || !strings.Contains(out, "1 blocks differ: 5\n") {
		t.Fatalf("verify after a change on the spare: %v\n%s", err, out)
	}

	// Partition: both sides write; after the heal the main is secondary
	// and the spare (primary) finds a split brain.
	heal := isolate(t, p, p.Main)
	if _, err := p.WaitRole(p.Spare, "primary", 10*time.Second); err != nil {
		heal()
		t.Fatal(err)
	}
	for _, sock := range []string{msock, ssock} {
		cl := dialExport(t, sock, 10*time.Second)
		if err := cl.Write(make([]byte, 4096), 7<<20, true); err != nil {
			heal()
			t.Fatalf("write through %s: %v", sock, err)
		}
		cl.Close()
	}
	heal()
	if _, err := p.WaitRole(p.Main, "secondary", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitMirror(t, p, p.Spare, "split-brain", 20*time.Second)
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		st, _ := p.Status(p.Spare)
		if slices.Contains(st.Alarms, "split-brain") {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("no split-brain alarm on the primary: %v", st.Alarms)
		}
	}
	mainBefore := fileHash(t, p.Main.Image)
	time.Sleep(2 * time.Second) // reconnects would have run by now
	if fileHash(t, p.Main.Image) != mainBefore {
		t.Fatal("the secondary's split-brain data was overwritten before a resolve")
	}
	if out, err := p.Run(p.Spare, "resolve", "--discard-local"); err == nil {
		t.Errorf("the primary discarded its own data:\n%s", out)
	}
	if out, err := p.Run(p.Main, "resolve", "--discard-local"); err != nil {
		t.Fatalf("resolve on the secondary: %v\n%s", err, out)
	}
	waitMirror(t, p, p.Spare, "in-sync", 60*time.Second)
	if fileHash(t, p.Main.Image) != fileHash(t, p.Spare.Image) {
		t.Fatal("the images differ after the resolution")
	}
	if out, err := p.Run(p.Spare, "verify"); err != nil || !strings.Contains(out, "identical") {
		t.Fatalf("verify after the resolution: %v\n%s", err, out)
	}
	time.Sleep(500 * time.Millisecond)
	if st, _ := p.Status(p.Spare); slices.Contains(st.Alarms, "split-brain") {
		t.Errorf("split-brain alarm after the resolution: %v", st.Alarms)
	}
}
