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

// liveAttach attaches a real device to an in-memory export and checks
// what the daemon relies on: STATUS, the kernel's refusal of a
// RECONFIGURE without the backend identifier, its silent drop of a socket
// given while no connection is dead, a server restart under a writer
// (the writer stalls, then completes on the sockets of the RECONFIGURE),
// and DISCONNECT.
func liveAttach(t *testing.T, c *Conn) {
	const size = 16 << 20
	const id = "pairguard-test"
	m := nbdserver.NewMemBackend(size)
	s, kernel := serve(t, m, 2)
	idx, err := c.Connect(Config{Index: -1, Size: size, ServerFlags: uint64(s.Flags()),
		DeadConnTimeout: 30 * time.Second, Identifier: id}, kernel)
	closeFiles(kernel)
	if err != nil {
		t.Fatal(err)
	}
	disconnected := false
	t.Cleanup(func() {
		if !disconnected {
			if err := c.Disconnect(idx); err != nil {
				t.Errorf("disconnect: %v", err)
			}
		}
	})
	if conn, err := c.Status(idx); err != nil || !conn {
		t.Fatalf("status of the connected /dev/nbd%d: %v, %v", idx, conn, err)
	}
	if got, err := c.Identifier(idx); err != nil || got != id {
		t.Errorf("identifier %q, %v; want %q", got, err, id)
	}
	dev := fmt.Sprintf("/dev/nbd%d", idx)
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	write := func(off int64, v byte) {
		t.Helper()
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

	// Without the identifier it was connected with: EINVAL.
	_, spare := serve(t, m, 1)
	if err := c.Reconfigure(idx, Reconfig{}, spare); !errors.Is(err, unix.EINVAL) {
		t.Errorf("reconfigure without the backend identifier: %v, want EINVAL", err)
	}
	closeFiles(spare)

	// No connection is dead: the kernel drops the socket, and says nothing.
	s3, err := nbdserver.NewServer(m, nbdserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	k3, srv3, err := SocketPairs(1)
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() { s3.ServeTransmission(srv3[0]); close(ended) }()
	if err := c.Reconfigure(idx, Reconfig{Identifier: id}, k3); err != nil {
		t.Errorf("reconfigure with every connection alive: %v", err)
	}
	closeFiles(k3)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Error("the kernel kept a socket given while no connection was dead")
	}

	// The daemon restarts: its sockets die; a writer stalls meanwhile.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	stalled := make(chan error, 1)
	go func() {
		_, err := f.WriteAt(bytes.Repeat([]byte{0x3c}, 4096), 16384)
		if err == nil {
			err = f.Sync()
		}
		stalled <- err
	}()
	time.Sleep(time.Second)
	select {
	case err := <-stalled:
		t.Fatalf("a write with no server completed (%v) before the RECONFIGURE", err)
	default:
	}
	s2, kernel2 := serve(t, m, 2)
	defer s2.Shutdown(context.Background())
	err = c.Reconfigure(idx, Reconfig{Identifier: id}, kernel2)
	closeFiles(kernel2)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stalled:
		if err != nil {
			t.Fatalf("the stalled write failed after the RECONFIGURE: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the stalled write did not complete after the RECONFIGURE")
	}
	if got := m.Bytes()[16384 : 16384+4096]; !bytes.Equal(got, bytes.Repeat([]byte{0x3c}, 4096)) {
		t.Fatal("the write made during the restart is not in the export")
	}
	write(12288, 0x5a)

	// DISCONNECT: once the last opener has gone the device is free.
	if err := c.Disconnect(idx); err != nil {
		t.Fatal(err)
	}
	disconnected = true
	f.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := c.Status(idx)
		if err != nil {
			t.Fatal(err)
		}
		if !conn {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still connected after DISCONNECT", dev)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
