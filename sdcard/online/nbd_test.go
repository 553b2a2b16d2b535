package online

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pairguard/pairguard/sdcard/nbd"
)

// TestThroughNBD: qemu-io writes (and trims) through the NBD server over
// the write path with FUA; every write it saw acknowledged is on the
// secondary.
func TestThroughNBD(t *testing.T) {
	if _, err := exec.LookPath("qemu-io"); err != nil {
		t.Skipf("qemu-io not installed (test/deps.sh installs it): %v", err)
	}
	const size = 16 << 20
	pn, sn := newNode(size), newNode(size)
	p := openPrimary(t, pn, Sync)
	s, _ := OpenSecondary(sn.dev, sn.store, nil)
	connect(t, p, s)
	waitInSync(t, p)
	srv, err := nbd.NewServer(p, nbd.Options{MinBlock: 512})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "nbd.sock")
	l, err := nbd.ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "qemu-io", "-f", "raw", "-c", "write -P 0x5a -f 4096 1M", "-c", "write -z 2M 64k",
		"-c", "write -P 0x77 -f 8M 3M", "-c", "discard 9M 1M", "-c", "flush", "nbd+unix:///?socket="+sock).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-io: %v\n%s", err, out)
	}
	if !bytes.Equal(pn.dev.Bytes(), sn.dev.Bytes()) {
		t.Fatal("secondary differs from the primary after the client's writes")
	}
	want := bytes.Repeat([]byte{0x77}, 3<<20)
	clear(want[1<<20 : 2<<20]) // the client's TRIM, done as zeroes on both
	if !bytes.Equal(sn.dev.Bytes()[8<<20:11<<20], want) {
		t.Fatal("the client's writes and trim are not on the secondary")
	}
}
