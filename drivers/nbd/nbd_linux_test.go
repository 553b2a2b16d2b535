package nbd

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

var fakeFamily = genetlink.Family{ID: 0x1d, Version: 1, Name: FamilyName}

// fakeKernel answers like the NBD driver and records what it was sent.
type fakeKernel struct {
	t    *testing.T
	sent []genetlink.Message
	errs []netlink.HeaderFlags
}

func (k *fakeKernel) serve(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
	if nreq.Header.Type == 0 {
		return nil, nil // genltest's call for a plain Receive, not a request
	}
	k.sent = append(k.sent, greq)
	k.errs = append(k.errs, nreq.Header.Flags)
	if greq.Header.Version != 1 {
		k.t.Errorf("genetlink version %d", greq.Header.Version)
	}
	switch greq.Header.Command {
	case cmdConnect:
		ae := netlink.NewAttributeEncoder()
		ae.Uint32(attrIndex, 4)
		b, _ := ae.Encode()
		return []genetlink.Message{{Header: genetlink.Header{Command: cmdConnect, Version: 1}, Data: b}}, nil
	case cmdStatus:
		ae := netlink.NewAttributeEncoder()
		ae.Nested(attrDeviceList, func(l *netlink.AttributeEncoder) error {
			l.Nested(deviceItem, func(i *netlink.AttributeEncoder) error {
				i.Uint32(deviceIndex, 4)
				i.Uint8(deviceConnected, 1)
				return nil
			})
			return nil
		})
		b, _ := ae.Encode()
		return []genetlink.Message{{Header: genetlink.Header{Command: cmdStatus, Version: 1}, Data: b}}, nil
	}
	return nil, nil
}

func pipeFiles(t *testing.T, n int) []*os.File {
	kernel, server, err := SocketPairs(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := range kernel {
			kernel[i].Close()
			server[i].Close()
		}
	})
	return kernel
}

func TestConnFakeKernel(t *testing.T) {
	k := &fakeKernel{t: t}
	c, err := newConn(genltest.Dial(genltest.ServeFamily(fakeFamily, k.serve)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	socks := pipeFiles(t, 2)
	idx, err := c.Connect(Config{Index: -1, Size: 1 << 20, ServerFlags: 0x16d, DeadConnTimeout: time.Minute}, socks)
	if err != nil || idx != 4 {
		t.Fatalf("connect: index %d, %v", idx, err)
	}
	if err := c.Reconfigure(4, Reconfig{Identifier: "pg"}, socks[:1]); err != nil {
		t.Fatal(err)
	}
	if conn, err := c.Status(4); err != nil || !conn {
		t.Fatalf("status: connected %v, %v", conn, err)
	}
	if err := c.Disconnect(4); err != nil {
		t.Fatal(err)
	}
	wantCmds := []uint8{cmdConnect, cmdReconfigure, cmdStatus, cmdDisconnect}
	if len(k.sent) != len(wantCmds) {
		t.Fatalf("%d messages sent", len(k.sent))
	}
	for i, m := range k.sent {
		if m.Header.Command != wantCmds[i] {
			t.Errorf("message %d: command %d, want %d", i, m.Header.Command, wantCmds[i])
		}
	}
	// CONNECT and STATUS get their reply without an ACK; the others ask
	// for one.
	if k.errs[0]&netlink.Acknowledge != 0 || k.errs[1]&netlink.Acknowledge == 0 ||
		k.errs[2]&netlink.Acknowledge != 0 || k.errs[3]&netlink.Acknowledge == 0 {
		t.Errorf("header flags %v", k.errs)
	}
	want, _ := encodeConnect(Config{Index: -1, Size: 1 << 20, ServerFlags: 0x16d, DeadConnTimeout: time.Minute},
		[]int{int(socks[0].Fd()), int(socks[1].Fd())})
	if string(k.sent[0].Data) != string(want) {
		t.Errorf("connect attributes % x, want % x", k.sent[0].Data, want)
	}
}

func TestConnKernelError(t *testing.T) {
	c, err := newConn(genltest.Dial(genltest.ServeFamily(fakeFamily,
		func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
			return nil, genltest.Error(int(unix.EBUSY))
		})))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Connect(Config{Index: 0, Size: 4096}, pipeFiles(t, 1))
	if !errors.Is(err, unix.EBUSY) {
		t.Fatalf("connect to a busy device: %v, want EBUSY", err)
	}
}

func TestNoFamily(t *testing.T) {
	// The kernel answers a lookup of an unknown family with ENOENT.
	_, err := newConn(genltest.Dial(func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return nil, genltest.Error(int(unix.ENOENT))
	}))
	if !errors.Is(err, ErrNoFamily) {
		t.Fatalf("%v, want ErrNoFamily", err)
	}
}

func TestSocketPairs(t *testing.T) {
	kernel, server, err := SocketPairs(3)
	if err != nil {
		t.Fatal(err)
	}
	for i := range kernel {
		if _, err := kernel[i].Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := server[i].Read(b); err != nil || b[0] != byte(i) {
			t.Fatalf("pair %d: % x, %v", i, b, err)
		}
		kernel[i].Close()
		server[i].Close()
	}
}

func TestSetIOFlusher(t *testing.T) {
	err := SetIOFlusher()
	switch {
	case errors.Is(err, unix.ENOTSUP):
		t.Skip("test binary built with cgo: AllThreadsSyscall is unavailable (the firmware is built without cgo)")
	case errors.Is(err, unix.EPERM):
		t.Skip("needs CAP_SYS_RESOURCE, which this process lacks")
	case err != nil:
		t.Fatal(err)
	}
	t.Cleanup(func() { syscallAll(t, unix.PR_SET_IO_FLUSHER, 0) })
	if v := syscallAll(t, unix.PR_GET_IO_FLUSHER, 0); v != 1 {
		t.Fatalf("PR_GET_IO_FLUSHER = %d on every thread, want 1", v)
	}
	// Threads the runtime creates afterwards inherit the mark: goroutines
	// locked to threads at the same time need new threads.
	const n = 8
	var wg sync.WaitGroup
	hold := make(chan struct{})
	marks := make(chan uintptr, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			v, _, errno := syscall.RawSyscall(unix.SYS_PRCTL, unix.PR_GET_IO_FLUSHER, 0, 0)
			if errno != 0 {
				v = 1 << 20
			}
			marks <- v
			<-hold
		}()
	}
	for range n {
		if v := <-marks; v != 1 {
			t.Errorf("a thread created after SetIOFlusher has PR_GET_IO_FLUSHER = %d, want 1", v)
		}
	}
	close(hold)
	wg.Wait()
}

func TestLockMemory(t *testing.T) {
	if err := LockMemory(); errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOMEM) {
		t.Skipf("needs CAP_IPC_LOCK or RLIMIT_MEMLOCK: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	defer unix.Munlockall()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(status), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmLck:" {
			if f[1] == "0" {
				t.Fatal("VmLck is 0 after LockMemory")
			}
			return
		}
	}
	t.Fatal("no VmLck in /proc/self/status")
}

// TestLive attaches a real /dev/nbdN when the kernel has the driver
// (the QEMU image does; this host may not).
func TestLive(t *testing.T) {
	c, err := Open()
	if errors.Is(err, ErrNoFamily) {
		t.Skip("the kernel has no nbd module (modprobe nbd); the QEMU pair covers /dev/nbd0")
	}
	if err != nil {
		t.Skipf("generic netlink unavailable: %v", err)
	}
	defer c.Close()
	liveAttach(t, c)
}
