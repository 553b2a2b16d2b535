package nbdtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"reflect"
	"syscall"
	"testing"
	"time"

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
	err = f.Reconfigure(idx, nbd.Reconfig{}, kernel2)
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
	if err := f.Reconfigure(1, nbd.Reconfig{}, kernel[1:]); !errors.Is(err, ErrNoDevice) {
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

// The kernel's rules of RECONFIGURE and of a device whose server died.
func TestFakeReconfigureRules(t *testing.T) {
	m := nbdserver.NewMemBackend(1 << 20)
	s, kernel := serve(t, m, 2)
	f := New()
	idx, err := f.Connect(nbd.Config{Index: 0, Size: s.Size(), Identifier: "pg", DeadConnTimeout: 10 * time.Second}, kernel)
	closeAll(kernel)
	if err != nil {
		t.Fatal(err)
	}
	d := f.Device(idx)
	if conn, _ := f.Status(idx); !conn {
		t.Fatal("status: not connected")
	}
	if conn, _ := f.Status(5); conn {
		t.Fatal("status: /dev/nbd5 connected")
	}
	// The identifier it was connected with, or EINVAL.
	_, k2 := serve(t, m, 1)
	defer closeAll(k2)
	if err := f.Reconfigure(idx, nbd.Reconfig{}, k2); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("reconfigure without the identifier: %v, want EINVAL", err)
	}
	// Both connections alive: the socket is dropped, without an error.
	if err := f.Reconfigure(idx, nbd.Reconfig{Identifier: "pg"}, k2); err != nil {
		t.Fatal(err)
	}
	if d.Reconnected() != 0 || d.Live() != 2 {
		t.Fatalf("reconnected %d, live %d; want 0 and 2", d.Reconnected(), d.Live())
	}
	// The server dies: a write waits for the RECONFIGURE, then completes.
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	blk := bytes.Repeat([]byte{7}, 4096)
	go func() { _, err := d.WriteAt(blk, 8192); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("a write without a server returned %v before the RECONFIGURE", err)
	case <-time.After(200 * time.Millisecond):
	}
	_, k3 := serve(t, m, 3)
	err = f.Reconfigure(idx, nbd.Reconfig{Identifier: "pg"}, k3)
	closeAll(k3)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the stalled write: %v", err)
	}
	if !bytes.Equal(m.Bytes()[8192:12288], blk) {
		t.Fatal("the stalled write is not in the export")
	}
	if d.Reconnected() != 2 {
		t.Errorf("%d sockets taken, want 2 (one per dead connection; the third dropped)", d.Reconnected())
	}
	// No RECONFIGURE within the dead-connection timeout: the write fails.
	f2 := New()
	s4, k4 := serve(t, m, 1)
	if _, err := f2.Connect(nbd.Config{Index: 0, Size: s4.Size(), DeadConnTimeout: 100 * time.Millisecond}, k4); err != nil {
		t.Fatal(err)
	}
	closeAll(k4)
	s4.Shutdown(context.Background())
	if _, err := f2.Device(0).WriteAt(blk, 0); !errors.Is(err, ErrDisconnected) {
		t.Errorf("write after the dead-connection timeout: %v, want ErrDisconnected", err)
	}
}
