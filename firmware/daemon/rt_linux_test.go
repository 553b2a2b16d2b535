package daemon

import (
	"io"
	"log/slog"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pairguard/pairguard/firmware/config"
)

func TestThreadsRealtime(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SCHED_FIFO needs root (CAP_SYS_NICE)")
	}
	nice := 5
	cfg := &config.Config{Nice: &nice}
	cfg.Heartbeat.RTPriority = 7
	d := &Daemon{cfg: cfg, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	d.threadsRealtime(true)
	a, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Policy != unix.SCHED_FIFO || a.Priority != 7 || a.Flags&unix.SCHED_FLAG_RESET_ON_FORK == 0 {
		t.Errorf("while real-time: policy %d priority %d flags %#x, want SCHED_FIFO 7 with reset-on-fork", a.Policy, a.Priority, a.Flags)
	}
	d.threadsRealtime(false)
	if a, err := unix.SchedGetAttr(tid, 0); err != nil || a.Policy != 0 || a.Nice != 5 {
		t.Errorf("after: policy %d nice %d (%v), want SCHED_OTHER at nice 5", a.Policy, a.Nice, err)
	}
	// Off: the threads keep their scheduling.
	cfg.Heartbeat.RTPriority = 0
	d.threadsRealtime(true)
	if pol, _, err := schedPolicy(tid); err != nil || pol != 0 {
		t.Errorf("rt-priority 0 changed the policy to %d (%v)", pol, err)
	}
}
