package sdcard

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// stampDev is a MemDevice with a change stamp: the count of writes
// through it, as the kernel counts a block device's writes. Writes to
// the MemDevice underneath bypass it (a change no stamp can see).
type stampDev struct {
	*MemDevice
	writes atomic.Uint64
}

func (d *stampDev) WriteAt(p []byte, off int64) (int, error) {
	d.writes.Add(1)
	return d.MemDevice.WriteAt(p, off)
}

func (d *stampDev) ChangeStamp() ([]byte, error) {
	return binary.LittleEndian.AppendUint64(nil, d.writes.Load()), nil
}

// stampPair is pair with stamping devices; it returns b's stamping device.
func stampPair(t *testing.T, size int64) (a, b *node, bs *stampDev) {
	t.Helper()
	la, lb := freeAddrs(t)
	a = newNode(t, randomDev(size, 1), la, lb, func(c *MirrorConfig) { c.Dev = &stampDev{MemDevice: c.Dev.(*MemDevice)} })
	bdev := NewMemDevice(size)
	bs = &stampDev{MemDevice: bdev}
	b = newNode(t, bdev, lb, la, func(c *MirrorConfig) { c.Dev = bs })
	if _, err := a.m.NewGeneration(1); err != nil {
		t.Fatal(err)
	}
	a.m.SetPrimary(true)
	a.start(t)
	b.start(t)
	waitInSync(t, a, b)
	waitRounds(t, b, 1)
	return a, b, bs
}

// waitRounds waits until n has finished its k-th round (it writes the sum
// cache after it answered Committed).
func waitRounds(t *testing.T, n *node, k uint64) {
	t.Helper()
	waitFor(t, "the target's round", func() bool {
		st := n.m.Status()
		return st.LastRound.Round >= k && st.State != MirrorSyncing
	})
}

// syncRound runs a round from a and waits until b finished it as round k.
func syncRound(t *testing.T, a, b *node, k uint64) {
	t.Helper()
	if _, err := a.m.SyncNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitRounds(t, b, k)
	if !bytes.Equal(a.dev.Bytes(), b.dev.Bytes()) {
		t.Fatalf("images differ after round %d", k)
	}
}

func TestSumCacheAnswersRounds(t *testing.T) {
	const size = 4<<20 + 12288
	a, b, bs := stampPair(t, size)
	for k := uint64(2); k <= maxCachedRounds+2; k++ {
		if _, err := a.dev.WriteAt(bytes.Repeat([]byte{byte(k)}, 4096), int64(k)*65536+4096); err != nil {
			t.Fatal(err)
		}
		syncRound(t, a, b, k)
		want := min(k-1, maxCachedRounds) // the round after maxCachedRounds reads the device
		if got := b.m.cacheHits.Load(); got != want {
			t.Fatalf("round %d: %d rounds answered from the sum cache, want %d", k, got, want)
		}
	}

	// The cache survives a restart of the target.
	b.stop(t)
	dir := b.m.cfg.StateDir
	b.m.Close()
	la, lb := b.m.cfg.PeerAddr, b.m.cfg.ListenAddr
	b2 := newNode(t, b.dev, lb, la, func(c *MirrorConfig) {
		c.StateDir = dir
		c.Dev = bs // the kernel's counters outlive the daemon
	})
	b2.start(t)
	waitInSync(t, a, b2) // the round on reconnection
	waitRounds(t, b2, 1)
	if _, err := a.dev.WriteAt(bytes.Repeat([]byte{0xee}, 4096), 3*65536); err != nil {
		t.Fatal(err)
	}
	syncRound(t, a, b2, 2)
	if got := b2.m.cacheHits.Load(); got != 2 {
		t.Fatalf("after a restart: %d rounds answered from the sum cache, want 2", got)
	}
}

// A write to the target's device that bypassed the mirror changes its
// stamp: the next round reads the device and repairs the block.
func TestSumCacheStaleAfterOutsideWrite(t *testing.T) {
	a, b, bs := stampPair(t, 4<<20)
	if _, err := bs.WriteAt(bytes.Repeat([]byte{0x55}, 4096), 5*65536); err != nil {
		t.Fatal(err)
	}
	syncRound(t, a, b, 2) // fails if the cache answered: block 5 would look unchanged
	if got := b.m.cacheHits.Load(); got != 0 {
		t.Fatalf("%d rounds answered from a stale sum cache", got)
	}
}

