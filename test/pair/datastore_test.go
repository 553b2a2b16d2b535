package pair

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pairguard/pairguard/test/netns"
)

const imageSize = 16 << 20

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// scribble writes n random 4 KiB blocks into the image at random places.
func scribble(t *testing.T, path string, n int, seed uint64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(seed, 7))
	buf := make([]byte, 4096)
	for range n {
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
		if _, err := f.WriteAt(buf, int64(r.IntN(imageSize/4096))*4096); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// waitSame waits until both images hold the same bytes, both hold the
// same generation and the receiving side's mirror says in-sync (a
// heartbeat flap under load may start a generation in between).
func waitSame(t *testing.T, p *netns.Pair, from, to *netns.Node, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		st, err := p.Status(to)
		fs, ferr := p.Status(from)
		if err == nil && ferr == nil && st.Mirror.State == "in-sync" && st.Data.Generation == fs.Data.Generation &&
			fileHash(t, from.Image) == fileHash(t, to.Image) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, _ := p.Status(to)
	out, _ := p.Run(to, "log", "-n", "10")
	t.Fatalf("%s's image differs from %s's after %v (mirror %+v)\n%s", to.Name, from.Name, limit, st.Mirror, out)
}

func TestDatastoreMirror(t *testing.T) {
	p := setup(t, netns.Options{Datastore: imageSize, SyncEvery: 500 * time.Millisecond})
	// The main's datastore holds data; the spare's is blank.
	scribble(t, p.Main.Image, 500, 1)
	startPair(t, p)
	waitSame(t, p, p.Main, p.Spare, 30*time.Second)
	st, _ := p.Status(p.Spare)
	if st.Data.State != "up-to-date" {
		t.Errorf("spare data %s after the initial sync", st.Data.State)
	}
	m, _ := p.Status(p.Main)
	if m.Data.Generation != st.Data.Generation {
		t.Errorf("generations differ after sync: main %s spare %s", m.Data.Generation, st.Data.Generation)
	}

	// Changes on the main reach the spare.
	scribble(t, p.Main.Image, 50, 2)
	waitSame(t, p, p.Main, p.Spare, 20*time.Second)
	if out, err := p.Run(p.Main, "verify"); err != nil || !bytes.Contains([]byte(out), []byte("identical")) {
		t.Errorf("verify: %v\n%s", err, out)
	}

	// Power loss of the main after the sync: the spare serves the same bytes.
	want := fileHash(t, p.Main.Image)
	measurePowerLoss(t, p)
	if got := fileHash(t, p.Spare.Image); got != want {
		t.Fatal("the spare's datastore differs from the main's last synced one after the takeover")
	}

	// The spare, now primary, changes its data; the old main returns with
	// older data and is resynced from the new primary, never the other way.
	scribble(t, p.Spare.Image, 30, 3)
	newest := fileHash(t, p.Spare.Image)
	p.PowerOn(p.Main)
	if err := p.Start(p.Main); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Main, "secondary", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitSame(t, p, p.Spare, p.Main, 30*time.Second)
	if got := fileHash(t, p.Spare.Image); got != newest {
		t.Fatal("the new primary's data was overwritten by the returning main")
	}
	for _, n := range []*netns.Node{p.Main, p.Spare} {
		if st, _ := p.Status(n); slices.Contains(st.Alarms, "split-brain") {
			t.Errorf("the ordinary power loss of the main ended in a split-brain alarm on %s", n.Name)
		}
	}
	out, _ := p.Run(p.Spare, "log", "-n", "40")
	if !bytes.Contains([]byte(out), []byte("sync")) {
		t.Errorf("no sync rounds in the logbook:\n%s", out)
	}
}

func TestDatastoreMissingIsAFault(t *testing.T) {
	p := setup(t, netns.Options{Datastore: imageSize})
	os.Remove(p.Spare.Image)
	startPairMainOnly := func() {
		for _, n := range []*netns.Node{p.Main, p.Spare} {
			if err := p.Start(n); err != nil {
				t.Fatal(err)
			}
		}
	}
	startPairMainOnly()
	if _, err := p.WaitRole(p.Spare, "fault", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Main, "primary", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// The card comes back: the fault clears and the spare follows.
	f, _ := os.Create(p.Spare.Image)
	f.Truncate(imageSize)
	f.Close()
	if _, err := p.WaitRole(p.Spare, "secondary", 15*time.Second); err != nil {
		t.Fatal(err)
	}
}

// The main's card fails while it is primary: the fault datastore-missing
// makes it hand over to the up-to-date spare; when the card works again
// the fault clears and the main follows as secondary. The failure is
// injected on the image file: truncated to nothing, every read of the
// device ends at once (a removed card answers EIO instead).
func TestDeviceFailureHandsOver(t *testing.T) {
	p := setup(t, netns.Options{Datastore: imageSize, SyncEvery: 500 * time.Millisecond})
	scribble(t, p.Main.Image, 100, 1)
	startPair(t, p)
	waitSame(t, p, p.Main, p.Spare, 30*time.Second)
	saved, err := os.ReadFile(p.Main.Image)
	if err != nil {
		t.Fatal(err)
	}
	failed := time.Now()
	if err := os.Truncate(p.Main.Image, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Main, "fault", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Spare, "primary", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("spare primary %v after the main's card failed", time.Since(failed).Round(time.Millisecond))
	if p.HasAddress(p.Main) || !p.HasAddress(p.Spare) {
		t.Errorf("address after the handover: main %v, spare %v", p.HasAddress(p.Main), p.HasAddress(p.Spare))
	}
	out, _ := p.Run(p.Main, "log", "-n", "30")
	if !strings.Contains(out, "failed") {
		t.Errorf("the main's logbook does not record the card failure:\n%s", out)
	}
	// The card works again.
	if err := os.WriteFile(p.Main.Image, saved, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitRole(p.Main, "secondary", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitSame(t, p, p.Spare, p.Main, 30*time.Second)
}
