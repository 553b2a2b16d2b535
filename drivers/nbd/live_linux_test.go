package nbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	nbdserver "github.com/pairguard/pairguard/sdcard/nbd"
	"golang.org/x/sys/unix"
)

// syscallAll runs prctl(op, arg) on every thread and returns its result.
func syscallAll(t *testing.T, op, arg uintptr) uintptr {
	t.Helper()
	r, _, errno := syscall.AllThreadsSyscall(unix.SYS_PRCTL, op, arg, 0)
	if errno != 0 {
		t.Fatalf("prctl %d: %v", op, errno)
	}
	return r
}

// serve starts a transmission-phase server on n fresh socket pairs and
// returns the kernel ends.
func serve(t *testing.T, b nbdserver.Backend, n int) (*nbdserver.Server, []*os.File) {
	t.Helper()
	s, err := nbdserver.NewServer(b, nbdserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kernel, server, err := SocketPairs(n)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range server {
		go s.ServeTransmission(c)
	}
	return s, kernel
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// liveAttach attaches a real device to an in-memory export, writes
// through it, restarts the server under it (RECONFIGURE) and detaches.
func liveAttach(t *testing.T, c *Conn) {
	const size = 16 << 20
	m := nbdserver.NewMemBackend(size)
	s, kernel := serve(t, m, 2)
	idx, err := c.Connect(Config{Index: -1, Size: size, ServerFlags: uint64(s.Flags()),
		DeadConnTimeout: 30 * time.Second, Identifier: "pairguard-test"}, kernel)
	closeFiles(kernel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Disconnect(idx); err != nil {
			t.Errorf("disconnect: %v", err)
		}
	})
	dev := fmt.Sprintf("/dev/nbd%d", idx)
	write := func(off int64, v byte) {
		t.Helper()
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(bytes.Repeat([]byte{v}, 4096), off); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if got := m.Bytes()[off : off+4096]; !bytes.Equal(got, bytes.Repeat([]byte{v}, 4096)) {
			t.Fatalf("%s at %d: the export does not hold what was written", dev, off)
		}
	}
	write(8192, 0xa5)

	// The daemon restarts: its sockets die, new ones replace them.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	s2, kernel2 := serve(t, m, 2)
	defer s2.Shutdown(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The kernel takes a socket only in place of one it has seen die.
		err = c.Reconfigure(idx, kernel2, 0)
		if err == nil || !errors.Is(err, unix.ENOSPC) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	closeFiles(kernel2)
	if err != nil {
		t.Fatal(err)
	}
	write(12288, 0x5a)
}