// A cache file left from an earlier round (its rewrite was lost) does not
// match the base digest of the last completed round and is not used.
func TestSumCacheFromEarlierRound(t *testing.T) {
	a, b, bs := stampPair(t, 4<<20)
	file := filepath.Join(b.m.cfg.StateDir, SumsFile)
	old, err := os.ReadFile(file)
	if err != nil || len(old) == 0 {
		t.Fatalf("no sum cache after the initial sync: %v", err)
	}
	orig := make([]byte, 4096)
	if _, err := a.dev.ReadAt(orig, 7*65536); err != nil {
		t.Fatal(err)
	}
	if _, err := a.dev.WriteAt(bytes.Repeat([]byte{0x77}, 4096), 7*65536); err != nil {
		t.Fatal(err)
	}
	syncRound(t, a, b, 2)
	// The old file, with the stamp of now (as a stamp too coarse to see
	// round 2's writes would leave it): only the base digest tells.
	c, err := unmarshalSumCache(old)
	if err != nil {
		t.Fatal(err)
	}
	if c.Stamp, err = bs.ChangeStamp(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, c.marshal(), 0o600); err != nil {
		t.Fatal(err)
	}
	// Back to the content the old cache describes: trusting it would skip
	// the block, and the target would keep the round's content.
	if _, err := a.dev.WriteAt(orig, 7*65536); err != nil {
		t.Fatal(err)
	}
	syncRound(t, a, b, 3)
	if got := b.m.cacheHits.Load(); got != 1 {
		t.Fatalf("%d rounds answered from the sum cache, want 1 (round 2 only)", got)
	}
}

func TestSumCacheFile(t *testing.T) {
	c := sumCache{Gen: 9, Geom: Geometry{Size: 3*65536 + 4096, BlockSize: 65536}, Hash: HashXXH3, Rounds: 2,
		Stamp: []byte("stamp"), Sums: []Sum{{1}, {2}, {3}, {4}}}
	b := c.marshal()
	got, err := unmarshalSumCache(b)
	if err != nil || got.Gen != 9 || got.Geom != c.Geom || got.Rounds != 2 || string(got.Stamp) != "stamp" ||
		len(got.Sums) != 4 || got.Sums[3] != (Sum{4}) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	for i := range b {
		bad := bytes.Clone(b)
		bad[i] ^= 1
		if _, err := unmarshalSumCache(bad); err == nil {
			t.Fatalf("a flipped bit at byte %d was accepted", i)
		}
	}
	if _, err := unmarshalSumCache(b[:len(b)-20]); err == nil {
		t.Fatal("a truncated file was accepted")
	}
}

func TestDeviceChangeStamp(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDevice(path, 65536)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s1, err1 := d.ChangeStamp()
	s2, err2 := d.ChangeStamp()
	if err1 != nil || err2 != nil || !bytes.Equal(s1, s2) {
		t.Fatalf("stamps of an unchanged image differ: %x %v, %x %v", s1, err1, s2, err2)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Another writer's modification time (set explicitly: a write may
	// fall in the same tick of the file system's clock).
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime().Add(1)); err != nil {
		t.Fatal(err)
	}
	if s3, err := d.ChangeStamp(); err != nil || bytes.Equal(s1, s3) {
		t.Fatalf("stamp unchanged after a modification: %x %v", s3, err)
	}
}

// On a block device the stamp follows the kernel's write counters: a
// write through another file descriptor, synced, changes it. Needs root
// (a loop device).
func TestDeviceChangeStampBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a loop device")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup not installed")
	}
	img := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		t.Skipf("no loop device: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	d, err := OpenDevice(loop, 65536)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s1, err1 := d.ChangeStamp()
	s2, err2 := d.ChangeStamp()
	if err1 != nil || err2 != nil || !bytes.Equal(s1, s2) {
		t.Fatalf("stamps of an unchanged device differ: %q %v, %q %v", s1, err1, s2, err2)
	}
	f, err := os.OpenFile(loop, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{1}, 4096), 8192); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if s3, err := d.ChangeStamp(); err != nil || bytes.Equal(s1, s3) {
		t.Fatalf("stamp unchanged after a write: %q %v", s3, err)
	}
}
