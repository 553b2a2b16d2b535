package sdcard

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFreezeFailureKeepsConnection(t *testing.T) {
	a, b := pair(t, 1<<20, func(c *MirrorConfig) { c.FreezeMount = "/nonexistent-pg-freeze" })
	up := func(s Status) bool { return s.State != MirrorConnecting && s.State != MirrorOff }
	waitFor(t, "connected", func() bool { return up(a.m.Status()) && up(b.m.Status()) })
	_, err := a.m.SyncNow(context.Background())
	if err == nil || !strings.Contains(err.Error(), "freeze") {
		t.Fatalf("SyncNow = %v, want a freeze error", err)
	}
	if s := a.m.Status(); s.State == MirrorConnecting || s.State == MirrorInSync {
		t.Fatalf("state %v after a failed freeze", s.State)
	}
	if !IsZero(b.dev.Bytes()) {
		t.Fatal("data sent without the freeze")
	}
}

func TestFreezeStateDirRefused(t *testing.T) {
	dir := t.TempDir()
	_, err := NewMirror(MirrorConfig{Dev: NewMemDevice(1 << 20), StateDir: filepath.Join(dir, "state"),
		PairKey: testKey, ListenAddr: "127.0.0.1:1", PeerAddr: "127.0.0.1:2", Interval: time.Second,
		FreezeMount: dir}, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "freeze") {
		t.Fatalf("NewMirror = %v, want a freeze error", err)
	}
}

// TestFreezeRealMount freezes a loop-mounted ext4 during a round and
// checks it is thawed afterwards. It needs root, mkfs.ext4 and loop devices.
func TestFreezeRealMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a loop file system")
	}
	for _, tool := range []string{"mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o700)
	if err := os.WriteFile(img, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("loop mount unavailable: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v %s", err, out)
		}
	})
	// qemu-user (make test-arm) does not pass FIFREEZE through: ENOSYS.
	thaw, err := Freeze(mnt)
	if errors.Is(err, syscall.ENOSYS) {
		t.Skipf("FIFREEZE is not implemented here (qemu-user emulation?): %v", err)
	}
	if err == nil {
		thaw()
	}
	a, b := pair(t, 2<<20, func(c *MirrorConfig) { c.FreezeMount = mnt })
	waitInSync(t, a, b)
	if _, err := a.m.SyncNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- os.WriteFile(filepath.Join(mnt, "after"), []byte("thawed"), 0o600) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		exec.Command("fsfreeze", "-u", mnt).Run()
		t.Fatal("the file system stayed frozen after the round")
	}
}
