package nbdtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"reflect"
	"syscall"
	"testing"

	"github.com/pairguard/pairguard/drivers/nbd"
	nbdserver "github.com/pairguard/pairguard/sdcard/nbd"
)

func serve(t *testing.T, b nbdserver.Backend, n int) (*nbdserver.Server, []*os.File) {
	t.Helper()
	s, err := nbdserver.NewServer(b, nbdserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kernel, server, err := nbd.SocketPairs(n)
	if errors.Is(err, nbd.ErrNotSupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range server {
		go s.ServeTransmission(c)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, kernel
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// The daemon's story: attach, I/O, restart under the device, detach.
func TestFakeThroughServer(t *testing.T) {
	m := nbdserver.NewMemBackend(1 << 20)
	s, kernel := serve(t, m, 2)
	f := New()
	idx, err := f.Connect(nbd.Config{Index: -1, Size: s.Size(), ServerFlags: uint64(s.Flags())}, kernel)
	closeAll(kernel) // the driver holds its own copies
	if err != nil || idx != 0 {
		t.Fatalf("connect: %d, %v", idx, err)
	}
	d := f.Device(idx)
	blk := bytes.Repeat([]byte{0x42}, 4096)
	for i := range 4 { // both sockets are used
		if _, err := d.WriteAt(blk, int64(i)*4096); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.WriteAtFUA(blk, 65536); err != nil {
		t.Fatal(err)
	}
	if err := d.Flush(); err != nil {
		t.Fatal(err)
	}
	if m.Flushes() != 2 {
		t.Errorf("backend flushed %d times, want 2 (FUA and FLUSH)", m.Flushes())
	}
	if err := d.Zero(4096, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8192)
	if _, err := d.ReadAt(got, 0); err != nil || !bytes.Equal(got[:4096], blk) || !bytes.Equal(got[4096:], make([]byte, 4096)) {
		t.Fatalf("read back: %v", err)
	}
	if _, err := d.WriteAt(blk, 1<<20-100); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("write past the end: %v", err)
	}

	// Daemon restart: the old server goes, a new one serves the same data.
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadAt(got, 0); err == nil {
		t.Fatal("read succeeded with the server gone")
	}
	_, kernel2 := serve(t, m, 1)
	err = f.Reconfigure(idx, kernel2, 0)
	closeAll(kernel2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadAt(got[:4096], 65536); err != nil || !bytes.Equal(got[:4096], blk) {
		t.Fatalf("read after reconfigure: %v", err)
	}

	if err := f.Disconnect(idx); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadAt(got, 0); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("read after disconnect: %v", err)
	}
	if want := []string{"connect 0", "reconfigure 0", "disconnect 0"}; !reflect.DeepEqual(f.Calls(), want) {
		t.Errorf("calls %v, want %v", f.Calls(), want)
	}
}

func TestFakeRules(t *testing.T) {
	_, kernel := serve(t, nbdserver.NewMemBackend(4096), 2)
	defer closeAll(kernel)
	f := New()
	if _, err := f.Connect(nbd.Config{Index: 3, Size: 4096}, kernel[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Connect(nbd.Config{Index: 3, Size: 4096}, kernel[1:]); !errors.Is(err, ErrBusy) {
		t.Errorf("second connect to /dev/nbd3: %v, want EBUSY", err)
	}
	if err := f.Reconfigure(1, kernel[1:], 0); !errors.Is(err, ErrNoDevice) {
		t.Errorf("reconfigure of an unconnected device: %v", err)
	}
	if err := f.Disconnect(1); !errors.Is(err, ErrNoDevice) {
		t.Errorf("disconnect of an unconnected device: %v", err)
	}
	f.ConnectErr = syscall.ENOMEM
	if _, err := f.Connect(nbd.Config{Index: -1, Size: 4096}, kernel[1:]); !errors.Is(err, syscall.ENOMEM) {
		t.Errorf("injected error: %v", err)
	}
}
